package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pplug/pplug/cgo"
	"github.com/pplug/pplug/eval/synthusers"
	"github.com/pplug/pplug/internal/testenv"
	"github.com/pplug/pplug/llama/synth"
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
	// --retrieve-k and --eos-bias: the plug records its retrieval depth and
	// learned bias, and eval's pplug+bm25 uses that depth.
	rk := f("rk.gguf")
	code, _, errs = pplug(t, "", "train", "-m", model, "--questions", f("train_questions.json"), "--outputs", f("train_outputs.json"),
		"-o", rk, "--epochs", "1", "--batch", "4", "--lr", "1e-2", "--augment", "-1", "-t", "1", "--cache-dir", f("cache"),
		"--retrieve-k", "2", "--eos-bias")
	if code != 0 {
		t.Fatalf("train --retrieve-k 2 --eos-bias: exit %d: %s", code, errs)
	}
	if !strings.Contains(errs, "training on 24 examples") { // 12 questions in two layouts
		t.Errorf("--retrieve-k 2 should train every question in two layouts:\n%s", errs)
	}
	code, js, _ = pplug(t, "", "plug", "info", rk, "--json")
	var info map[string]any
	if code != 0 || json.Unmarshal([]byte(js), &info) != nil || info["retrieve_k"] != 2.0 || !(info["eos_bias"].(float64) > 0) {
		t.Fatalf("plug info after --retrieve-k 2 --eos-bias: %s", js)
	}
	evalOut := f("eval-rk")
	if code, _, errs := pplug(t, "", "eval", "--task", "LaMP_7", "--questions", f("dev_questions.json"), "--golds", f("dev_outputs.json"),
		"-m", model, "--plug", rk, "--methods", "pplug+bm25", "--limit", "2", "-n", "4", "-t", "1", "--out", evalOut, "--cache-dir", f("cache")); code != 0 {
		t.Fatalf("eval: %s", errs)
	}
	if b, _ := os.ReadFile(filepath.Join(evalOut, "results.json")); !strings.Contains(string(b), `"plug_k": 2`) {
		t.Errorf("eval's pplug+bm25 does not use the plug's retrieve_k:\n%s", b)
	}
	for _, bad := range [][]string{{"--retrieve-k", "-1"}, {"--retrieve-only"}} {
		args := append([]string{"train", "-m", model, "--questions", f("train_questions.json"), "--outputs", f("train_outputs.json"), "-o", f("y.gguf")}, bad...)
		if code, _, _ := pplug(t, "", args...); code != 2 {
			t.Errorf("%v: exit %d, want a usage error", bad, code)
		}
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

// TestTrainRefusesBadFlagsBeforeWork: every numeric flag of train out of
// range is a usage error (exit 2) naming the flag, before the model loads;
// documented "off" values stay valid.
func TestTrainRefusesBadFlagsBeforeWork(t *testing.T) {
	model := testenv.Stories260K(t)
	dir := t.TempDir()
	f := func(n string) string { return filepath.Join(dir, n) }
	base := []string{"train", "-m", model, "--questions", f("q.json"), "--outputs", f("o.json"), "-o", f("x.gguf")}
	for _, c := range []struct{ flag, value string }{
		{"--epochs", "0"}, {"--epochs", "-1"}, {"--epochs", "9223372036854775807"},
		{"--batch", "0"}, {"--batch", "-4"}, {"--batch", "65537"},
		{"--lr", "-1"}, {"--lr", "0"}, {"--lr", "NaN"}, {"--lr", "Inf"},
		{"--weight-decay", "NaN"}, {"--weight-decay", "1e300"},
		{"--warmup", "1.5"}, {"--warmup", "NaN"},
		{"--max-grad-norm", "0"}, {"--max-grad-norm", "Inf"},
		{"--augment", "1000000000"},
		{"--max-items", "0"}, {"--max-items", "-1"},
		{"--max-input", "0"}, {"--max-target", "-5"},
		{"--limit", "-1"},
		{"--threads", "-1"}, {"--threads", "100000"},
		{"--encoder-max-tokens", "0"},
		{"--n-instruction", "0"}, {"--n-instruction", "-1"}, {"--n-instruction", "100000000"},
		{"--tau", "0"}, {"--tau", "-1"}, {"--tau", "1e300"}, {"--tau", "1e-300"},
	} {
		// The data files do not exist: a run that got past the flags
		// would fail on them with exit 1, not 2.
		code, _, errs := pplug(t, "", append(base, c.flag, c.value)...)
		if code != 2 || !strings.Contains(errs, c.flag) || strings.Contains(errs, "panic") {
			t.Errorf("%s %s: exit %d, want 2 and a message naming the flag: %s", c.flag, c.value, code, errs)
		}
	}
	// Documented off values and large but meaningful ones pass the checks
	// (and fail later, on the missing data, with exit 1).
	for _, c := range [][]string{
		{"--weight-decay", "-1"}, {"--weight-decay", "0"}, {"--warmup", "-1"}, {"--warmup", "0"},
		{"--max-grad-norm", "-1"}, {"--augment", "-1"}, {"--augment", "0"}, {"--batch", "65536"},
		{"--max-input", "1000000000"}, {"--limit", "0"}, {"--seed", "18446744073709551615"},
	} {
		code, _, errs := pplug(t, "", append(base, c...)...)
		if code != 1 || !strings.Contains(errs, "q.json") && !strings.Contains(errs, "o.json") {
			t.Errorf("%v: exit %d, want 1 on the missing data: %s", c, code, errs)
		}
	}
}

// TestTrainChecksOutputPathsFirst: a -o in a missing folder, a -o that is
// a folder, a --report or --checkpoint-dir that cannot be written fail
// before training, naming the path.
func TestTrainChecksOutputPathsFirst(t *testing.T) {
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
	os.WriteFile(f("a-file"), []byte("x"), 0o644)
	base := []string{"train", "-m", model, "--questions", f("train_questions.json"), "--outputs", f("train_outputs.json"),
		"--epochs", "50", "-t", "1", "--cache-dir", f("cache")}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-o", f("missing/x.gguf")}, f("missing")},
		{[]string{"-o", dir}, dir},
		{[]string{"-o", f("x.gguf"), "--report", f("missing/r.json")}, f("missing")},
		{[]string{"-o", f("x.gguf"), "--report", dir}, dir},
		{[]string{"-o", f("x.gguf"), "--checkpoint-dir", f("a-file/ckpt")}, f("a-file")},
	} {
		start := time.Now()
		code, _, errs := pplug(t, "", append(base, c.args...)...)
		if code == 0 || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, want an error naming %s: %s", c.args, code, c.want, errs)
		}
		if strings.Contains(errs, "training on") || time.Since(start) > 5*time.Second {
			t.Errorf("%v: the bad path was noticed after %s, not before training: %s", c.args, time.Since(start), errs)
		}
	}
}

