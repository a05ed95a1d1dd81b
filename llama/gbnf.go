package llama

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// GBNF limits. llama.cpp's parser recurses once per nesting level and
// expands every repetition in place, so a grammar past these bounds would
// overflow its stack or exhaust memory instead of failing.
const (
	// MaxGrammarBytes bounds the grammar text.
	MaxGrammarBytes = 1 << 20
	// MaxGrammarDepth bounds nested parentheses.
	MaxGrammarDepth = 100
	// MaxGrammarRepetition is llama.cpp's bound on a {m,n} count.
	MaxGrammarRepetition = 2000
	// maxGrammarElements bounds the elements the grammar expands to.
	maxGrammarElements = 1 << 22
)

// GrammarError is a grammar that llama.cpp cannot use: where it is (the
// rule and the 1-based line and column; Line is 0 for the grammar as a
// whole) and what is wrong. It wraps ErrInvalidGrammar.
type GrammarError struct {
	Rule      string
	Line, Col int
	Msg       string
}

func (e *GrammarError) Error() string {
	var where []string
	if e.Line > 0 {
		where = append(where, fmt.Sprintf("line %d, column %d", e.Line, e.Col))
	}
	if e.Rule != "" {
		where = append(where, fmt.Sprintf("rule %q", e.Rule))
	}
	if len(where) == 0 {
		return "invalid grammar: " + e.Msg
	}
	return fmt.Sprintf("invalid grammar at %s: %s", strings.Join(where, ", "), e.Msg)
}

func (e *GrammarError) Unwrap() error { return ErrInvalidGrammar }

// ValidateGrammar checks a GBNF grammar (llama.cpp's grammar format) with
// the start symbol root ("root" when empty) before llama.cpp sees it: its
// syntax, that every rule it uses is defined, and what llama.cpp's parser
// would abort on or hang over (a reversed character range, a repetition
// {m,n} with m > n or a count above MaxGrammarRepetition, nesting deeper
// than MaxGrammarDepth, a grammar that expands past memory). The error is
// a *GrammarError.
func ValidateGrammar(grammar, root string) error {
	return validateGrammar(grammar, root, -1)
}

// validateGrammar is ValidateGrammar that also checks token ids (<[id]>)
// against a vocabulary of nVocab tokens when nVocab >= 0.
func validateGrammar(grammar, root string, nVocab int) error {
	if root == "" {
		root = "root"
	}
	p := &gbnfParser{src: grammar, nVocab: nVocab, defined: map[string]bool{}}
	if err := p.checkText(); err != nil {
		return err
	}
	if err := p.parse(); err != nil {
		return err
	}
	return p.checkRules(root)
}

// gbnfParser follows llama.cpp's llama_grammar_parser (llama-grammar.cpp)
// step for step, keeping positions for the messages.
type gbnfParser struct {
	src      string
	pos      int
	rule     string // the rule being parsed
	depth    int
	nVocab   int
	elements int64 // elements after expansion, roughly as llama.cpp counts them
	defined  map[string]bool
	refs     []gbnfRef // rule references, in order
}

type gbnfRef struct {
	name, rule string
	at         int
}

func (p *gbnfParser) errAt(at int, format string, a ...any) *GrammarError {
	line := 1 + strings.Count(p.src[:at], "\n")
	col := 1 + utf8.RuneCountInString(p.src[strings.LastIndexByte(p.src[:at], '\n')+1:at])
	return &GrammarError{Rule: p.rule, Line: line, Col: col, Msg: fmt.Sprintf(format, a...)}
}

func (p *gbnfParser) errf(format string, a ...any) *GrammarError {
	return p.errAt(p.pos, format, a...)
}

// checkText rejects what llama.cpp would misread: a NUL byte ends its C
// string early, and it decodes UTF-8 without checking it.
func (p *gbnfParser) checkText() error {
	switch {
	case strings.TrimSpace(p.src) == "":
		return &GrammarError{Msg: "the grammar is empty (write at least: root ::= ...)"}
	case len(p.src) > MaxGrammarBytes:
		return &GrammarError{Msg: fmt.Sprintf("the grammar has %d bytes, more than %d", len(p.src), MaxGrammarBytes)}
	}
	if i := strings.IndexByte(p.src, 0); i >= 0 {
		return p.errAt(i, "NUL byte in the grammar")
	}
	if !utf8.ValidString(p.src) {
		return p.errAt(firstInvalidUTF8(p.src), "the grammar is not valid UTF-8")
	}
	return nil
}

