package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pplug/pplug/eval/synthusers"
	"github.com/pplug/pplug/internal/testenv"
)

func TestTrainCommand(t *testing.T) {
	model := testenv.Stories260K(t)
	dir := t.TempDir()
	ds, err := synthusers.Generate(synthusers.Options{Users: 8, Items: 6, QuestionsPerUser: 2, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := synthusers.Write(dir, ds); err != nil {
		t.Fatal(err)
	}
	f := func(n string) string { return filepath.Join(dir, n) }
	out, report := f("plug.gguf"), f("report.json")
	code, _, errs := pplug(t, "", "train", "-m", model, "--questions", f("train_questions.json"), "--outputs", f("train_outputs.json"),
		"--dev-questions", f("dev_questions.json"), "--dev-outputs", f("dev_outputs.json"), "-o", out, "--epochs", "2",
		"--batch", "4", "--lr", "1e-3", "--augment", "1", "-t", "1", "--cache-dir", f("cache"), "--checkpoint-dir", f("ckpt"), "--report", report)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"epoch 1/2: train loss", "dev loss", "trained", "dev persona check", "own", "none"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	var rep map[string]any
	b, _ := os.ReadFile(report)
	if err := json.Unmarshal(b, &rep); err != nil || rep["dev_nll"] == nil || rep["train"] == nil {
		t.Fatalf("report: %v\n%s", err, b)
	}
	code, js, _ := pplug(t, "", "plug", "info", out, "--json")
	if code != 0 || !strings.Contains(js, `"trained": "true"`) || !strings.Contains(js, `"steps"`) {
		t.Fatalf("plug info after training: %s", js)
	}
	// The trained plug personalises generation.
	code, gen, errs := pplug(t, "", "generate", "-m", model, "-p", "Once upon a time", "-n", "16", "--temp", "0", "-t", "1",
		"--profile", f("dev_questions.json"), "--question-id", ds.Splits()[1].Questions[0].ID, "--task", "lamp7", "--plug", out, "--cache-dir", f("cache"))
	if code != 0 || strings.TrimSpace(gen) == "" {
		t.Fatalf("generate with the trained plug: %d %q %s", code, gen, errs)
	}
	// Resume from the first checkpoint.
	code, _, errs = pplug(t, "", "train", "-m", model, "--questions", f("train_questions.json"), "--outputs", f("train_outputs.json"),
		"-o", f("resumed.gguf"), "--epochs", "2", "--batch", "4", "--lr", "1e-3", "--augment", "1", "-t", "1", "--cache-dir", f("cache"),
		"--resume", f("ckpt/epoch-1.plug.gguf"))
	if code != 0 {
		t.Fatalf("resume: exit %d: %s", code, errs)
	}
	// Bad input.
	for _, args := range [][]string{
		{"train", "-m", model, "--questions", f("train_questions.json"), "-o", f("x.gguf")},                                                      // no outputs
		{"train", "-m", model, "--questions", f("nope.json"), "--outputs", f("train_outputs.json"), "-o", f("x.gguf")},                           // missing file
		{"train", "-m", model, "--questions", f("train_questions.json"), "--outputs", f("dev_outputs.json"), "-o", f("x.gguf")},                  // golds of other ids
		{"train", "-m", testenv.BertVocab(t), "--questions", f("train_questions.json"), "--outputs", f("train_outputs.json"), "-o", f("x.gguf")}, // not a decoder
	} {
		if code, _, errs := pplug(t, "", args...); code == 0 {
			t.Errorf("accepted %v", args)
		} else if strings.Contains(errs, "panic") {
			t.Errorf("%v: %s", args, errs)
		}
	}
}
