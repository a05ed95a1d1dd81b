package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/pplug/pplug/llama/synth"
)

// BenchModel returns a shape-realistic random-weight model of a synth
// preset and weight type ("f16", "q8_0", ...), with the real vocabulary of
// its family (BGE for bert, Phi-3 otherwise). It is written once into
// $PPLUG_BENCH_DIR (default: the temp dir) and reused by later runs.
func BenchModel(tb testing.TB, preset, typ string) string {
	tb.Helper()
	dir := os.Getenv("PPLUG_BENCH_DIR")
	if dir == "" {
		dir = os.TempDir()
	}
	path := filepath.Join(dir, fmt.Sprintf("pplug-bench-%s-%s.gguf", preset, typ))
	if _, err := os.Stat(path); err == nil {
		return path
	}
	spec, ok := synth.Presets[preset]
	if !ok {
		tb.Fatalf("no synth preset %q", preset)
	}
	t, err := synth.ParseType(typ)
	if err != nil {
		tb.Fatal(err)
	}
	spec.Type, spec.Name = t, "bench-"+preset
	vocab := Phi3Vocab(tb)
	if spec.Arch == "bert" {
		vocab = BertVocab(tb)
	}
	if err := synth.Write(path, vocab, spec, nil); err != nil {
		tb.Fatal(err)
	}
	return path
}
