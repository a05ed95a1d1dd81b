package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pplug/pplug/internal/testenv"
)

// pplug runs the CLI in-process and returns its exit status and output.
func pplug(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append([]string{"pplug"}, args...), strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestGenerateGreedyStories(t *testing.T) {
	model := testenv.Stories260K(t)
	code, out, errs := pplug(t, "", "generate", "-m", model, "-p", "Once upon a time", "-n", "24", "--temp", "0", "-t", "1", "--timings")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.HasPrefix(out, ", there was a little girl named Lily.") {
		t.Fatalf("output %q", out)
	}
	for _, want := range []string{"prompt:", "generation:", "tokens/s", "time to first token"} {
		if !strings.Contains(errs, want) {
			t.Errorf("--timings output lacks %q:\n%s", want, errs)
		}
	}
	// The prompt from stdin and from a file gives the same text.
	code, out2, errs := pplug(t, "Once upon a time", "generate", "-m", model, "-p", "-", "-n", "24", "--temp", "0", "-t", "1")
	if code != 0 || out2 != out {
		t.Fatalf("stdin prompt: exit %d, %q (%s)", code, out2, errs)
	}
	f := filepath.Join(t.TempDir(), "prompt.txt")
	os.WriteFile(f, []byte("Once upon a time"), 0o644)
	code, out3, errs := pplug(t, "", "generate", "-m", model, "-f", f, "-n", "24", "--temp", "0", "-t", "1")
	if code != 0 || out3 != out {
		t.Fatalf("file prompt: exit %d, %q (%s)", code, out3, errs)
	}
	// A seeded sampled run is reproducible.
	_, a, _ := pplug(t, "", "generate", "-m", model, "-p", "Once", "-n", "24", "--seed", "7", "-t", "1")
	_, b, _ := pplug(t, "", "generate", "-m", model, "-p", "Once", "-n", "24", "--seed", "7", "-t", "1")
	if a != b {
		t.Fatalf("same seed, different text:\n%q\n%q", a, b)
	}
}

func TestBadInputsExitNonZero(t *testing.T) {
	dir := t.TempDir()
	model := testenv.Stories260K(t)
	good, _ := os.ReadFile(model)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o644)
		return p
	}
	corrupt := append([]byte(nil), good...)
	copy(corrupt[24:], bytes.Repeat([]byte{0xee}, 300))
	long := strings.Repeat("Once upon a time there was a cat. ", 400)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no model", []string{"generate", "-p", "x"}, "no model given"},
		{"missing", []string{"generate", "-m", filepath.Join(dir, "none.gguf"), "-p", "x"}, "does not exist"},
		{"directory", []string{"generate", "-m", dir, "-p", "x"}, "is a directory"},
		{"empty", []string{"generate", "-m", write("e.gguf", nil), "-p", "x"}, "empty"},
		{"not gguf", []string{"generate", "-m", write("t.gguf", []byte("#!/bin/sh\necho hi\n")), "-p", "x"}, "not a GGUF file"},
		{"truncated", []string{"generate", "-m", write("tr.gguf", good[:len(good)*3/4]), "-p", "x"}, "truncated"},
		{"corrupt header", []string{"generate", "-m", write("c.gguf", corrupt), "-p", "x"}, "header"},
		{"invalid utf-8", []string{"generate", "-m", model, "-p", "ab\xffcd"}, "not valid UTF-8"},
		{"prompt too long", []string{"generate", "-m", model, "-p", long, "-c", "256"}, "context window"},
		{"bad temperature", []string{"generate", "-m", model, "-p", "x", "--top-p", "2"}, "top-p"},
		{"both prompt sources", []string{"generate", "-m", model, "-p", "x", "-f", "y"}, "not both"},
		{"unknown flag", []string{"generate", "--frobnicate"}, "frobnicate"},
		{"info missing", []string{"info", "-m", filepath.Join(dir, "none.gguf")}, "does not exist"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := pplug(t, "", tc.args...)
			if code == 0 {
				t.Fatalf("exit 0 for %v", tc.args)
			}
			if !strings.Contains(errs, tc.want) {
				t.Fatalf("stderr %q lacks %q", errs, tc.want)
			}
		})
	}
}

