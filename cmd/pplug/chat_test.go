package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pplug/pplug/chat"
	"github.com/pplug/pplug/internal/testenv"
	"github.com/pplug/pplug/llama"
	"github.com/pplug/pplug/persona"
)

// wordsPlug writes a plug whose rows are, whatever the history, the token
// embeddings of two words: a persona that certainly changes the answer.
func wordsPlug(t *testing.T, model string, w1, w2 string) string {
	t.Helper()
	m, err := llama.LoadModel(context.Background(), model, llama.ModelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	enc, err := persona.NewEncoder(m, persona.EncoderOptions{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	scale, _ := persona.TokenEmbeddingScale(m)
	p, err := persona.NewPlug(enc.Dim(), m.NEmbd(), scale, persona.PlugOptions{Encoder: enc.ID()})
	if err != nil {
		t.Fatal(err)
	}
	tok := func(w string) []float32 {
		ts, _ := m.Tokenize(w, false, false)
		e, err := m.TokenEmbeddings(ts[:1])
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	copy(p.Instr, tok(w1))
	clear(p.W1)
	clear(p.B1)
	clear(p.W2)
	for i, x := range tok(w2) {
		p.B2[i] = x / p.Scale // P_u = Scale * B2 = the embedding of w2
	}
	path := filepath.Join(t.TempDir(), "words.plug.gguf")
	if err := p.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestChatScripted(t *testing.T) {
	model := testenv.Stories260K(t)
	root, _ := testenv.RepoRoot()
	prof := filepath.Join(root, "examples", "profiles", "tom.jsonl")
	plug := wordsPlug(t, model, " Tom", " robot")
	script := strings.Join([]string{
		"Tom had a big red ball.",
		"What did Tom do with it?",
		"/reset",
		"What did Tom do with it?",
		"/persona off",
		"Once upon a time",
		"/persona on",
		"Once upon a time",
		"/profile",
		"/save " + filepath.Join(t.TempDir(), "t.json"),
		"/nonsense",
		"/exit",
		"never read",
	}, "\n") + "\n"
	code, out, errs := pplug(t, script, "chat", "-m", model, "-n", "20", "--temp", "0", "-t", "1",
		"--profile", prof, "--plug", plug, "--cache-dir", t.TempDir())
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	// One output line per input line up to /exit: the answers, and empty
	// lines for the commands.
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 12 {
		t.Fatalf("%d output lines for 12 input lines:\n%s\nstderr:\n%s", len(lines), out, errs)
	}
	var answers []string
	for i, l := range lines {
		if isAnswer := i == 0 || i == 1 || i == 3 || i == 5 || i == 7; isAnswer != (l != "") {
			t.Fatalf("output line %d is %q:\n%s", i+1, l, out)
		}
		if l != "" {
			answers = append(answers, l)
		}
	}
	t.Logf("answers:\n%s", out)
	if answers[1] == answers[2] {
		t.Error("the second turn did not depend on the first (or /reset did nothing)")
	}
	if answers[3] == answers[4] {
		t.Error("/persona off did not change the answer")
	}
	for _, want := range []string{"conversation cleared", "persona off", "persona on", "highest weights", "saved", "unknown command"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	// The same messages in a fresh chat without the first turn give the
	// answer after /reset.
	code, out2, _ := pplug(t, "What did Tom do with it?\n", "chat", "-m", model, "-n", "20", "--temp", "0", "-t", "1",
		"--profile", prof, "--plug", plug, "--cache-dir", t.TempDir())
	if code != 0 || strings.TrimSpace(out2) != answers[2] {
		t.Errorf("fresh chat: %q, after /reset: %q", out2, answers[2])
	}
}

func TestChatRemember(t *testing.T) {
	model := testenv.Stories260K(t)
	dir := t.TempDir()
	prof := filepath.Join(dir, "me.jsonl")
	os.WriteFile(prof, []byte(`{"id":"1","text":"I like cats."}`+"\n"), 0o644)
	plug := wordsPlug(t, model, " Tom", " robot")
	code, _, errs := pplug(t, "I have a dog named Max.\nMax likes the park.\n", "chat", "-m", model, "-n", "8", "--temp", "0", "-t", "1",
		"--profile", prof, "--plug", plug, "--cache-dir", dir, "--remember", "-v")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	b, _ := os.ReadFile(prof)
	if lines := strings.Count(string(b), "\n"); lines != 3 || !strings.Contains(string(b), "Max likes the park.") {
		t.Fatalf("profile after --remember:\n%s", b)
	}
	// A LaMP question file cannot grow.
	q := filepath.Join(dir, "q.json")
	os.WriteFile(q, []byte(`{"id":"q1","input":"x","profile":[{"id":"1","text":"hello there"}]}`), 0o644)
	if code, _, errs := pplug(t, "hi\n", "chat", "-m", model, "--profile", q, "--remember"); code == 0 || !strings.Contains(errs, "plain profile") {
		t.Fatalf("--remember with a LaMP question: %d %s", code, errs)
	}
}

// TestChatLineModeAligned: in line mode every input line gets exactly one
// output line, whatever it holds.
func TestChatLineModeAligned(t *testing.T) {
	model := testenv.Stories260K(t)
	in := []string{"Hello there.", "", "   ", "bad \xff\xfe utf-8", "/persona on", "/help", "/profile", "/nonsense", "/save", "Once upon a time", "/reset", "/exit"}
	code, out, errs := pplug(t, strings.Join(in, "\n")+"\nnever read\n", "chat", "-m", model, "-n", "6", "--temp", "0", "-t", "1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != len(in) {
		t.Fatalf("%d output lines for %d input lines:\n%q\nstderr:\n%s", len(lines), len(in), out, errs)
	}
	for i, l := range lines {
		if answered := i == 0 || i == 9; answered != (l != "") {
			t.Errorf("input %q gave output line %q", in[i], l)
		}
	}
	if !strings.Contains(errs, "not valid UTF-8") || !strings.Contains(errs, "no persona: start the chat with --profile") {
		t.Errorf("stderr:\n%s", errs)
	}
}

// TestChatSaveRefusesOverwrite: /save writes new files only; /save! and
// --force replace other files, never the ones the chat uses.
func TestChatSaveRefusesOverwrite(t *testing.T) {
	dir := t.TempDir()
	// The chat's files are copies: a failure here must not damage the assets.
	copyFile := func(src, name string) string {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	model := copyFile(testenv.Stories260K(t), "model.gguf")
	prof := filepath.Join(dir, "me.jsonl")
	os.WriteFile(prof, []byte(`{"id":"1","text":"I like cats."}`+"\n"), 0o644)
	plug := copyFile(wordsPlug(t, model, " Tom", " robot"), "words.plug.gguf")
	other := filepath.Join(dir, "notes.txt")
	os.WriteFile(other, []byte("my notes\n"), 0o644)
	link := filepath.Join(dir, "link.jsonl")
	if err := os.Symlink(prof, link); err != nil {
		t.Fatal(err)
	}
	fresh, forced, forced2 := filepath.Join(dir, "t.json"), filepath.Join(dir, "f.json"), filepath.Join(dir, "g.json")
	os.WriteFile(forced, []byte("old\n"), 0o644)
	os.WriteFile(forced2, []byte("old\n"), 0o644)
	sameProf := filepath.Join(dir, "sub", "..", "me.jsonl")
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	script := strings.Join([]string{
		"Hello.",
		"/save " + fresh,
		"/save " + other,
		"/save! " + forced,
		"/save " + forced2 + " --force",
		"/save! " + prof,
		"/save! " + sameProf,
		"/save! " + link,
		"/save --force " + plug,
		"/save! " + model,
		"/save! " + dir,
	}, "\n") + "\n"
	before := map[string][]byte{}
	for _, p := range []string{model, prof, plug, other} {
		before[p], _ = os.ReadFile(p)
	}
	code, _, errs := pplug(t, script, "chat", "-m", model, "-n", "4", "--temp", "0", "-t", "1",
		"--profile", prof, "--plug", plug, "--cache-dir", t.TempDir())
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for p, b := range before {
		if now, _ := os.ReadFile(p); !bytes.Equal(now, b) {
			t.Errorf("/save replaced %s", p)
		}
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("/save! replaced the link to the profile: %v", err)
	}
	for _, p := range []string{fresh, forced, forced2} {
		if b, err := os.ReadFile(p); err != nil || !strings.Contains(string(b), `"Hello."`) {
			t.Errorf("%s: %v %s", p, err, b)
		}
	}
	for _, want := range []string{"notes.txt exists; /save! ", "is the --profile file", "is the --plug file", "is the --model file", "is a folder"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	if n := strings.Count(errs, "is the --profile file"); n != 3 {
		t.Errorf("%d of 3 saves over the profile refused:\n%s", n, errs)
	}
}

// runPplug runs the test binary as pplug in its own process (TestMain).
func runPplug(ctx context.Context, stdin string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), "PPLUG_RUN_MAIN=1")
	cmd.Stdin = strings.NewReader(stdin)
	return cmd
}

// TestChatRememberConcurrent: two chat processes remember into one
// profile at the same time; every message must arrive, in both formats.
func TestChatRememberConcurrent(t *testing.T) {
	model := testenv.Stories260K(t)
	const each = 30
	for _, tc := range []struct{ name, content string }{
		{"me.json", `[{"id":"0","text":"I like cats."}]`},
		{"me.jsonl", `{"id":"0","text":"I like cats."}` + "\n"},
	} {
		prof := filepath.Join(t.TempDir(), tc.name)
		os.WriteFile(prof, []byte(tc.content), 0o644)
		var cmds []*exec.Cmd
		var outs []*bytes.Buffer
		for p := range 2 {
			var msgs []string
			for i := range each {
				// /reset keeps each turn short: the test is about the appends.
				msgs = append(msgs, fmt.Sprintf("message %d of chat %d", i, p), "/reset")
			}
			cmd := runPplug(context.Background(), strings.Join(msgs, "\n")+"\n", "chat", "-m", model, "-n", "1", "-c", "256", "-t", "1", "--profile", prof, "--remember")
			var b bytes.Buffer
			cmd.Stdout, cmd.Stderr = &b, &b
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			cmds, outs = append(cmds, cmd), append(outs, &b)
		}
		for i, cmd := range cmds {
			if err := cmd.Wait(); err != nil {
				t.Fatalf("chat %d: %v\n%s", i, err, outs[i])
			}
			if strings.Contains(outs[i].String(), "could not remember") {
				t.Errorf("chat %d:\n%s", i, outs[i])
			}
		}
		b, _ := os.ReadFile(prof)
		for p := range 2 {
			for i := range each {
				if !strings.Contains(string(b), fmt.Sprintf(`"message %d of chat %d"`, i, p)) {
					t.Errorf("%s lost message %d of chat %d", tc.name, i, p)
				}
			}
		}
		if n := strings.Count(string(b), `"text"`); n != 1+2*each {
			t.Errorf("%s holds %d items, want %d", tc.name, n, 1+2*each)
		}
	}
}

// TestChatRememberDiskFull: a chat whose profile cannot grow (a file size
// limit stands for a full disk) keeps the profile as it was and loadable,
// says so for each message, goes on, and ends with status 1 and a last
// line that says what was not saved (it used to end with 0).
func TestChatRememberDiskFull(t *testing.T) {
	model := testenv.Stories260K(t)
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skip("prlimit (util-linux) is not installed")
	}
	prof := filepath.Join(t.TempDir(), "me.jsonl")
	content := `{"id":"1","text":"I like cats."}` + "\n"
	os.WriteFile(prof, []byte(content), 0o644)
	cmd := exec.Command(prlimit, fmt.Sprintf("--fsize=%d", len(content)+20), os.Args[0],
		"chat", "-m", model, "-n", "2", "-t", "1", "--profile", prof, "--remember")
	cmd.Env = append(os.Environ(), "PPLUG_RUN_MAIN=1")
	cmd.Stdin = strings.NewReader("I have a dog named Max and a cat named Tom.\nAnd a bird.\n")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("want exit status 1, got %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	last := lines[len(lines)-1]
	if strings.Count(string(out), "could not remember") != 2 || !strings.Contains(string(out), "file too large") ||
		!strings.HasPrefix(last, "pplug: --remember: 2 of 2 messages were not saved to "+prof) {
		t.Errorf("output:\n%s", out)
	}
	if b, _ := os.ReadFile(prof); string(b) != content {
		t.Fatalf("the failed appends changed the profile:\n%q", b)
	}
	if code, _, errs := pplug(t, "hi\n", "chat", "-m", model, "-n", "2", "-t", "1", "--profile", prof); code != 0 {
		t.Fatalf("the profile no longer loads: %s", errs)
	}
}

// TestChatProfileIsOutputsFile: a LaMP outputs file is no profile.
func TestChatProfileIsOutputsFile(t *testing.T) {
	model := testenv.Stories260K(t)
	f := filepath.Join(t.TempDir(), "dev_outputs.json")
	os.WriteFile(f, []byte(`{"task": "LaMP_7", "golds": [{"id": "1", "output": "a tweet"}]}`), 0o644)
	code, _, errs := pplug(t, "hi\n", "chat", "-m", model, "-n", "2", "-t", "1", "--profile", f)
	if code == 0 || !strings.Contains(errs, "LaMP outputs file of LaMP_7") || !strings.Contains(errs, "questions file") {
		t.Fatalf("exit %d: %s", code, errs)
	}
}

// TestCacheDirUnusable: generate and chat run without a cache they cannot
// use, with one warning that names --no-cache.
func TestCacheDirUnusable(t *testing.T) {
	model := testenv.Stories260K(t)
	dir := t.TempDir()
	prof := filepath.Join(dir, "me.jsonl")
	os.WriteFile(prof, []byte(`{"id":"1","text":"I like cats."}`+"\n"), 0o644)
	plug := wordsPlug(t, model, " Tom", " robot")
	file := filepath.Join(dir, "not-a-dir")
	os.WriteFile(file, []byte("x"), 0o644)
	for _, cacheDir := range []string{file, filepath.Join(file, "sub"), "/proc/self/pplug-cache"} {
		code, out, errs := pplug(t, "", "generate", "-m", model, "-p", "Once upon a time", "-n", "4", "-t", "1",
			"--profile", prof, "--plug", plug, "--cache-dir", cacheDir)
		if code != 0 || out == "" || strings.Count(errs, "--no-cache") != 1 {
			t.Errorf("generate with --cache-dir %s: exit %d, %q\n%s", cacheDir, code, out, errs)
		}
		code, out, errs = pplug(t, "Hello.\nAgain.\n", "chat", "-m", model, "-n", "4", "-t", "1",
			"--profile", prof, "--plug", plug, "--remember", "--cache-dir", cacheDir)
		if code != 0 || strings.Count(out, "\n") != 2 || strings.Count(errs, "--no-cache") != 1 {
			t.Errorf("chat with --cache-dir %s: exit %d, %q\n%s", cacheDir, code, out, errs)
		}
	}
}

// chatLines runs a scripted chat and returns its output lines (one per
// input line up to /exit) and stderr.
func chatLines(t *testing.T, script []string, args ...string) ([]string, string) {
	t.Helper()
	model := testenv.Stories260K(t)
	all := append([]string{"chat", "-m", model, "--temp", "0", "-t", "1"}, args...)
	code, out, errs := pplug(t, strings.Join(script, "\n")+"\n", all...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != len(script) {
		t.Fatalf("%d output lines for %d input lines:\n%q\nstderr:\n%s", len(lines), len(script), out, errs)
	}
	return lines, errs
}

// TestChatLoadContinues: a transcript saved by /save and read back by
// /load (after /reset) continues exactly as the conversation itself, and
// records each user message's persona state.
func TestChatLoadContinues(t *testing.T) {
	root, _ := testenv.RepoRoot()
	prof := filepath.Join(root, "examples", "profiles", "tom.jsonl")
	plug := wordsPlug(t, testenv.Stories260K(t), " Tom", " robot")
	args := []string{"-n", "16", "--profile", prof, "--plug", plug, "--cache-dir", t.TempDir()}
	direct, _ := chatLines(t, []string{"Tom had a big red ball.", "/persona off", "What did Tom do with it?", "/persona on", "And then?"}, args...)
	file := filepath.Join(t.TempDir(), "t.json")
	resumed, errs := chatLines(t, []string{"Tom had a big red ball.", "/persona off", "What did Tom do with it?", "/persona on",
		"/save " + file, "/reset", "/load " + file, "And then?"}, args...)
	if !strings.Contains(errs, "loaded 4 messages from "+file) {
		t.Fatalf("no load notice:\n%s", errs)
	}
	if resumed[7] != direct[4] {
		t.Fatalf("after /load: %q, in the conversation itself: %q", resumed[7], direct[4])
	}
	var tr chat.Transcript
	b, _ := os.ReadFile(file)
	if err := json.Unmarshal(b, &tr); err != nil {
		t.Fatal(err)
	}
	if tr.Version != chat.TranscriptVersion || tr.Method != persona.MethodPPlug || len(tr.Messages) != 4 || tr.ModelName == "" {
		t.Fatalf("transcript %+v", tr)
	}
	if tr.Messages[0].Persona != persona.MethodPPlug || tr.Messages[2].Persona != persona.MethodNone || tr.Messages[1].Role != "assistant" {
		t.Fatalf("persona states %q %q", tr.Messages[0].Persona, tr.Messages[2].Persona)
	}
	// A transcript that is not one, and a missing file, are refused with
	// the chat going on.
	bad := writeFile(t, t.TempDir(), "bad.json", `{"messages": [{"role": "wizard", "content": "x"}]}`)
	_, errs = chatLines(t, []string{"/load " + bad, "/load " + filepath.Join(t.TempDir(), "none.json"), "/load", "Hello"}, "-n", "4")
	for _, want := range []string{`role "wizard"`, "no such file", "usage: /load FILE"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
}

// TestChatSetShowPersona: /set changes the sampling and the answer length
// at once, /show and /persona describe the chat.
func TestChatSetShowPersona(t *testing.T) {
	root, _ := testenv.RepoRoot()
	prof := filepath.Join(root, "examples", "profiles", "lily.json")
	lines, errs := chatLines(t, []string{"/persona", "Once upon a time", "/set n-predict 3", "/set temp 0.5", "/set", "/set top-k -2", "/set bogus 1",
		"/reset", "Once upon a time", "/show", "/set system You tell short stories.", "/show"}, "-n", "24", "--profile", prof)
	for _, want := range []string{
		"persona: on, method bm25, 8 history items of " + prof + ", 4 retrieved items per message",
		"n-predict = 3", "temp = 0.5", "temp 0.5  top-k 40", "/set top-k: -2 must not be negative", `unknown setting "bogus"`,
		"model:    llama (llama,", "settings: temp 0.5", `system:   "You tell short stories."`,
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	long, short := strings.Fields(lines[1]), strings.Fields(lines[8])
	if len(short) > 3 || len(long) <= 3 {
		t.Errorf("answers of %d and %d words; /set n-predict 3 should cut the second:\n%q\n%q", len(long), len(short), lines[1], lines[8])
	}
	// Without a profile /persona says there is none.
	_, errs = chatLines(t, []string{"/persona", "/persona on"}, "-n", "4")
	if strings.Count(errs, "no persona") != 1 || !strings.Contains(errs, "persona: none") {
		t.Errorf("stderr:\n%s", errs)
	}
}

// TestChatMultilineAndStops: messages over several lines (""" blocks and a
// trailing backslash) are one message, each input line keeps its output
// line, and --stop and --grammar shape the answers as in generate.
func TestChatMultilineAndStops(t *testing.T) {
	block, _ := chatLines(t, []string{`"""Once upon a time`, `there was"""`}, "-n", "12")
	cont, _ := chatLines(t, []string{`Once upon a time\`, `there was`}, "-n", "12")
	single, _ := chatLines(t, []string{`"""Once upon a time there was"""`}, "-n", "12")
	plainLine, _ := chatLines(t, []string{"Once upon a time there was"}, "-n", "12")
	single = append(single, plainLine[0])
	if block[0] != "" || cont[0] != "" || block[1] == "" || block[1] != cont[1] {
		t.Fatalf(`""" block %q, backslash %q: want one message answered on the last line`, block, cont)
	}
	if single[0] != single[1] || single[0] == "" {
		t.Fatalf(`a one-line """ block %q differs from the plain line %q`, single[0], single[1])
	}
	// --stop: the answer ends before the stop text.
	plain, _ := chatLines(t, []string{"Once upon a time"}, "-n", "24")
	words := strings.Fields(plain[0])
	if len(words) < 4 {
		t.Fatalf("answer too short to test --stop: %q", plain[0])
	}
	stop := " " + words[3]
	cut, _ := chatLines(t, []string{"Once upon a time"}, "-n", "24", "--stop", stop)
	if strings.Contains(" "+cut[0], stop) || !strings.HasPrefix(plain[0], cut[0]) {
		t.Fatalf("--stop %q: %q (unstopped %q)", stop, cut[0], plain[0])
	}
	// --grammar: the answer is one of the grammar's words.
	g, _ := chatLines(t, []string{"Once upon a time", "Did the dog run?"}, "-n", "8", "--grammar", `root ::= " yes" | " no"`)
	for _, a := range g {
		if a != "yes" && a != "no" {
			t.Fatalf("grammar-constrained answers %q", g)
		}
	}
}

// TestChatLongLine: a line over the line limit is skipped with its own
// output line; the chat goes on.
func TestChatLongLine(t *testing.T) {
	lines, errs := chatLines(t, []string{strings.Repeat("a", maxLine+10), "Once upon a time"}, "-n", "4")
	if lines[0] != "" || lines[1] == "" || !strings.Contains(errs, "longer than 16 MiB") {
		t.Fatalf("lines %q\n%s", lines, errs[:min(len(errs), 500)])
	}
}

// TestChatBadGrammar: a grammar llama.cpp cannot use is a usage error
// naming the rule and position; one that leads to a dead end stops that
// answer, not the chat (it used to abort the process).
func TestChatBadGrammar(t *testing.T) {
	model := testenv.Stories260K(t)
	code, _, errs := pplug(t, "hi\n", "chat", "-m", model, "-n", "4", "-t", "1", "--grammar", "root ::= [z-a]+")
	if code != 2 || !strings.Contains(errs, `--grammar: invalid grammar at line 1, column 11, rule "root": character range z-a is reversed`) {
		t.Fatalf("exit %d: %s", code, errs)
	}
	code, out, errs := pplug(t, "hi\nagain\n", "chat", "-m", model, "-n", "4", "-t", "1", "--temp", "0", "--grammar", `root ::= "O" "\x00"`)
	if code != 0 || out != "O\nO\n" || strings.Count(errs, "the grammar allows no token here") != 2 {
		t.Fatalf("exit %d, %q: %s", code, out, errs)
	}
}

// TestChatRememberBOM: a profile saved with a UTF-8 byte order mark grows
// with --remember (the append used to fail on the mark).
func TestChatRememberBOM(t *testing.T) {
	model := testenv.Stories260K(t)
	for _, name := range []string{"me.json", "me.jsonl"} {
		prof := filepath.Join(t.TempDir(), name)
		content := "\xef\xbb\xbf" + `{"id":"1","text":"I like cats."}` + "\n"
		if name == "me.json" {
			content = "\xef\xbb\xbf" + `[{"id":"1","text":"I like cats."}]`
		}
		os.WriteFile(prof, []byte(content), 0o644)
		code, _, errs := pplug(t, "I have a dog named Max.\n", "chat", "-m", model, "-n", "2", "-t", "1", "--profile", prof, "--remember")
		if b, _ := os.ReadFile(prof); code != 0 || !strings.Contains(string(b), "Max") || strings.Contains(errs, "could not remember") {
			t.Fatalf("%s: exit %d, profile %q:\n%s", name, code, b, errs)
		}
	}
}
