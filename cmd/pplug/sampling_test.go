package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/pplug/pplug/internal/testenv"
)

// Greedy stories260K from "Once upon a time" (see TestGenerateGreedyStories).
const storiesOpening = ", there was a little girl named Lily. She loved to play outside in the park."

func TestGenerateStopStrings(t *testing.T) {
	model := testenv.Stories260K(t)
	base := []string{"generate", "-m", model, "-p", "Once upon a time", "-n", "40", "--temp", "0", "-t", "1"}
	code, out, errs := pplug(t, "", append(base, "--stop", "Lily")...)
	if code != 0 || strings.TrimRight(out, "\n") != ", there was a little girl named " {
		t.Fatalf("--stop Lily: exit %d, %q (%s)", code, out, errs)
	}
	// Repeatable, -r as llama-cli: the first one to appear wins.
	code, out, errs = pplug(t, "", append(base, "-r", "park", "-r", "girl")...)
	if code != 0 || strings.TrimRight(out, "\n") != ", there was a little " {
		t.Fatalf("-r park -r girl: exit %d, %q (%s)", code, out, errs)
	}
	// llama.cpp's --reverse-prompt (hidden from the help) mixes with -r.
	code, out, errs = pplug(t, "", append(base, "--reverse-prompt", "park", "-r", "girl")...)
	if code != 0 || strings.TrimRight(out, "\n") != ", there was a little " {
		t.Fatalf("--reverse-prompt park -r girl: exit %d, %q (%s)", code, out, errs)
	}
	code, _, errs = pplug(t, "", append(base, "--reverse-prompt", "")...)
	if code != 2 || !strings.Contains(errs, "empty stop string") {
		t.Fatalf("empty --reverse-prompt: exit %d (%s)", code, errs)
	}
	code, _, errs = pplug(t, "", append(base, "--stop", "")...)
	if code != 2 || !strings.Contains(errs, "empty stop string") {
		t.Fatalf("empty --stop: exit %d (%s)", code, errs)
	}
}

func TestGeneratePenalties(t *testing.T) {
	model := testenv.Stories260K(t)
	base := []string{"generate", "-m", model, "-p", "Once upon a time", "-n", "40", "--temp", "0", "-t", "1"}
	_, plain, _ := pplug(t, "", base...)
	if !strings.HasPrefix(plain, storiesOpening) {
		t.Fatalf("greedy output %q", plain)
	}
	for _, flag := range []string{"--frequency-penalty", "--presence-penalty"} {
		code, out, errs := pplug(t, "", append(base, flag, "1.5")...)
		if code != 0 {
			t.Fatalf("%s: exit %d (%s)", flag, code, errs)
		}
		if out == plain {
			t.Errorf("%s 1.5 did not change the greedy text %q", flag, out)
		}
		for _, bad := range []string{"3", "-2.5", "NaN"} {
			if code, _, errs := pplug(t, "", append(base, flag, bad)...); code != 2 {
				t.Errorf("%s %s: exit %d, want 2 (%s)", flag, bad, code, errs)
			}
		}
	}
}