func (p *gbnfParser) peek(off int) byte {
	if p.pos+off < len(p.src) {
		return p.src[p.pos+off]
	}
	return 0
}

func (p *gbnfParser) done() bool { return p.pos >= len(p.src) }

// space skips blanks and # comments, and newlines when newlineOK.
func (p *gbnfParser) space(newlineOK bool) {
	for !p.done() {
		switch c := p.src[p.pos]; {
		case c == ' ' || c == '\t' || (newlineOK && (c == '\r' || c == '\n')):
			p.pos++
		case c == '#':
			for !p.done() && p.src[p.pos] != '\r' && p.src[p.pos] != '\n' {
				p.pos++
			}
		default:
			return
		}
	}
}

func isGBNFWordChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-'
}

func (p *gbnfParser) name() (string, error) {
	start := p.pos
	for !p.done() && isGBNFWordChar(p.src[p.pos]) {
		p.pos++
	}
	if p.pos == start {
		return "", p.errf("expected a rule name (letters, digits, -)")
	}
	return p.src[start:p.pos], nil
}

func (p *gbnfParser) parse() error {
	p.space(true)
	for !p.done() {
		if err := p.parseRule(); err != nil {
			return err
		}
	}
	if len(p.defined) == 0 {
		return &GrammarError{Msg: "the grammar defines no rules (write at least: root ::= ...)"}
	}
	return nil
}

func (p *gbnfParser) parseRule() error {
	p.rule = ""
	name, err := p.name()
	if err != nil {
		return err
	}
	p.rule = name
	p.space(false)
	if !strings.HasPrefix(p.src[p.pos:], "::=") {
		return p.errf("expected ::= after the rule name")
	}
	p.pos += 3
	p.space(true)
	if err := p.alternates(false); err != nil {
		return err
	}
	p.defined[name] = true
	switch {
	case p.peek(0) == '\r' || p.peek(0) == '\n':
		p.pos++
	case !p.done():
		return p.errf("expected the end of the line, found %q", p.nextRune())
	}
	p.space(true)
	return nil
}

func (p *gbnfParser) nextRune() rune {
	r, _ := utf8.DecodeRuneInString(p.src[p.pos:])
	return r
}

func (p *gbnfParser) alternates(nested bool) error {
	if err := p.sequence(nested); err != nil {
		return err
	}
	for p.peek(0) == '|' {
		p.pos++
		p.space(true)
		if err := p.sequence(nested); err != nil {
			return err
		}
	}
	return nil
}

// sequence parses items up to the end of an alternative; last is the
// size (in elements) of the item a repetition would apply to, 0 when
// there is none.
func (p *gbnfParser) sequence(nested bool) error {
	last := int64(0)
	for !p.done() {
		start := p.pos
		var size int64
		var err error
		switch c := p.src[p.pos]; {
		case c == '"':
			size, err = p.literal()
		case c == '[':
			size, err = p.class()
		case c == '<' || c == '!':
			size, err = 1, p.token()
		case isGBNFWordChar(c):
			size, err = 1, p.ref()
		case c == '(':
			size, err = 1, p.group()
		case c == '.':
			p.pos++
			size = 1
		case c == '*' || c == '+' || c == '?' || c == '{':
			if last == 0 {
				return p.errf("%q repeats nothing: put it after an item", c)
			}
			if last, err = p.repetition(last); err != nil {
				return err
			}
			p.space(nested)
			continue
		default:
			return nil
		}
		if err != nil {
			return err
		}
		if err := p.count(start, size); err != nil {
			return err
		}
		last = size
		p.space(nested)
	}
	return nil
}

// count adds n elements to the expanded size.
func (p *gbnfParser) count(at int, n int64) error {
	p.elements += n
	if p.elements > maxGrammarElements {
		return p.errAt(at, "the grammar expands to more than %d elements (lower the repetition counts)", maxGrammarElements)
	}
	return nil
}

