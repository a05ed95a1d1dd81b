package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/pplug/pplug/internal/testenv"
)

// Every history-encoder family runs end to end from the command line: synth
// writes it, plug init makes a plug for stories260K with it, and generate
// personalises with that plug (the encoder embeds the profile and the query).
func TestEncoderFamiliesEndToEnd(t *testing.T) {
	root, _ := testenv.RepoRoot()
	prof := filepath.Join(root, "examples", "profiles", "lily.json")
	model := testenv.Stories260K(t)
	dir := t.TempDir()
	small := []string{"--type", "f32", "--n-embd", "64", "--n-layer", "2", "--n-head", "4", "--n-ff", "128", "--n-ctx", "256", "--n-vocab", "0"}
	cases := []struct {
		name, pool string
		synth      []string
	}{
		{"nomic-bert", "mean", append([]string{"--arch", "nomic-bert", "--pooling", "mean", "--vocab", testenv.BertVocab(t)}, small...)},
		{"qwen2-last", "last", append([]string{"--arch", "qwen2", "--pooling", "last", "--n-head-kv", "2", "--vocab", testenv.Phi3Vocab(t)}, small...)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			enc := filepath.Join(dir, c.name+".gguf")
			if code, _, errs := pplug(t, "", append([]string{"synth", "-o", enc}, c.synth...)...); code != 0 {
				t.Fatalf("synth: exit %d: %s", code, errs)
			}
			code, js, errs := pplug(t, "", "info", "-m", enc, "--json")
			if code != 0 || !strings.Contains(js, `"architecture": "`+c.name[:strings.IndexByte(c.name+"-", '-')]) {
				t.Fatalf("info: exit %d %s %s", code, js, errs)
			}
			plug := filepath.Join(dir, c.name+".plug.gguf")
			if code, _, errs := pplug(t, "", "plug", "init", "-m", model, "--encoder", enc, "-o", plug, "-t", "1"); code != 0 {
				t.Fatalf("plug init: exit %d: %s", code, errs)
			}
			code, out, errs := pplug(t, "", "generate", "-v", "-m", model, "--plug", plug, "--encoder", enc, "--profile", prof,
				"-p", "Once upon a time", "-n", "8", "--temp", "0", "-t", "1", "--cache-dir", t.TempDir())
			if code != 0 || strings.TrimSpace(out) == "" {
				t.Fatalf("generate: exit %d, %q: %s", code, out, errs)
			}
			if want := `msg="history encoder" model=` + enc + ` arch=` + c.name[:strings.IndexByte(c.name+"-", '-')]; !strings.Contains(errs, want) || !strings.Contains(errs, "pooling="+c.pool) {
				t.Fatalf("-v does not say the encoder %q pools with %s:\n%s", want, c.pool, errs)
			}
			if strings.Contains(errs, "another encoder") {
				t.Fatalf("the plug's encoder was not recognised:\n%s", errs)
			}
		})
	}
	// A pooling synth cannot write is a usage error.
	bad := append([]string{"synth", "-o", filepath.Join(dir, "bad.gguf"), "--arch", "qwen2", "--pooling", "rank", "--vocab", testenv.Phi3Vocab(t)}, small...)
	if code, _, errs := pplug(t, "", bad...); code != 2 || !strings.Contains(errs, "--pooling") {
		t.Fatalf("--pooling rank: exit %d: %s", code, errs)
	}
}
