package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
	answers := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(answers) != 5 {
		t.Fatalf("%d answer lines for 5 messages:\n%s\nstderr:\n%s", len(answers), out, errs)
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
