package synth

import (
	"errors"
	"fmt"
	"math"

	"github.com/pplug/pplug/cgo"
)

// decoderPresets are the shapes of Llama-3.2-1B with its rope_freqs,
// Qwen3-0.6B, Gemma-2-2B, Gemma-3-1B and Phi-4-mini; init adds them to
// Presets.
var decoderPresets = map[string]Spec{
	"llama3.2-1b": {Arch: "llama", NEmbd: 2048, NLayer: 16, NHead: 32, NHeadKV: 8, NFF: 8192, NCtx: 131072, NVocab: 128256, RopeTheta: 500000, NormEps: 1e-5, Tied: true, RopeFreqs: true},
	"qwen3-0.6b":  {Arch: "qwen3", NEmbd: 1024, NLayer: 28, NHead: 16, NHeadKV: 8, HeadDim: 128, NFF: 3072, NCtx: 40960, NVocab: 151936, RopeTheta: 1e6, NormEps: 1e-6, Tied: true},
	"gemma2-2b":   {Arch: "gemma2", NEmbd: 2304, NLayer: 26, NHead: 8, NHeadKV: 4, HeadDim: 256, NFF: 9216, NCtx: 8192, NVocab: 256000, RopeTheta: 10000, NormEps: 1e-6, Tied: true, SlidingWindow: 4096},
	"gemma3-1b":   {Arch: "gemma3", NEmbd: 1152, NLayer: 26, NHead: 4, NHeadKV: 1, HeadDim: 256, NFF: 6912, NCtx: 32768, NVocab: 262144, RopeTheta: 1e6, NormEps: 1e-6, Tied: true, SlidingWindow: 512},
	"phi4-mini":   {Arch: "phi3", NEmbd: 3072, NLayer: 32, NHead: 24, NHeadKV: 8, NFF: 8192, NCtx: 131072, NVocab: 200064, RopeTheta: 10000, NormEps: 1e-5, Tied: true, RopeDim: 96, OrigCtx: 4096},
}

func init() {
	for name, s := range decoderPresets {
		Presets[name] = s
	}
}

// Archs are the architectures Write produces.
var Archs = []string{"llama", "qwen2", "qwen3", "gemma2", "gemma3", "phi3", "bert", "nomic-bert"}

func knownArch(a string) bool {
	for _, k := range Archs {
		if k == a {
			return true
		}
	}
	return false
}

// headDim is the width of one attention head.
func (s *Spec) headDim() int {
	if s.HeadDim > 0 {
		return s.HeadDim
	}
	return s.NEmbd / max(1, s.NHead)
}

// ropeDim is how many values of each head the rope rotates.
func (s *Spec) ropeDim() int {
	if s.RopeDim > 0 {
		return s.RopeDim
	}
	return s.headDim()
}