func TestGenerateGrammarAndJSONSchema(t *testing.T) {
	model := testenv.Stories260K(t)
	dir := t.TempDir()
	base := []string{"generate", "-m", model, "-p", "Once upon a time", "-n", "60", "--temp", "0", "-t", "1"}

	code, out, errs := pplug(t, "", append(base, "--grammar", `root ::= ("yes" | "no") "."`)...)
	if code != 0 || (strings.TrimSpace(out) != "yes." && strings.TrimSpace(out) != "no.") {
		t.Fatalf("--grammar: exit %d, %q (%s)", code, out, errs)
	}
	gf := filepath.Join(dir, "g.gbnf")
	os.WriteFile(gf, []byte("root ::= [a-z]{3} \" \" [a-z]{2}\n"), 0o644)
	code, out, errs = pplug(t, "", append(base, "--grammar-file", gf)...)
	if w := strings.Fields(out); code != 0 || len(w) != 2 || len(w[0]) != 3 || len(w[1]) != 2 {
		t.Fatalf("--grammar-file: exit %d, %q (%s)", code, out, errs)
	}

	schema := `{"type":"object","properties":{"hero":{"enum":["Lily","Tom"]},"friends":{"type":"array","items":{"type":"string","maxLength":8},"maxItems":2}},"required":["hero","friends"]}`
	sf := filepath.Join(dir, "s.json")
	os.WriteFile(sf, []byte(schema), 0o644)
	for _, arg := range []string{schema, "@" + sf} {
		code, out, errs = pplug(t, "", append(base, "--json-schema", arg)...)
		var v struct {
			Hero    string   `json:"hero"`
			Friends []string `json:"friends"`
		}
		if code != 0 {
			t.Fatalf("--json-schema: exit %d (%s)", code, errs)
		}
		if err := json.Unmarshal([]byte(out), &v); err != nil || (v.Hero != "Lily" && v.Hero != "Tom") || len(v.Friends) > 2 {
			t.Fatalf("--json-schema output %q (%v)", out, err)
		}
	}

	badGF := filepath.Join(dir, "bad.gbnf")
	os.WriteFile(badGF, []byte("root ::= digit+\ndigit ::= [9-0]\n"), 0o644)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--grammar", `root ::= "a`}, 2, `--grammar: invalid grammar at line 1, column 10, rule "root": unterminated string`},
		{[]string{"--grammar", `root ::= [z-a]+`}, 2, `--grammar: invalid grammar at line 1, column 11, rule "root": character range z-a is reversed`},
		{[]string{"--grammar-file", badGF}, 2, "--grammar-file " + badGF + `: invalid grammar at line 2, column 12, rule "digit": character range 9-0 is reversed`},
		{[]string{"--grammar", `root ::= a` + "\na ::= a \"x\""}, 2, "left recursion"},
		{[]string{"--grammar", `root ::= "O" "\x00"`}, 2, "the grammar allows no token here"},
		{[]string{"--grammar", " "}, 2, "--grammar is empty"},
		{[]string{"--grammar-file", filepath.Join(dir, "missing.gbnf")}, 1, "missing.gbnf"},
		{[]string{"--json-schema", `{"type": "string", "pattern": "a+"}`}, 2, "pattern"},
		{[]string{"--json-schema", `{"type":`}, 2, "--json-schema"},
		{[]string{"--json-schema", "@" + filepath.Join(dir, "missing.json")}, 1, "missing.json"},
		{[]string{"--grammar", `root ::= "a"`, "--json-schema", `{}`}, 2, "one of"},
	} {
		code, _, errs := pplug(t, "", append(base, c.args...)...)
		if code != c.code || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, want %d with %q:\n%s", c.args, code, c.code, c.want, errs)
		}
	}
}

// TestGenerateVerbosePromptAndExplain: --verbose-prompt prints the final
// input position by position (the retrieved items in the prompt, the
// persona rows in their place), --explain lists the items retrieved with
// their BM25 scores or the items the persona weighs most, and --method
// picks any method the profile and plug allow.
func TestGenerateVerbosePromptAndExplain(t *testing.T) {
	model := testenv.Stories260K(t)
	root, _ := testenv.RepoRoot()
	prof := filepath.Join(root, "examples", "profiles", "lily.json")
	plug := wordsPlug(t, model, " Tom", " robot")
	base := []string{"generate", "-m", model, "-p", "Lily and her dog", "-n", "4", "--temp", "0", "--profile", prof, "--cache-dir", t.TempDir(), "--verbose-prompt", "--explain"}
	// Retrieval: the prompt holds the items --explain lists.
	code, _, errs := pplug(t, "", base...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"retrieved into the prompt (BM25 score), 4 of 8 items share a word with the input:", `prompt (bm25): "Past texts by this user:\n- `, "number of positions in the input = ", `     0 ->      1 "<s>"`} {
		if !strings.Contains(errs, want) {
			t.Errorf("bm25: stderr lacks %q:\n%s", want, errs)
		}
	}
	// PPlug: the rows after BOS, the prompt as given.
	code, _, errs = pplug(t, "", append(base, "--plug", plug)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"the 5 history items with the highest weights (of 8)", `prompt (pplug): "Lily and her dog"`,
		"(1 BOS, 0 context tokens, 1 instruction rows, 1 persona rows, ", "     1 -> [instruction row 1]", "     2 -> [persona row 1]", "     3 -> "} {
		if !strings.Contains(errs, want) {
			t.Errorf("pplug: stderr lacks %q:\n%s", want, errs)
		}
	}
	// pplug+bm25: both, with one retrieved item for an untrained plug.
	// The rows sit after the retrieved item, right before the prompt.
	code, _, errs = pplug(t, "", append(base, "--plug", plug, "--method", "pplug+bm25")...)
	if code != 0 || !strings.Contains(errs, "1 of 8 items") || !strings.Contains(errs, "highest weights") {
		t.Errorf("pplug+bm25: exit %d\n%s", code, errs)
	}
	nctx := regexp.MustCompile(`\(1 BOS, (\d+) context tokens, 1 instruction rows, 1 persona rows, `).FindStringSubmatch(errs)
	if nctx == nil || nctx[1] == "0" {
		t.Fatalf("pplug+bm25: no context before the rows:\n%s", errs)
	}
	n, _ := strconv.Atoi(nctx[1])
	if want := fmt.Sprintf("%6d -> [instruction row 1]\n%6d -> [persona row 1]\n", n+1, n+2); !strings.Contains(errs, want) {
		t.Errorf("pplug+bm25: stderr lacks %q:\n%s", want, errs)
	}
	// recent, none.
	code, _, errs = pplug(t, "", append(base, "--method", "recent")...)
	if code != 0 || !strings.Contains(errs, "(most recent first), 4 of 8 items") {
		t.Errorf("recent: exit %d\n%s", code, errs)
	}
	code, _, errs = pplug(t, "", append(base, "--method", "none")...)
	if code != 0 || !strings.Contains(errs, `prompt (none): "Lily and her dog"`) {
		t.Errorf("none: exit %d\n%s", code, errs)
	}
	// Methods the flags cannot serve are usage errors.
	for _, c := range [][]string{{"--method", "pplug"}, {"--method", "bm25", "--plug", plug}, {"--method", "bm42"}} {
		if code, _, errs := pplug(t, "", append(base, c...)...); code != 2 || !strings.Contains(errs, "--method") {
			t.Errorf("%v: exit %d %s", c, code, errs)
		}
	}
}

