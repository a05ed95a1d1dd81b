package main

import (
	"encoding/json"
	"os"
	"path/filepath"
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

	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--grammar", `root ::= "a`}, 1, "invalid grammar"},
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
