package synth_test

import (
	"context"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pplug/pplug/cgo"
	"github.com/pplug/pplug/internal/testenv"
	"github.com/pplug/pplug/llama"
	"github.com/pplug/pplug/llama/synth"
)

// TestDecoderPresetsRunInLlamaCpp: each new preset, cut to one layer and
// the vocabulary file's size (its heads, head width, rope dimensions,
// windows and fused tensors as in the real model), loads in llama.cpp as
// its architecture and decodes a prompt to finite logits.
func TestDecoderPresetsRunInLlamaCpp(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"llama3.2-1b", "qwen3-0.6b", "gemma2-2b", "gemma3-1b", "phi4-mini"} {
		t.Run(name, func(t *testing.T) {
			s := synth.Presets[name]
			s.NLayer, s.NVocab, s.Type = 1, 0, cgo.TypeQ4_0
			switch s.Arch {
			case "gemma2":
				s.NLayer = 2 // a sliding layer and a global one
			case "gemma3":
				s.NLayer = 6 // five sliding layers and a global one
			}
			p := filepath.Join(dir, name+".gguf")
			if err := synth.Write(p, testenv.Phi3Vocab(t), s, nil); err != nil {
				t.Fatal(err)
			}
			m, err := llama.LoadModel(context.Background(), p, llama.ModelOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if a := m.Info().Architecture; a != s.Arch {
				t.Fatalf("loaded as %s, want %s", a, s.Arch)
			}
			c, err := m.NewContext(llama.ContextOptions{NCtx: 64, Threads: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			toks, err := m.Tokenize("Once upon a time there was a", true, false)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			_, err = c.DecodeInputs(context.Background(), []llama.Input{llama.TokenInput(toks...)}, llama.DecodeOptions{Output: llama.OutputAll,
				OnOutput: func(_ llama.Pos, l []float32) error {
					for _, v := range l {
						if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
							t.Fatalf("logit %v", v)
						}
					}
					n++
					return nil
				}})
			if err != nil || n != len(toks) {
				t.Fatalf("decoded %d of %d positions: %v", n, len(toks), err)
			}
		})
	}
}

// TestDecoderSpecChecks: fields a family does not have are refused, as
// llama.cpp's loader would refuse or ignore them.
func TestDecoderSpecChecks(t *testing.T) {
	base := synth.Spec{Arch: "llama", NEmbd: 64, NLayer: 1, NHead: 4, NFF: 96}
	for _, c := range []struct {
		mod  func(*synth.Spec)
		want string
	}{
		{func(s *synth.Spec) { s.HeadDim = 32 }, "head_dim"},
		{func(s *synth.Spec) { s.Arch, s.RopeDim = "qwen3", 8 }, "only phi3"},
		{func(s *synth.Spec) { s.Arch, s.RopeFreqs = "qwen3", true }, "rope_freqs"},
		{func(s *synth.Spec) { s.SlidingWindow = 4 }, "sliding window"},
		{func(s *synth.Spec) { s.Arch = "gemma2" }, "tie"},
		{func(s *synth.Spec) { s.Arch, s.Tied = "gemma2", true }, "global layer"},
		{func(s *synth.Spec) { s.Arch, s.SlidingWindow, s.NLayer = "gemma3", 8, 5 }, "at least 6"},
		{func(s *synth.Spec) { s.Arch, s.OrigCtx, s.NCtx = "phi3", 8192, 4096 }, "original context"},
		{func(s *synth.Spec) { s.Arch = "gpt2" }, "qwen3, gemma2, gemma3, phi3"},
	} {
		s := base
		c.mod(&s)
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one about %q", s, err, c.want)
		}
	}
}