// TestGenerateQuestionInputIsThePrompt: with a LaMP question selected by
// --question-id and no -p, the question's input is the prompt, with or
// without a persona; -p still overrides it.
func TestGenerateQuestionInputIsThePrompt(t *testing.T) {
	model := testenv.Stories260K(t)
	qs := writeFile(t, t.TempDir(), "q.json", `[
	  {"id": "7", "input": "Once upon a time", "profile": [{"id": "1", "text": "Tom had a red ball."}, {"id": "2", "text": "Tom went to the park."}]},
	  {"id": "8", "input": "The dog", "profile": [{"id": "3", "text": "Sue had a cat."}]}
	]`)
	base := []string{"generate", "-m", model, "-n", "12", "--temp", "0", "-t", "1", "--profile", qs, "--question-id", "7"}
	for _, method := range []string{"none", "bm25"} {
		code, got, errs := pplug(t, "", append(base, "--method", method)...)
		if code != 0 || !strings.Contains(errs, "prompt: the input of question 7") {
			t.Fatalf("--method %s: exit %d (%s)", method, code, errs)
		}
		_, want, _ := pplug(t, "", append(base, "--method", method, "-p", "Once upon a time")...)
		if got != want {
			t.Errorf("--method %s: the question's input gives %q, -p with the same text %q", method, got, want)
		}
		_, other, errs := pplug(t, "", append(base, "--method", method, "-p", "The dog")...)
		if other == got || strings.Contains(errs, "input of question") {
			t.Errorf("--method %s: -p does not override the question's input: %q (%s)", method, other, errs)
		}
	}
	if _, out, _ := pplug(t, "", "generate", "-m", model, "-n", "12", "--temp", "0", "-t", "1", "--method", "none", "-p", "Once upon a time"); !strings.HasPrefix(out, ", there was") {
		t.Errorf("plain greedy: %q", out)
	}
}