func (p *gbnfParser) literal() (int64, error) {
	open := p.pos
	p.pos++
	n := int64(0)
	for p.peek(0) != '"' {
		if p.done() {
			return 0, p.errAt(open, "unterminated string: add the closing \"")
		}
		if _, err := p.char(); err != nil {
			return 0, err
		}
		n++
	}
	p.pos++
	return n, nil
}

// class parses [...] and [^...]; a range whose start comes after its end
// matches nothing, and llama.cpp fails on it only while generating.
func (p *gbnfParser) class() (int64, error) {
	open := p.pos
	p.pos++
	if p.peek(0) == '^' {
		p.pos++
	}
	n := int64(0)
	for p.peek(0) != ']' {
		if p.done() {
			return 0, p.errAt(open, "unterminated character class: add the closing ]")
		}
		at := p.pos
		lo, err := p.char()
		if err != nil {
			return 0, err
		}
		n++
		if p.peek(0) == '-' && p.peek(1) != ']' {
			p.pos++
			if p.done() {
				return 0, p.errAt(open, "unterminated character class: add the closing ]")
			}
			hi, err := p.char()
			if err != nil {
				return 0, err
			}
			if lo > hi {
				return 0, p.errAt(at, "character range %s is reversed (start after end): write %s",
					p.src[at:p.pos], rangeText(hi, lo))
			}
			n++
		}
	}
	p.pos++
	return n, nil
}

func rangeText(lo, hi uint32) string {
	q := func(c uint32) string {
		if c > ' ' && c < utf8.RuneSelf && !strings.ContainsRune(`\]-^`, rune(c)) {
			return string(rune(c))
		}
		return fmt.Sprintf(`\U%08X`, c)
	}
	return q(lo) + "-" + q(hi)
}

// gbnfEscapes are the one-letter escapes llama.cpp knows.
var gbnfEscapes = map[byte]uint32{'t': '\t', 'r': '\r', 'n': '\n', '\\': '\\', '"': '"', '[': '[', ']': ']'}

// char parses one character (a code point; escapes reach 0xFFFFFFFF) of a
// literal or class, with llama.cpp's escapes.
func (p *gbnfParser) char() (uint32, error) {
	if p.peek(0) != '\\' {
		r, n := utf8.DecodeRuneInString(p.src[p.pos:])
		p.pos += n
		return uint32(r), nil
	}
	at := p.pos
	if c, ok := gbnfEscapes[p.peek(1)]; ok {
		p.pos += 2
		return c, nil
	}
	switch p.peek(1) {
	case 'x':
		return p.hex(at, 2)
	case 'u':
		return p.hex(at, 4)
	case 'U':
		return p.hex(at, 8)
	case 0:
		return 0, p.errAt(at, "the grammar ends inside an escape")
	}
	return 0, p.errAt(at, "unknown escape \\%c (use \\x, \\u, \\U, \\t, \\r, \\n, \\\\, \\\", \\[ or \\])", p.nextRuneAt(at+1))
}

func (p *gbnfParser) nextRuneAt(at int) rune {
	r, _ := utf8.DecodeRuneInString(p.src[at:])
	return r
}

func (p *gbnfParser) hex(at, digits int) (uint32, error) {
	s := p.src[at+2 : min(at+2+digits, len(p.src))]
	v, err := strconv.ParseUint(s, 16, 32)
	if len(s) < digits || err != nil || strings.ContainsAny(s, "+-_") {
		return 0, p.errAt(at, "\\%c needs %d hex digits", p.src[at+1], digits)
	}
	p.pos = at + 2 + digits
	return uint32(v), nil
}

// token parses <[id]>, <text> and their negations !<...>.
func (p *gbnfParser) token() error {
	at := p.pos
	if p.peek(0) == '!' {
		p.pos++
	}
	if p.peek(0) != '<' {
		return p.errf("expected < after !")
	}
	end := strings.IndexByte(p.src[p.pos:], '>')
	if end < 0 {
		return p.errAt(at, "unterminated token: add the closing >")
	}
	body := p.src[p.pos+1 : p.pos+end]
	p.pos += end + 1
	if id, ok := strings.CutPrefix(body, "["); ok {
		return p.tokenID(at, strings.TrimSuffix(id, "]"), strings.HasSuffix(id, "]"))
	}
	return nil
}