func TestInfoAndVersion(t *testing.T) {
	code, out, errs := pplug(t, "", "info", "-m", testenv.Stories260K(t), "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var info map[string]any
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("info --json: %v\n%s", err, out)
	}
	for k, want := range map[string]any{"architecture": "llama", "n_embd": 64.0, "n_vocab": 512.0, "n_layer": 5.0, "n_ctx_train": 2048.0} {
		if info[k] != want {
			t.Errorf("%s = %v, want %v", k, info[k], want)
		}
	}
	code, out, _ = pplug(t, "", "info", "-m", testenv.Stories260K(t))
	if code != 0 || !strings.Contains(out, "n_embd") || !strings.Contains(out, "292800") {
		t.Fatalf("info table: %s", out)
	}
	code, out, _ = pplug(t, "", "version")
	if code != 0 || !strings.Contains(out, "llama.cpp ec98e2002") {
		t.Fatalf("version: %s", out)
	}
}

func TestSynthWritesLoadableModels(t *testing.T) {
	dir := t.TempDir()
	vocab := testenv.Phi3Vocab(t)
	for _, typ := range []string{"f32", "f16", "q8_0", "q4_0"} {
		for _, arch := range []string{"llama", "qwen2"} {
			out := filepath.Join(dir, arch+"-"+typ+".gguf")
			code, _, errs := pplug(t, "", "synth", "--arch", arch, "--type", typ, "--n-embd", "128", "--n-layer", "2",
				"--n-head", "4", "--n-head-kv", "2", "--n-ff", "256", "--n-vocab", "32100", "--vocab", vocab, "-o", out)
			if code != 0 {
				t.Fatalf("synth %s %s: %s", arch, typ, errs)
			}
			code, gen, errs := pplug(t, "", "generate", "-m", out, "-p", "Hello there", "-n", "8", "--temp", "0", "-t", "1", "--ignore-eos")
			if code != 0 {
				t.Fatalf("generate with %s %s: %s", arch, typ, errs)
			}
			if gen == "" {
				t.Fatalf("%s %s generated nothing", arch, typ)
			}
			code, js, _ := pplug(t, "", "info", "-m", out, "--json")
			var info map[string]any
			if code != 0 || json.Unmarshal([]byte(js), &info) != nil || info["architecture"] != arch || info["n_vocab"] != 32100.0 {
				t.Fatalf("info of %s %s: %s", arch, typ, js)
			}
		}
	}
	// A bert encoder with the real BGE vocabulary.
	out := filepath.Join(dir, "bert.gguf")
	code, _, errs := pplug(t, "", "synth", "--arch", "bert", "--type", "f16", "--n-embd", "64", "--n-layer", "2",
		"--n-head", "4", "--n-ff", "128", "--n-ctx", "128", "--n-vocab", "0", "--vocab", testenv.BertVocab(t), "-o", out)
	if code != 0 {
		t.Fatalf("synth bert: %s", errs)
	}
	code, js, errs := pplug(t, "", "info", "-m", out, "--json")
	if code != 0 || !strings.Contains(js, `"architecture": "bert"`) {
		t.Fatalf("info of bert: %s %s", js, errs)
	}
	// Bad specifications are refused.
	for _, args := range [][]string{
		{"--arch", "llama", "--n-embd", "100", "--n-layer", "1", "--n-head", "3", "--n-ff", "64"},
		{"--arch", "gpt5", "--n-embd", "64", "--n-layer", "1", "--n-head", "4", "--n-ff", "64"},
		{"--preset", "nope"},
		{"--arch", "llama", "--type", "q4_0", "--n-embd", "48", "--n-layer", "1", "--n-head", "4", "--n-ff", "64"},
	} {
		args = append([]string{"synth", "--vocab", vocab, "-o", filepath.Join(dir, "bad.gguf")}, args...)
		if code, _, _ := pplug(t, "", args...); code == 0 {
			t.Errorf("accepted %v", args)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "bad.gguf")); err == nil {
		t.Error("a refused synth left a file behind")
	}
}
