package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pplug/pplug/internal/testenv"
)

// doubledPrefix returns the first error prefix said twice in a row in a
// message's lines ("profile: profile: ...", "profile F: profile: ..."),
// or "".
func doubledPrefix(msg string) string {
	for _, line := range strings.Split(msg, "\n") {
		parts := strings.Split(line, ": ")
		for i := 0; i+1 < len(parts); i++ {
			a, b := parts[i], parts[i+1]
			first, _, _ := strings.Cut(a, " ")
			if a == b || (!strings.Contains(b, " ") && b == first && i+2 < len(parts)) {
				return a + ": " + b
			}
		}
	}
	return ""
}

// TestErrorsNameTheirSubjectOnce: a failing command names what failed once,
// never with the same prefix twice ("pplug: profile: profile: open ...").
func TestErrorsNameTheirSubjectOnce(t *testing.T) {
	model := testenv.Stories260K(t)
	dir := t.TempDir()
	absent := filepath.Join(dir, "absent.json")
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte("[1]"), 0o644)
	notGGUF := filepath.Join(dir, "plug.gguf")
	os.WriteFile(notGGUF, []byte("not a plug"), 0o644)
	for _, args := range [][]string{
		{"generate", "-m", model, "-p", "x", "--profile", absent},
		{"generate", "-m", model, "-p", "x", "--profile", bad},
		{"generate", "-m", model, "-p", "x", "--profile", dir},
		{"generate", "-m", model, "-p", "x", "--profile", bad, "--plug", notGGUF},
		{"generate", "-m", absent, "-p", "x"},
		{"chat", "-m", model, "--profile", absent},
		{"profile", "import", "--profiles", filepath.Join(dir, "p.db"), "--user", "u", "--profile", absent},
		{"profile", "encode", "-m", model, "--profile", absent},
		{"plug", "info", notGGUF},
		{"bench", "-m", model, "-p", "0", "-n", "0", "--profile", absent},
	} {
		code, _, errs := pplug(t, "", args...)
		if code == 0 {
			t.Errorf("%q: exit 0", args)
			continue
		}
		if m := doubledPrefix(errs); m != "" {
			t.Errorf("%q: the prefix %q is doubled:\n%s", args, m, errs)
		}
	}
}

// TestVerboseLogsProfileFields: -v logs the profile as well-formed slog
// fields: the file, the question id when there is one, the item count.
func TestVerboseLogsProfileFields(t *testing.T) {
	model := testenv.Stories260K(t)
	root, _ := testenv.RepoRoot()
	prof := filepath.Join(root, "examples", "profiles", "tom.jsonl")
	code, _, errs := pplug(t, "", "-v", "generate", "-m", model, "-p", "Tom", "-n", "1", "-t", "1", "--profile", prof)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	line := regexp.MustCompile(`msg=personalisation .*`).FindString(errs)
	if !strings.Contains(line, " profile="+prof+" items=6") || strings.Contains(line, "#") {
		t.Errorf("the personalisation log line %q: want profile=%s items=6", line, prof)
	}
}

// TestProfileDatabasePlace: a --profiles in a missing folder says so and
// how to fix it, for serve (before it loads the model) and profile import.
func TestProfileDatabasePlace(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "missing", "users.db")
	prof := filepath.Join(dir, "p.json")
	os.WriteFile(prof, []byte(`[{"text": "Lily likes red balls."}]`), 0o644)
	absentModel := filepath.Join(dir, "absent.gguf")
	for _, args := range [][]string{
		{"profile", "import", "--profiles", db, "--user", "lily", "--profile", prof},
		{"serve", "-m", absentModel, "--profiles", db},
	} {
		code, _, errs := pplug(t, "", args...)
		want := "profile database " + db + ": the folder " + filepath.Dir(db) + " does not exist: create it (mkdir -p"
		if code != 1 || !strings.Contains(errs, want) || strings.Contains(errs, "move it away") {
			t.Errorf("%q: exit %d: %s\nwant exit 1 and %q", args[:2], code, errs, want)
		}
	}
}