func (p *gbnfParser) tokenID(at int, id string, closed bool) error {
	n, err := strconv.ParseUint(id, 10, 32)
	switch {
	case !closed || err != nil || strings.ContainsAny(id, "+-_"):
		return p.errAt(at, "token id %q is not a number: write <[123]>", id)
	case p.nVocab >= 0 && n >= uint64(p.nVocab):
		return p.errAt(at, "token id %d is outside the vocabulary of %d tokens", n, p.nVocab)
	}
	return nil
}

func (p *gbnfParser) ref() error {
	at := p.pos
	name, err := p.name()
	if err != nil {
		return err
	}
	p.refs = append(p.refs, gbnfRef{name: name, rule: p.rule, at: at})
	return nil
}

func (p *gbnfParser) group() error {
	open := p.pos
	p.depth++
	if p.depth > MaxGrammarDepth {
		return p.errAt(open, "parentheses nested deeper than %d", MaxGrammarDepth)
	}
	p.pos++
	p.space(true)
	if err := p.alternates(true); err != nil {
		return err
	}
	if p.peek(0) != ')' {
		return p.errAt(open, "unclosed (: add the closing )")
	}
	p.pos++
	p.depth--
	return nil
}

// repetition parses *, +, ? or {m}, {m,}, {m,n} after an item of size
// elements and returns the size of what it made (a reference).
func (p *gbnfParser) repetition(size int64) (int64, error) {
	at := p.pos
	lo, hi := int64(0), int64(-1)
	switch p.src[p.pos] {
	case '*':
		p.pos++
	case '+':
		p.pos++
		lo = 1
	case '?':
		p.pos++
		hi = 1
	default:
		var err error
		if lo, hi, err = p.braces(); err != nil {
			return 0, err
		}
	}
	// S{m,n}: m copies of S, then n-m optional rules of S (one when
	// unbounded), each S plus a reference, and a reference to the first
	// (llama.cpp's handle_repetitions). What follows repeats all of it.
	opt := int64(1)
	if hi >= 0 {
		opt = hi - lo
	}
	if err := p.count(at, size*max(lo-1, 0)+opt*(size+3)+1); err != nil {
		return 0, err
	}
	after := size * lo
	if opt > 0 {
		after++
	}
	return after, nil
}

// braces parses {m}, {m,} or {m,n}; hi is -1 for no bound.
func (p *gbnfParser) braces() (lo, hi int64, err error) {
	at := p.pos
	p.pos++
	p.space(false)
	if lo, err = p.count64(at); err != nil {
		return 0, 0, err
	}
	p.space(false)
	hi = lo
	if p.peek(0) == ',' {
		p.pos++
		p.space(false)
		hi = -1
		if c := p.peek(0); c >= '0' && c <= '9' {
			if hi, err = p.count64(at); err != nil {
				return 0, 0, err
			}
			p.space(false)
		}
	}
	if p.peek(0) != '}' {
		return 0, 0, p.errAt(at, "expected {m}, {m,} or {m,n}")
	}
	p.pos++
	if hi >= 0 && lo > hi {
		return 0, 0, p.errAt(at, "repetition %s has its minimum above its maximum", p.src[at:p.pos])
	}
	return lo, hi, nil
}

func (p *gbnfParser) count64(at int) (int64, error) {
	start := p.pos
	for c := p.peek(0); c >= '0' && c <= '9'; c = p.peek(0) {
		p.pos++
	}
	if p.pos == start {
		return 0, p.errAt(at, "expected a number in {m,n}")
	}
	n, err := strconv.ParseInt(p.src[start:p.pos], 10, 64)
	if err != nil || n > MaxGrammarRepetition {
		return 0, p.errAt(at, "repetition count %s is above llama.cpp's limit of %d", p.src[start:p.pos], MaxGrammarRepetition)
	}
	return n, nil
}

// checkRules checks that the start symbol and every referenced rule are
// defined.
func (p *gbnfParser) checkRules(root string) error {
	for _, r := range p.refs {
		if !p.defined[r.name] {
			p.rule = r.rule
			return p.errAt(r.at, "rule %q is used but never defined", r.name)
		}
	}
	if !p.defined[root] {
		return &GrammarError{Msg: fmt.Sprintf("no rule %q, the start symbol, is defined", root)}
	}
	return nil
}
