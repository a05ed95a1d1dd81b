package llama

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// badGrammars are grammars llama.cpp cannot use, with the rule, line and
// column the error must name (line 0: the grammar as a whole) and a word
// of its message. Before ValidateGrammar, the reversed ranges aborted the
// process while sampling, {3,1} allocated without end, and the deep
// nesting overflowed the parser's stack.
var badGrammars = []struct {
	grammar   string
	rule      string
	line, col int
	msg       string
}{
	{`root ::= [z-a]+`, "root", 1, 11, "reversed"},
	{`root ::= [b-a]`, "root", 1, 11, "reversed"},
	{"root ::= x\nx ::= \"a\" [0-9a-fZ-A]", "x", 2, 18, "Z-A"},
	{`root ::= [\u0100-\x41]`, "root", 1, 11, "reversed"},
	{`root ::= "a" [^\U0010FFFF-\x00]`, "root", 1, 16, "reversed"},
	{`root ::= "x"{3,1}`, "root", 1, 13, "minimum above"},
	{`root ::= "x"{1000000}`, "root", 1, 13, "limit"},
	{`root ::= "x"{2,100000000000000000000000}`, "root", 1, 13, "limit"},
	{`root ::= "abcdefghij"{2000}{2000}`, "root", 1, 28, "expands"},
	{`root ::= "e"{,3}`, "root", 1, 13, "expected a number"},
	{`root ::= "a`, "root", 1, 10, "unterminated string"},
	{`root ::= [a-z`, "root", 1, 10, "unterminated character class"},
	{`root ::= ("a" | "b"`, "root", 1, 10, "unclosed ("},
	{`root ::= <[12`, "root", 1, 10, "unterminated token"},
	{`root ::= "\q"`, "root", 1, 11, "unknown escape"},
	{`root ::= "\x4"`, "root", 1, 11, "hex digits"},
	{`root ::= undefined-rule`, "root", 1, 10, `"undefined-rule" is used but never defined`},
	{`nothing ::= "a"`, "", 0, 0, `no rule "root"`},
	{``, "", 0, 0, "empty"},
	{"  \n# only a comment\n", "", 0, 0, "no rules"},
	{`root ::= * "a"`, "root", 1, 10, "repeats nothing"},
	{`root ::= "a"{0}+`, "root", 1, 16, "repeats nothing"},
	{`root = "a"`, "root", 1, 6, "::="},
	{`root ::= "a" ) "b"`, "root", 1, 14, "end of the line"},
	{"root ::= \"a\x00b\"", "", 1, 12, "NUL"},
	{"root ::= \"a\xffb\"", "", 1, 12, "UTF-8"},
	{strings.Repeat("(", 100000) + `"a"` + strings.Repeat(")", 100000), "", 1, 1, "expected a rule name"},
	{`root ::= ` + strings.Repeat("(", 100000) + `"a"` + strings.Repeat(")", 100000), "root", 1, 110, "nested deeper"},
}

func TestValidateGrammarNamesRuleAndPosition(t *testing.T) {
	for _, tc := range badGrammars {
		err := ValidateGrammar(tc.grammar, "")
		var ge *GrammarError
		if !errors.As(err, &ge) || !errors.Is(err, ErrInvalidGrammar) {
			t.Errorf("%.60q: got %v, want a GrammarError", tc.grammar, err)
			continue
		}
		if ge.Rule != tc.rule || ge.Line != tc.line || ge.Col != tc.col || !strings.Contains(ge.Msg, tc.msg) {
			t.Errorf("%.60q: got rule %q line %d col %d %q, want %q %d %d %q", tc.grammar, ge.Rule, ge.Line, ge.Col, ge.Msg, tc.rule, tc.line, tc.col, tc.msg)
		}
	}
}

// TestBadGrammarsNeverCrash builds a sampler from every bad grammar and
// generates with the ones llama.cpp's parser alone would take: each one
// must fail with ErrInvalidGrammar, none may abort the test process.
func TestBadGrammarsNeverCrash(t *testing.T) {
	m := loadStories(t)
	c := newCtx(t, m, ContextOptions{NCtx: 64, Threads: 1})
	for _, tc := range badGrammars {
		if tc.grammar == "" {
			continue // no grammar
		}
		s, err := m.NewSampler(SamplerOptions{Temp: 0, RepeatPenalty: 1, Grammar: tc.grammar})
		if !errors.Is(err, ErrInvalidGrammar) {
			if s != nil {
				s.Close()
			}
			t.Errorf("%.60q: got %v, want ErrInvalidGrammar", tc.grammar, err)
		}
	}
	// Token ids are checked against the vocabulary.
	if _, err := m.NewSampler(SamplerOptions{Temp: 0, RepeatPenalty: 1, Grammar: `root ::= <[99999]>`}); !errors.Is(err, ErrInvalidGrammar) || !strings.Contains(err.Error(), "outside the vocabulary") {
		t.Errorf("token id outside the vocabulary: %v", err)
	}
	// A grammar that allows no token at some point stops the generation
	// with ErrGrammarDeadEnd (here: no token spells NUL).
	s, err := m.NewSampler(SamplerOptions{Temp: 0, RepeatPenalty: 1, Grammar: `root ::= "O" "\x00"`})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	toks, _ := m.Tokenize("Once", true, false)
	_, err = c.Generate(context.Background(), s, []Input{TokenInput(toks...)}, 0, GenerateOptions{MaxTokens: 8})
	if !errors.Is(err, ErrGrammarDeadEnd) || !errors.Is(err, ErrInvalidGrammar) {
		t.Fatalf("dead end: got %v, want ErrGrammarDeadEnd", err)
	}
	if err := s.Accept(m.EOS()); !errors.Is(err, ErrGrammarDeadEnd) {
		t.Fatalf("accepting EOS inside the grammar: got %v, want ErrGrammarDeadEnd", err)
	}
}

// TestValidateGrammarAcceptsGood: the converter's grammars and the GBNF
// forms llama.cpp documents pass.
func TestValidateGrammarAcceptsGood(t *testing.T) {
	good := []string{
		`root ::= ("yes" | "no") "."`,
		"root ::= [a-z]{3} \" \" [a-z]{2}\n",
		"# comment\nroot ::= item+ # trailing\nitem ::= [^\\n\\]]* \"\\n\"\r\n",
		"root ::=\n  \"a\" |\n  \"b\"\nx ::= \"c\"{0,} \"d\"{1,2} \"e\"{0,3}? [\\x00-\\x7F\\u00e9-\\U0010FFFF] .",
		`root ::= <[1]> !<[2]> <|user|> "x"{2000}`,
		`root ::= ("a" (("b")))* [a-]`,
		`root ::= `,
	}
	for _, g := range good {
		if err := ValidateGrammar(g, ""); err != nil {
			t.Errorf("%q: %v", g, err)
		}
	}
	for _, sc := range schemaCases {
		g, err := JSONSchemaGrammar([]byte(sc))
		if err != nil {
			t.Fatal(err)
		}
		if err := ValidateGrammar(g, ""); err != nil {
			t.Errorf("schema %s: %v\n%s", sc, err, g)
		}
	}
}
