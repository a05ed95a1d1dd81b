package train

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/pplug/pplug/cgo"
	"github.com/pplug/pplug/internal/testenv"
	"github.com/pplug/pplug/llama/synth"
	"github.com/pplug/pplug/traingraph"
)

// archCase is one architecture of the training graph at a small shape,
// with what it exercises and how close its logits come to llama.cpp's.
type archCase struct {
	name  string
	spec  synth.Spec
	limit float64 // max abs logit difference allowed
}

// archCases cover every architecture family the graph builds, in small
// F32 shapes whose sequences (about 20 positions) outrun the sliding
// windows, so that the windowed layers mask.
func archCases() []archCase {
	small := func(arch string) synth.Spec {
		return synth.Spec{Arch: arch, NEmbd: 64, NLayer: 2, NHead: 4, NHeadKV: 2, NFF: 96, Type: cgo.TypeF32, Std: 0.05, Seed: 21}
	}
	llama3 := small("llama")
	llama3.RopeTheta, llama3.RopeFreqs = 500000, true // factors 1 to 32
	qwen3 := small("qwen3")
	qwen3.HeadDim = 32 // heads wider than n_embd / n_head, as in Qwen3-0.6B
	gemma2 := small("gemma2")
	gemma2.HeadDim, gemma2.SlidingWindow = 32, 5 // layer 0 slides, layer 1 is global
	gemma2.Tied = true                           // llama.cpp's gemma2 has no output.weight
	gemma3 := small("gemma3")
	gemma3.HeadDim, gemma3.SlidingWindow, gemma3.NLayer = 32, 5, 6 // layers 0-4 slide, 5 is global
	gemma3.RopeTheta = 1e6
	phi3 := small("phi3")
	phi3.RopeDim, phi3.NCtx, phi3.OrigCtx = 12, 4096, 512 // partial rope, LongRoPE (short factors)
	return []archCase{
		{"llama3-rope-freqs", llama3, 1e-4},
		{"qwen3", qwen3, 1e-4},
		// llama.cpp's CPU GELU looks its input up in an F16 table; the
		// graph computes the tanh form exactly
		{"gemma2", gemma2, 2e-3},
		{"gemma3", gemma3, 2e-3},
		{"phi3", phi3, 1e-4},
	}
}

// writeArch writes c's model into dir.
func writeArch(t *testing.T, dir string, c archCase) string {
	t.Helper()
	p := filepath.Join(dir, c.name+".gguf")
	if err := synth.Write(p, testenv.Phi3Vocab(t), c.spec, nil); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestArchsMatchLlamaCpp: for every architecture, the training graph's
// logits equal llama.cpp's on the same input, persona rows injected as
// embeddings (gemma: with llama.cpp's scaling of the input rows).
func TestArchsMatchLlamaCpp(t *testing.T) {
	dir := t.TempDir()
	for _, c := range archCases() {
		t.Run(c.name, func(t *testing.T) {
			worst := graphParity(t, writeArch(t, dir, c), 2)
			t.Logf("%s: logits, training graph vs llama.cpp: max abs difference %.3g", c.name, worst)
			if worst > c.limit {
				t.Fatalf("training graph logits differ from llama.cpp by %.3g (limit %.3g)", worst, c.limit)
			}
		})
	}
}

// TestArchsGradients: for every architecture, the backward pass agrees
// with central differences on the plug's parameters.
func TestArchsGradients(t *testing.T) {
	dir := t.TempDir()
	for _, c := range archCases() {
		t.Run(c.name, func(t *testing.T) { checkGradients(t, writeArch(t, dir, c), true) })
	}
}

// TestUnsupportedArchRefused: a model the graph does not build is refused
// from its metadata, naming the architectures it does.
func TestUnsupportedArchRefused(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bert.gguf")
	err := synth.Write(p, testenv.BertVocab(t), synth.Spec{Arch: "bert", NEmbd: 32, NLayer: 1, NHead: 2, NFF: 64, Type: cgo.TypeF32}, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = CheckModel(p)
	if err == nil || !strings.Contains(err.Error(), "not bert") || !strings.Contains(err.Error(), traingraph.Archs()) {
		t.Fatalf("CheckModel(bert) = %v, want a refusal naming %s", err, traingraph.Archs())
	}
	for _, a := range []string{"llama", "qwen2", "qwen3", "gemma2", "gemma3", "phi3"} {
		if !strings.Contains(traingraph.Archs(), a) {
			t.Errorf("supported architectures %q lack %s", traingraph.Archs(), a)
		}
	}
	if err := CheckModel(testenv.Stories260K(t)); err != nil {
		t.Fatalf("stories260K refused: %v", err)
	}
}