// TestFlagsCheckedBeforeLoading: a bad flag value is a usage error found
// before the model is loaded. The model here does not exist, so a check
// made after loading would fail with exit 1 and another message. Enum-like
// flags are checked whether or not this run would read them (--plugin-device
// without --plug).
func TestFlagsCheckedBeforeLoading(t *testing.T) {
	dir := t.TempDir()
	m := filepath.Join(dir, "absent.gguf")
	prof := filepath.Join(dir, "p.json")
	os.WriteFile(prof, []byte(`[{"text": "Lily likes red balls."}]`), 0o644)
	q := filepath.Join(dir, "q.json")
	os.WriteFile(q, []byte(`[{"id": "1", "input": "x", "profile": [{"id": "1", "text": "a"}]}]`), 0o644)
	enums := [][]string{
		{"--plugin-device", "bogus", `--plugin-device: kernels: unknown device "bogus"`},
		{"--device", "bogus", `--device: unknown device "bogus": available: `},
		{"-ngl", "-5", `--n-gpu-layers: "-5": want a number of layers (0: none), auto or all`},
		{"-sm", "tensor", `--split-mode: split mode "tensor": want none, layer or row`},
		{"--pooling", "median", `--pooling: unknown pooling "median"`},
	}
	cases := []struct {
		cmd   []string
		flags [][]string // flag, value, message
	}{
		{[]string{"generate", "-m", m, "-p", "x"}, append(enums,
			[]string{"--method", "magic", `--method: unknown method "magic"`},
			[]string{"--task", "lamp9", "--task: lamp: no task"},
			[]string{"--plug", prof, "--plug needs --profile"},
			[]string{"--method", "pplug", "--method pplug needs --plug"},
			[]string{"--top-p", "2", "top-p 2 is outside [0, 1]"},
			[]string{"-n", "-2", "--n-predict -2"},
			[]string{"-c", "-1", "--ctx-size -1"})},
		{[]string{"chat", "-m", m}, append(enums,
			[]string{"--method", "bm25", "--method bm25 needs --profile"},
			[]string{"--remember", "", "--remember needs --profile"},
			[]string{"-t", "9999", "--threads 9999"})},
		{[]string{"embed", "-m", m, "-p", "x"}, [][]string{
			{"--pooling", "median", `--pooling: unknown pooling "median"`},
			{"--embd-normalize", "-3", "--embd-normalize -3"},
			{"--embd-output-format", "xml", `--embd-output-format "xml"`}}},
		{[]string{"eval", "-m", m, "--questions", q}, append(enums,
			[]string{"--methods", "magic", "magic"},
			[]string{"--task", "lamp9", "--task: lamp: no task"})},
		{[]string{"serve", "-m", m, "--profiles", filepath.Join(dir, "s.db")}, append(enums,
			[]string{"--port", "70000", "--port 70000"})},
		{[]string{"bench", "-m", m, "-p", "4", "-n", "0"}, append(enums,
			[]string{"--task", "lamp9", "--task: lamp: no task"})},
	}
	for _, tc := range cases {
		for _, f := range tc.flags {
			args := append([]string(nil), tc.cmd...)
			if f[1] == "" {
				args = append(args, f[0]) // a bool flag
			} else {
				args = append(args, f[0], f[1])
			}
			code, _, errs := pplug(t, "", args...)
			if code != 2 || !strings.Contains(errs, f[2]) {
				t.Errorf("%s %s %s: exit %d: %s\nwant exit 2 and %q", tc.cmd[0], f[0], f[1], code, errs, f[2])
			}
		}
	}
}