// fillDecoder checks the fields of the newer decoder families against the
// architecture: what llama.cpp's loader would refuse is refused here.
func (s *Spec) fillDecoder() error {
	plain := s.NEmbd / max(1, s.NHead)
	switch {
	case s.HeadDim < 0 || s.RopeDim < 0 || s.SlidingWindow < 0 || s.OrigCtx < 0:
		return errors.New("head_dim, rope_dim, sliding_window and orig_ctx must not be negative")
	case s.HeadDim > MaxWidth:
		return fmt.Errorf("head_dim %d is beyond %d", s.HeadDim, MaxWidth)
	case s.HeadDim != 0 && s.HeadDim != plain && s.Arch != "qwen3" && s.Arch != "gemma2" && s.Arch != "gemma3":
		return fmt.Errorf("%s models have head_dim = n_embd / n_head = %d (qwen3 and gemma may differ)", s.Arch, plain)
	case s.ropeDim() > s.headDim() || s.ropeDim()%2 != 0:
		return fmt.Errorf("rope_dim %d must be even and at most the head width %d", s.ropeDim(), s.headDim())
	case s.RopeDim != 0 && s.RopeDim != s.headDim() && s.Arch != "phi3":
		return fmt.Errorf("only phi3 models rope part of each head (rope_dim %d, head width %d)", s.RopeDim, s.headDim())
	case s.RopeFreqs && s.Arch != "llama":
		return fmt.Errorf("rope_freqs (llama3 rope scaling) is for llama models, not %s", s.Arch)
	case s.SlidingWindow != 0 && s.Arch != "gemma2" && s.Arch != "gemma3":
		return fmt.Errorf("a sliding window is written for gemma models only, not %s", s.Arch)
	case s.OrigCtx != 0 && s.Arch != "phi3":
		return fmt.Errorf("LongRoPE's original context is for phi3 models only, not %s", s.Arch)
	case s.Arch == "gemma2" && !s.Tied:
		return errors.New("gemma2 models tie their output layer to token_embd (llama.cpp loads no output.weight for them)")
	case s.Arch == "gemma2" && s.NLayer < 2, s.Arch == "gemma3" && s.SlidingWindow > 0 && s.NLayer < 6:
		// llama.cpp aborts decoding a model whose layers all slide: its
		// cache for the global layers is then empty
		return fmt.Errorf("%s needs a global layer: give at least %d layers (every %s layer slides)", s.Arch,
			map[string]int{"gemma2": 2, "gemma3": 6}[s.Arch], map[string]string{"gemma2": "even", "gemma3": "layer but every sixth"}[s.Arch])
	case s.OrigCtx > s.NCtx:
		return fmt.Errorf("LongRoPE's original context %d is beyond n_ctx %d", s.OrigCtx, s.NCtx)
	}
	return nil
}

type weightFn func(name string, shape ...int64) tensor
type vecFn func(name string, n int64, init func(*rng, []float32)) tensor

// decoderTensors are the layers of qwen3, gemma2/3 and phi3 models, with
// the names and shapes llama.cpp's loader expects (llama-arch.cpp).
func (s *Spec) decoderTensors(w weightFn, vec vecFn) []tensor {
	ones := func(_ *rng, row []float32) {
		for i := range row {
			row[i] = 1
		}
	}
	// norms that are not all ones, so a test notices one that is skipped
	nearOne := func(r *rng, row []float32) {
		r.fill(row, 0.1)
		for i := range row {
			row[i]++
		}
	}
	e, f := int64(s.NEmbd), int64(s.NFF)
	hd := int64(s.headDim())
	q, kv := hd*int64(s.NHead), hd*int64(s.NHeadKV)
	ts := s.ropeTensors()
	for i := range s.NLayer {
		p := fmt.Sprintf("blk.%d.", i)
		ts = append(ts, vec(p+"attn_norm.weight", e, ones))
		if s.Arch == "phi3" {
			ts = append(ts, w(p+"attn_qkv.weight", e, q+2*kv))
		} else {
			ts = append(ts, w(p+"attn_q.weight", e, q), w(p+"attn_k.weight", e, kv), w(p+"attn_v.weight", e, kv))
		}
		if s.Arch == "qwen3" || s.Arch == "gemma3" {
			ts = append(ts, vec(p+"attn_q_norm.weight", hd, nearOne), vec(p+"attn_k_norm.weight", hd, nearOne))
		}
		ts = append(ts, w(p+"attn_output.weight", q, e), vec(p+"ffn_norm.weight", e, ones))
		if s.Arch == "gemma2" || s.Arch == "gemma3" {
			ts = append(ts, vec(p+"post_attention_norm.weight", e, nearOne), vec(p+"post_ffw_norm.weight", e, nearOne))
		}
		if s.Arch == "phi3" {
			ts = append(ts, w(p+"ffn_up.weight", e, 2*f))
		} else {
			ts = append(ts, w(p+"ffn_gate.weight", e, f), w(p+"ffn_up.weight", e, f))
		}
		ts = append(ts, w(p+"ffn_down.weight", f, e))
	}
	return ts
}

