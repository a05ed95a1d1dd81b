package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/pplug/pplug/internal/testenv"
)

// TestMissingInputSaysHowToGetIt: every kind of input file a first run
// may lack (model, encoder, plug, checkpoint, LaMP questions and outputs,
// synth vocabulary) is reported by name with the way to get one, with a
// non-zero exit.
func TestMissingInputSaysHowToGetIt(t *testing.T) {
	model := testenv.Stories260K(t)
	dir := t.TempDir()
	gone := func(name string) string { return filepath.Join(dir, name) }
	data, _ := evalData(t)
	q, o := filepath.Join(data, "dev_questions.json"), filepath.Join(data, "dev_outputs.json")
	prof := filepath.Join("..", "..", "examples", "profiles", "lily.json")
	cases := []struct {
		name string
		args []string
		file string // the missing file
		how  string // a piece of the advice
	}{
		{"model", []string{"generate", "-m", gone("m.gguf"), "-p", "x"}, gone("m.gguf"), "`pplug synth`"},
		{"plug", []string{"generate", "-m", model, "-p", "x", "--profile", prof, "--plug", gone("p.gguf")}, gone("p.gguf"), "`make demo`"},
		{"encoder", []string{"profile", "encode", "--profile", prof, "--encoder", gone("e.gguf")}, gone("e.gguf"), "GGUF model"},
		{"eval plug", []string{"eval", "nll", "--task", "LaMP_7", "--questions", q, "--golds", o, "-m", model, "--plug", gone("p.gguf")}, gone("p.gguf"), "`pplug train`"},
		{"questions", []string{"train", "-m", model, "--questions", gone("q.json"), "--outputs", o, "-o", gone("out.gguf")}, gone("q.json"), "`pplug eval synth-users"},
		{"outputs", []string{"train", "-m", model, "--questions", q, "--outputs", gone("o.json"), "-o", gone("out.gguf")}, gone("o.json"), "`pplug eval synth-users"},
		{"golds", []string{"eval", "--questions", q, "--golds", gone("o.json"), "-m", model}, gone("o.json"), "`pplug eval synth-users"},
		{"resume", []string{"train", "-m", model, "--questions", q, "--outputs", o, "-o", gone("out.gguf"), "--resume", gone("c.gguf")}, gone("c.gguf"), "`pplug train`"},
		{"vocab", []string{"synth", "--preset", "qwen2-0.5b", "--vocab", gone("v.gguf"), "-o", gone("s.gguf")}, gone("v.gguf"), "llama-vocab"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, errs := pplug(t, "", c.args...)
			if code == 0 || !strings.Contains(errs, c.file) || !strings.Contains(errs, c.how) {
				t.Errorf("exit %d, want the file %s and %q in:\n%s", code, c.file, c.how, errs)
			}
		})
	}
}