// TestGenerateRefusesEmptyPrompt: an empty or blank prompt, from any
// source, is a usage error (exit 2), found after standard input is read;
// a --question-id without a prompt brings the question's input.
func TestGenerateRefusesEmptyPrompt(t *testing.T) {
	model := testenv.Stories260K(t)
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.txt")
	os.WriteFile(empty, []byte("\n"), 0o644)
	for _, tc := range []struct {
		stdin string
		args  []string
		want  string
	}{
		{"", nil, "no prompt given"},
		{"Once upon a time", nil, "no prompt given"}, // standard input is read with -p - only
		{"", []string{"-p", "-"}, "standard input gave no text"},
		{" \n", []string{"-p", "-"}, "standard input gave no text"},
		{"", []string{"-p", ""}, "the prompt is empty"},
		{"", []string{"-f", empty}, empty + " holds no text"},
	} {
		args := append([]string{"generate", "-m", model, "-n", "2", "-t", "1"}, tc.args...)
		code, out, errs := pplug(t, tc.stdin, args...)
		if code != 2 || out != "" || !strings.Contains(errs, tc.want) {
			t.Errorf("%q (stdin %q): exit %d, %q%q; want exit 2 and %q", tc.args, tc.stdin, code, out, errs, tc.want)
		}
	}
	q := filepath.Join(dir, "q.json")
	os.WriteFile(q, []byte(`[{"id": "7", "input": "Once upon a time", "profile": [{"id": "1", "text": "Lily had a red ball."}]}]`), 0o644)
	code, out, errs := pplug(t, "", "generate", "-m", model, "-n", "2", "-t", "1", "--temp", "0", "--profile", q, "--question-id", "7")
	if code != 0 || strings.TrimSpace(out) == "" || !strings.Contains(errs, "the input of question 7") {
		t.Errorf("--question-id without -p: exit %d, %q%q", code, out, errs)
	}
}

// TestChatFallbackDocumented: chat --help and the README say what a model
// without a chat template gets (chat.Session's plain User:/Assistant:
// format and its stop string).
func TestChatFallbackDocumented(t *testing.T) {
	code, help, _ := pplug(t, "", "chat", "--help")
	root, _ := testenv.RepoRoot()
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if code != 0 || err != nil {
		t.Fatalf("chat --help: exit %d; README: %v", code, err)
	}
	// The README wraps its lines in a shell comment: compare words.
	words := func(s string) string { return strings.Join(strings.Fields(strings.ReplaceAll(s, "#", "")), " ") }
	for _, want := range []string{`then "User: MESSAGE" and "Assistant: ANSWER" lines`, `the model writes "\nUser:"`, "plain format: the system prompt and a blank line"} {
		if !strings.Contains(words(help), want) {
			t.Errorf("chat --help lacks %q", want)
		}
		if !strings.Contains(words(string(readme)), want) {
			t.Errorf("README lacks %q", want)
		}
	}
}

// TestExplainNoOverlap: when no history item shares a word with the input,
// retrieval puts the most recent items into the prompt and --explain says
// so, instead of listing items of score 0 as matches.
func TestExplainNoOverlap(t *testing.T) {
	model := testenv.Stories260K(t)
	root, _ := testenv.RepoRoot()
	prof := filepath.Join(root, "examples", "profiles", "tom.jsonl")
	code, _, errs := pplug(t, "", "generate", "-m", model, "-p", "zzqx", "-n", "1", "-t", "1", "--profile", prof,
		"--retrieve-k", "2", "--explain", "--verbose-prompt")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(errs, "no history item shares a word with the input; retrieval fell back to the 2 most recent items (of 6):\n  #5 (id a6)") ||
		strings.Contains(errs, "0.0000") {
		t.Errorf("--explain does not say that retrieval fell back:\n%s", errs)
	}
	// The prompt holds the two most recent items (a6, a5), not the first.
	if !strings.Contains(errs, "gave him a cookie") || !strings.Contains(errs, "big red button") || strings.Contains(errs, "out of boxes") {
		t.Errorf("the prompt does not hold the most recent items:\n%s", errs)
	}
}