// ropeTensors are the rope frequency factors: Llama 3.1+'s rope_freqs
// and phi3's LongRoPE short and long factors.
func (s *Spec) ropeTensors() []tensor {
	n := int64(s.ropeDim() / 2)
	fixed := func(v []float32) func(*rng, []float32) {
		return func(_ *rng, row []float32) { copy(row, v) }
	}
	var ts []tensor
	if s.RopeFreqs {
		ts = append(ts, tensor{name: "rope_freqs.weight", typ: cgo.TypeF32, shape: []int64{n}, init: fixed(llama3Factors(s.ropeDim(), s.RopeTheta))})
	}
	if s.Arch == "phi3" && s.OrigCtx > 0 {
		short, long := longRoPEFactors(int(n))
		ts = append(ts,
			tensor{name: "rope_factors_long.weight", typ: cgo.TypeF32, shape: []int64{n}, init: fixed(long)},
			tensor{name: "rope_factors_short.weight", typ: cgo.TypeF32, shape: []int64{n}, init: fixed(short)})
	}
	return ts
}

// llama3Factors are the rope_freqs of Llama 3.1+'s "llama3" rope scaling
// (factor 32, low/high frequency factors 1 and 4, original context 8192,
// the values of Llama 3.2's config), computed the way llama.cpp's
// converter does: wavelengths shorter than 8192/4 keep their frequency,
// longer than 8192 are divided by the factor, and between the two the
// divisor is interpolated.
func llama3Factors(dim int, base float32) []float32 {
	const factor, low, high, orig = 32.0, 1.0, 4.0, 8192.0
	out := make([]float32, dim/2)
	for i := range out {
		freq := math.Pow(float64(base), -float64(2*i)/float64(dim))
		wavelen := 2 * math.Pi / freq
		switch {
		case wavelen < orig/high:
			out[i] = 1
		case wavelen > orig/low:
			out[i] = factor
		default:
			smooth := (orig/wavelen - low) / (high - low)
			out[i] = float32(1 / ((1-smooth)/factor + smooth))
		}
	}
	return out
}

// longRoPEFactors are made-up LongRoPE factors of a plausible form: both
// rise with the dimension, the short ones from 1 to 1.5, the long ones
// from 1 to 20.
func longRoPEFactors(n int) (short, long []float32) {
	short, long = make([]float32, n), make([]float32, n)
	for i := range n {
		x := float32(i) / float32(max(1, n-1))
		short[i] = 1 + 0.5*x
		long[i] = 1 + 19*x*x
	}
	return short, long
}

// metaSetter is the part of cgo.GGUF decoderMeta writes with.
type metaSetter interface {
	SetUint32(key string, v uint32)
	SetFloat32(key string, v float32)
}

// decoderMeta writes the keys of the newer decoder families.
func (s *Spec) decoderMeta(g metaSetter) {
	a := s.Arch + "."
	if s.HeadDim > 0 {
		g.SetUint32(a+"attention.key_length", uint32(s.HeadDim))
		g.SetUint32(a+"attention.value_length", uint32(s.HeadDim))
	}
	switch s.Arch {
	case "gemma2":
		g.SetUint32(a+"attention.sliding_window", uint32(cmp0(s.SlidingWindow, 4096)))
		g.SetFloat32(a+"attn_logit_softcapping", 50)
		g.SetFloat32(a+"final_logit_softcapping", 30)
	case "gemma3":
		if s.SlidingWindow > 0 {
			g.SetUint32(a+"attention.sliding_window", uint32(s.SlidingWindow))
		}
	case "phi3":
		if s.OrigCtx > 0 {
			g.SetUint32(a+"rope.scaling.original_context_length", uint32(s.OrigCtx))
			// LongRoPE's attention factor, as Phi-3/4's config derives it
			f := math.Log(float64(s.NCtx)/float64(s.OrigCtx)) / math.Log(float64(s.OrigCtx))
			g.SetFloat32(a+"rope.scaling.attn_factor", float32(math.Sqrt(1+f)))
		}
	}
}

func cmp0(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}