// TestTrainRefusesUnsupportedArch: train and plug init refuse a model
// whose architecture the training graph does not build before any work
// (the missing data files are not read, no plug is written), naming the
// architectures it does build.
func TestTrainRefusesUnsupportedArch(t *testing.T) {
	dir := t.TempDir()
	f := func(n string) string { return filepath.Join(dir, n) }
	bert := f("bert.gguf")
	err := synth.Write(bert, testenv.BertVocab(t), synth.Spec{Arch: "bert", NEmbd: 32, NLayer: 1, NHead: 2, NFF: 64, Type: cgo.TypeF32}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"train", "-m", bert, "--questions", f("q.json"), "--outputs", f("o.json"), "-o", f("x.gguf")},
		{"plug", "init", "-m", bert, "-o", f("x.gguf")},
	} {
		code, _, errs := pplug(t, "", args...)
		if code != 1 || !strings.Contains(errs, "not bert") || !strings.Contains(errs, "qwen3, gemma2, gemma3, phi3") ||
			strings.Contains(errs, "q.json") || strings.Contains(errs, "panic") {
			t.Errorf("%v: exit %d, want 1 and the supported architectures: %s", args[:2], code, errs)
		}
		if _, err := os.Stat(f("x.gguf")); err == nil {
			t.Errorf("%v wrote a plug", args[:2])
		}
	}
}
