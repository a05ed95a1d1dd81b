// Package synth writes random-weight GGUF models of real shapes (llama,
// qwen2, qwen3, gemma2, gemma3, phi3, bert, nomic-bert) with a real
// tokenizer copied from a vocabulary GGUF. They load
// and run in llama.cpp like trained models of the same size, so speed and
// memory can be measured at real sizes offline, and tests can build small
// models of any shape. Their outputs are meaningless.
package synth

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unsafe"

	"github.com/pplug/pplug/cgo"
	"github.com/pplug/pplug/internal/atomicfile"
	"github.com/pplug/pplug/internal/missing"
)

// Spec is the shape and encoding of a model to write.
type Spec struct {
	Arch      string // "llama", "qwen2", "bert" or "nomic-bert"
	Name      string
	NEmbd     int
	NLayer    int
	NHead     int
	NHeadKV   int // 0: NHead
	NFF       int
	NCtx      int // training context written to the metadata
	NVocab    int // 0: the vocabulary file's size; larger pads with unused tokens
	RopeTheta float32
	NormEps   float32
	Tied      bool // no output.weight: the output layer reuses token_embd
	// Type of the 2-D weight matrices: cgo.TypeF32, TypeF16, TypeQ8_0, TypeQ4_0.
	Type cgo.GGMLType
	// Pooling written for bert-family models (cgo.PoolingCLS, PoolingMean,
	// ...). For a decoder, a positive value (mean, cls, last) is written as
	// its pooling_type, which makes it a decoder-based embedder such as
	// gte-Qwen2 or Qwen3-Embedding (last-token pooling).
	Pooling cgo.PoolingType
	// Std is the standard deviation of the random weights (0: 0.02).
	Std  float32
	Seed uint64

	// Decoder details of the newer families (decoders.go); zero values
	// give the classic llama shape.
	HeadDim       int  // attention.key_length (0: NEmbd/NHead); qwen3 and gemma differ
	RopeDim       int  // rope.dimension_count (0: the head width); phi-4-mini ropes 3/4
	RopeFreqs     bool // llama: Llama 3.1+ "llama3" rope scaling as a rope_freqs tensor
	SlidingWindow int  // gemma: attention.sliding_window (0: gemma2's 4096, gemma3 none)
	OrigCtx       int  // phi3: LongRoPE's original context (0: NCtx, no long factors)
}

// Presets are shapes of real models (Llama-3.2-1B without and with its
// rope_freqs, Qwen2.5-0.5B/1.5B, Qwen3-0.6B, Gemma-2-2B, Gemma-3-1B,
// Phi-4-mini, BGE-small/base, nomic-embed-text-v1.5, gte-Qwen2-1.5B).
// Their vocabularies are padded to the real size so that
// the output layer costs what it costs in the real model.
var Presets = map[string]Spec{
	"llama-1b":   {Arch: "llama", NEmbd: 2048, NLayer: 16, NHead: 32, NHeadKV: 8, NFF: 8192, NCtx: 8192, NVocab: 128256, RopeTheta: 500000, NormEps: 1e-5, Tied: true},
	"qwen2-0.5b": {Arch: "qwen2", NEmbd: 896, NLayer: 24, NHead: 14, NHeadKV: 2, NFF: 4864, NCtx: 32768, NVocab: 151936, RopeTheta: 1e6, NormEps: 1e-6, Tied: true},
	"qwen2-1.5b": {Arch: "qwen2", NEmbd: 1536, NLayer: 28, NHead: 12, NHeadKV: 2, NFF: 8960, NCtx: 32768, NVocab: 151936, RopeTheta: 1e6, NormEps: 1e-6, Tied: true},
	"bge-small":  {Arch: "bert", NEmbd: 384, NLayer: 12, NHead: 12, NFF: 1536, NCtx: 512, NormEps: 1e-12, Pooling: cgo.PoolingCLS},
	"bge-base":   {Arch: "bert", NEmbd: 768, NLayer: 12, NHead: 12, NFF: 3072, NCtx: 512, NormEps: 1e-12, Pooling: cgo.PoolingCLS},
	// nomic-embed-text-v1.5: nomic-bert, rotary positions, SwiGLU, mean pooling.
	"nomic-embed-v1.5": {Arch: "nomic-bert", NEmbd: 768, NLayer: 12, NHead: 12, NFF: 3072, NCtx: 2048, RopeTheta: 1000, NormEps: 1e-12, Pooling: cgo.PoolingMean},
	// gte-Qwen2-1.5B-instruct: a decoder embedder with last-token pooling.
	"gte-qwen2-1.5b": {Arch: "qwen2", NEmbd: 1536, NLayer: 28, NHead: 12, NHeadKV: 2, NFF: 8960, NCtx: 32768, NVocab: 151646, RopeTheta: 1e6, NormEps: 1e-6, Tied: true, Pooling: cgo.PoolingLast},
}

// PresetNames lists the presets in a stable order.
func PresetNames() []string {
	names := make([]string, 0, len(Presets))
	for n := range Presets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ParseType reads "f32", "f16", "q8_0" or "q4_0".
func ParseType(s string) (cgo.GGMLType, error) {
	switch strings.ToLower(s) {
	case "f32":
		return cgo.TypeF32, nil
	case "f16":
		return cgo.TypeF16, nil
	case "q8_0":
		return cgo.TypeQ8_0, nil
	case "q4_0":
		return cgo.TypeQ4_0, nil
	}
	return 0, fmt.Errorf("unknown weight type %q (want f32, f16, q8_0 or q4_0)", s)
}

// ParsePooling reads the pooling type to write: "mean", "cls", "last" or
// "none" (bert-family only: no pooling of its own).
func ParsePooling(s string) (cgo.PoolingType, error) {
	switch strings.ToLower(s) {
	case "none":
		return cgo.PoolingNone, nil
	case "mean":
		return cgo.PoolingMean, nil
	case "cls":
		return cgo.PoolingCLS, nil
	case "last":
		return cgo.PoolingLast, nil
	}
	return 0, fmt.Errorf("unknown pooling %q (want mean, cls, last or none)", s)
}

// fileType is general.file_type (llama_ftype) for a weight type.
func fileType(t cgo.GGMLType) uint32 {
	switch t {
	case cgo.TypeF16:
		return 1
	case cgo.TypeQ4_0:
		return 2
	case cgo.TypeQ8_0:
		return 7
	}
	return 0
}

func (s *Spec) fill() error {
	if s.NHeadKV == 0 {
		s.NHeadKV = s.NHead
	}
	if s.NCtx == 0 {
		s.NCtx = 2048
	}
	if s.RopeTheta == 0 {
		s.RopeTheta = 10000
	}
	if s.NormEps == 0 {
		s.NormEps = 1e-5
	}
	if s.Std == 0 {
		s.Std = 0.02
	}
	switch {
	case !knownArch(s.Arch):
		return fmt.Errorf("unsupported architecture %q (want %s)", s.Arch, strings.Join(Archs, ", "))
	case s.NEmbd <= 0 || s.NLayer <= 0 || s.NHead <= 0 || s.NFF <= 0:
		return errors.New("n_embd, n_layer, n_head and n_ff must be positive")
	case s.NHeadKV < 0 || s.NCtx < 0 || s.NVocab < 0:
		return errors.New("n_head_kv, n_ctx and n_vocab must not be negative")
	case s.NEmbd > MaxWidth || s.NFF > MaxWidth:
		return fmt.Errorf("n_embd %d or n_ff %d is beyond %d, far past any real model", s.NEmbd, s.NFF, MaxWidth)
	case s.NLayer > MaxLayers:
		return fmt.Errorf("n_layer %d is beyond %d, far past any real model", s.NLayer, MaxLayers)
	case s.NCtx > MaxCtx:
		return fmt.Errorf("n_ctx %d is beyond %d", s.NCtx, MaxCtx)
	case s.NVocab > MaxVocab:
		return fmt.Errorf("n_vocab %d is beyond %d, far past any real vocabulary", s.NVocab, MaxVocab)
	case s.NEmbd%s.NHead != 0:
		return fmt.Errorf("n_embd %d is not a multiple of n_head %d", s.NEmbd, s.NHead)
	case s.NHead%s.NHeadKV != 0:
		return fmt.Errorf("n_head %d is not a multiple of n_head_kv %d", s.NHead, s.NHeadKV)
	case s.bertFamily() && s.NHeadKV != s.NHead:
		return fmt.Errorf("%s models have n_head_kv = n_head", s.Arch)
	case !s.bertFamily() && (s.Pooling < 0 || s.Pooling == cgo.PoolingRank):
		return fmt.Errorf("pooling %s cannot be written for a decoder (want mean, cls or last)", s.Pooling)
	}
	if err := s.fillDecoder(); err != nil {
		return err
	}
	bs := s.Type.BlockSize()
	if !s.Type.Valid() || bs <= 0 {
		return fmt.Errorf("unknown weight type %d", s.Type)
	}
	for _, d := range []int{s.NEmbd, s.NFF, s.headDim() * s.NHead} {
		if int64(d)%bs != 0 {
			return fmt.Errorf("dimension %d is not a multiple of %s's block size %d", d, s.Type, bs)
		}
	}
	return nil
}

// Limits on the dimensions of a Spec: well past any real model, and small
// enough that no size computation overflows.
const (
	MaxWidth  = 1 << 18 // n_embd and n_ff
	MaxLayers = 1 << 10
	MaxCtx    = 1 << 24
	MaxVocab  = 1 << 21
)

// Validate reports whether the spec describes a model Write can produce.
func (s Spec) Validate() error { return s.fill() }

// ErrNoSpace means the model would not fit in the free space of its folder.
var ErrNoSpace = errors.New("not enough free disk space")

// Options are the optional settings of WriteWith.
type Options struct {
	// Progress, if not nil, receives the fraction of tensor bytes written.
	Progress func(float64)
	// Force writes even when the file looks larger than the free space.
	Force bool
}

// tensor is one tensor to write.
type tensor struct {
	name  string
	typ   cgo.GGMLType
	shape []int64 // ggml order: shape[0] is the row length
	init  func(r *rng, row []float32)
}

func (t tensor) rows() int64 {
	n := int64(1)
	for _, d := range t.shape[1:] {
		n *= d
	}
	return n
}

func (s *Spec) tensors(nVocab int) []tensor {
	std := s.Std
	random := func(r *rng, row []float32) { r.fill(row, std) }
	ones := func(_ *rng, row []float32) {
		for i := range row {
			row[i] = 1
		}
	}
	zeros := func(_ *rng, row []float32) { clear(row) }
	small := func(r *rng, row []float32) { r.fill(row, std/4) }

	e, f, v := int64(s.NEmbd), int64(s.NFF), int64(nVocab)
	hd := e / int64(s.NHead)
	kv := hd * int64(s.NHeadKV)
	w := func(name string, shape ...int64) tensor {
		return tensor{name: name, typ: s.Type, shape: shape, init: random}
	}
	vec := func(name string, n int64, init func(*rng, []float32)) tensor {
		return tensor{name: name, typ: cgo.TypeF32, shape: []int64{n}, init: init}
	}

	var ts []tensor
	ts = append(ts, w("token_embd.weight", e, v))
	if s.Arch == "nomic-bert" {
		return append(ts, s.nomicTensors(w, vec, random)...)
	}
	if s.Arch == "bert" {
		ts = append(ts,
			tensor{name: "token_types.weight", typ: cgo.TypeF32, shape: []int64{e, 2}, init: random},
			tensor{name: "position_embd.weight", typ: cgo.TypeF32, shape: []int64{e, int64(s.NCtx)}, init: random},
			vec("token_embd_norm.weight", e, ones),
			vec("token_embd_norm.bias", e, zeros),
		)
		for i := range s.NLayer {
			p := fmt.Sprintf("blk.%d.", i)
			ts = append(ts,
				w(p+"attn_q.weight", e, e), vec(p+"attn_q.bias", e, small),
				w(p+"attn_k.weight", e, e), vec(p+"attn_k.bias", e, small),
				w(p+"attn_v.weight", e, e), vec(p+"attn_v.bias", e, small),
				w(p+"attn_output.weight", e, e), vec(p+"attn_output.bias", e, small),
				vec(p+"attn_output_norm.weight", e, ones), vec(p+"attn_output_norm.bias", e, zeros),
				w(p+"ffn_up.weight", e, f), vec(p+"ffn_up.bias", f, small),
				w(p+"ffn_down.weight", f, e), vec(p+"ffn_down.bias", e, small),
				vec(p+"layer_output_norm.weight", e, ones), vec(p+"layer_output_norm.bias", e, zeros),
			)
		}
		return ts
	}
	ts = append(ts, vec("output_norm.weight", e, ones))
	if !s.Tied {
		ts = append(ts, w("output.weight", e, v))
	}
	if s.Arch != "llama" && s.Arch != "qwen2" {
		return append(ts, s.decoderTensors(w, vec)...)
	}
	ts = append(ts, s.ropeTensors()...)
	for i := range s.NLayer {
		p := fmt.Sprintf("blk.%d.", i)
		ts = append(ts,
			vec(p+"attn_norm.weight", e, ones),
			w(p+"attn_q.weight", e, hd*int64(s.NHead)),
			w(p+"attn_k.weight", e, kv),
			w(p+"attn_v.weight", e, kv),
		)
		if s.Arch == "qwen2" {
			ts = append(ts,
				vec(p+"attn_q.bias", hd*int64(s.NHead), small),
				vec(p+"attn_k.bias", kv, small),
				vec(p+"attn_v.bias", kv, small),
			)
		}
		ts = append(ts,
			w(p+"attn_output.weight", hd*int64(s.NHead), e),
			vec(p+"ffn_norm.weight", e, ones),
			w(p+"ffn_gate.weight", e, f),
			w(p+"ffn_up.weight", e, f),
			w(p+"ffn_down.weight", f, e),
		)
	}
	return ts
}

// bertFamily reports a non-causal BERT-style encoder: LayerNorm with biases,
// post-norm residuals, a pooling type of its own and a vocabulary that
// cannot be padded.
func (s *Spec) bertFamily() bool { return s.Arch == "bert" || s.Arch == "nomic-bert" }

// nomicTensors are the tensors of a nomic-bert encoder after token_embd:
// BERT's post-norm layers with a fused QKV projection and no biases, rotary
// positions instead of a position table, and a SwiGLU feed-forward.
func (s *Spec) nomicTensors(w func(string, ...int64) tensor, vec func(string, int64, func(*rng, []float32)) tensor, random func(*rng, []float32)) []tensor {
	e, f := int64(s.NEmbd), int64(s.NFF)
	ones := func(_ *rng, row []float32) {
		for i := range row {
			row[i] = 1
		}
	}
	zeros := func(_ *rng, row []float32) { clear(row) }
	ts := []tensor{
		{name: "token_types.weight", typ: cgo.TypeF32, shape: []int64{e, 2}, init: random},
		vec("token_embd_norm.weight", e, ones),
		vec("token_embd_norm.bias", e, zeros),
	}
	for i := range s.NLayer {
		p := fmt.Sprintf("blk.%d.", i)
		ts = append(ts,
			w(p+"attn_qkv.weight", e, 3*e),
			w(p+"attn_output.weight", e, e),
			vec(p+"attn_output_norm.weight", e, ones), vec(p+"attn_output_norm.bias", e, zeros),
			w(p+"ffn_up.weight", e, f),
			w(p+"ffn_gate.weight", e, f),
			w(p+"ffn_down.weight", f, e),
			vec(p+"layer_output_norm.weight", e, ones), vec(p+"layer_output_norm.bias", e, zeros),
		)
	}
	return ts
}

// Params is the number of weights the spec writes.
func (s Spec) Params(nVocab int) int64 {
	if err := s.fill(); err != nil {
		return 0
	}
	var n int64
	for _, t := range s.tensors(nVocab) {
		n += t.rows() * t.shape[0]
	}
	return n
}

// Write creates the model at path atomically (a temporary file renamed into
// place). vocabPath is a GGUF whose tokenizer.* keys are copied. progress,
// if not nil, receives the fraction of tensor bytes written. A model larger
// than the free space of path's folder is refused with ErrNoSpace.
func Write(path, vocabPath string, s Spec, progress func(float64)) error {
	return WriteWith(path, vocabPath, s, Options{Progress: progress})
}

// WriteWith is Write with options.
func WriteWith(path, vocabPath string, s Spec, opts Options) error {
	progress := opts.Progress
	if err := s.fill(); err != nil {
		return err
	}
	if _, err := os.Stat(vocabPath); err != nil {
		return fmt.Errorf("read vocabulary %q: %w", vocabPath, missing.File(err, missing.Vocab))
	}
	vocab, err := cgo.GGUFOpen(vocabPath)
	if err != nil {
		return fmt.Errorf("read vocabulary %q: %w", vocabPath, err)
	}
	defer vocab.Free()

	g := cgo.NewGGUF()
	defer g.Free()
	nVocab, err := copyTokenizer(g, vocab, s.NVocab)
	if err != nil {
		return fmt.Errorf("vocabulary %q: %w", vocabPath, err)
	}
	if s.bertFamily() && nVocab != vocabSize(vocab) {
		return fmt.Errorf("%s vocabularies cannot be padded", s.Arch)
	}
	a := s.Arch + "."
	g.SetString("general.architecture", s.Arch)
	name := s.Name
	if name == "" {
		name = "pplug-synth-" + s.Arch
	}
	g.SetString("general.name", name)
	g.SetString("general.description", "random weights written by pplug synth: for speed and shape tests only")
	g.SetUint32("general.file_type", fileType(s.Type))
	g.SetUint32(a+"context_length", uint32(s.NCtx))
	g.SetUint32(a+"embedding_length", uint32(s.NEmbd))
	g.SetUint32(a+"block_count", uint32(s.NLayer))
	g.SetUint32(a+"feed_forward_length", uint32(s.NFF))
	g.SetUint32(a+"attention.head_count", uint32(s.NHead))
	if s.bertFamily() {
		g.SetFloat32(a+"attention.layer_norm_epsilon", s.NormEps)
		g.SetBool(a+"attention.causal", false)
		g.SetUint32(a+"pooling_type", uint32(s.Pooling))
		if s.Arch == "nomic-bert" {
			g.SetFloat32(a+"rope.freq_base", s.RopeTheta)
		}
	} else {
		if s.Pooling > 0 {
			g.SetUint32(a+"pooling_type", uint32(s.Pooling))
		}
		g.SetUint32(a+"attention.head_count_kv", uint32(s.NHeadKV))
		g.SetFloat32(a+"rope.freq_base", s.RopeTheta)
		g.SetFloat32(a+"attention.layer_norm_rms_epsilon", s.NormEps)
		g.SetUint32(a+"rope.dimension_count", uint32(s.ropeDim()))
		g.SetUint32(a+"vocab_size", uint32(nVocab))
		s.decoderMeta(g)
	}

	ts := s.tensors(nVocab)
	var total int64
	for _, t := range ts {
		if err := g.AddTensorInfo(t.name, t.typ, t.shape); err != nil {
			return err
		}
		total += t.typ.RowSize(t.shape[0]) * t.rows()
	}
	if !opts.Force {
		size := int64(len(g.MetaData()))
		align := g.Alignment()
		for _, t := range ts {
			n := t.typ.RowSize(t.shape[0]) * t.rows()
			size += n + (align-n%align)%align
		}
		dir := filepath.Dir(path)
		if free, ok := freeSpace(dir); ok && uint64(size) > free {
			return fmt.Errorf("%w: %s would take %s and %s has %s free", ErrNoSpace, path, humanBytes(size), dir, humanBytes(int64(min(free, math.MaxInt64))))
		}
	}

	r := newRNG(s.Seed)
	var written int64
	return atomicfile.Write(path, func(w io.Writer) error {
		return g.Write(w, func(i int, w io.Writer) error {
			t := ts[i]
			n, err := writeTensor(w, t, r)
			if err != nil {
				return fmt.Errorf("write %s: %w", t.name, err)
			}
			written += n
			if progress != nil && total > 0 {
				progress(float64(written) / float64(total))
			}
			return nil
		})
	})
}

// writeTensor generates and writes one tensor in chunks of rows.
func writeTensor(w io.Writer, t tensor, r *rng) (int64, error) {
	perRow := t.shape[0]
	rows := t.rows()
	rowBytes := t.typ.RowSize(perRow)
	chunk := max(int64(1), (1<<20)/perRow) // about 4 MiB of float32 per chunk
	src := make([]float32, chunk*perRow)
	dst := make([]byte, chunk*rowBytes)
	var n int64
	for r0 := int64(0); r0 < rows; r0 += chunk {
		k := min(chunk, rows-r0)
		for i := range k {
			t.init(r, src[i*perRow:(i+1)*perRow])
		}
		m, err := cgo.Quantize(t.typ, src[:k*perRow], dst, k, perRow)
		if err != nil {
			return n, err
		}
		if _, err := w.Write(dst[:m]); err != nil {
			return n, err
		}
		n += m
	}
	return n, nil
}

func vocabSize(v *cgo.GGUF) int {
	i := v.FindKey("tokenizer.ggml.tokens")
	if i < 0 {
		return 0
	}
	return v.ArrLen(i)
}

// copyTokenizer copies the tokenizer.* keys of vocab into g, padding the
// token arrays to nVocab entries when nVocab is larger. It returns the final
// vocabulary size.
func copyTokenizer(g, vocab *cgo.GGUF, nVocab int) (int, error) {
	have := vocabSize(vocab)
	if have == 0 {
		return 0, errors.New("no tokenizer.ggml.tokens array")
	}
	if nVocab == 0 {
		nVocab = have
	}
	if nVocab < have {
		return 0, fmt.Errorf("n_vocab %d is smaller than the vocabulary's %d tokens", nVocab, have)
	}
	g.CopyKVFrom(vocab)
	var drop []string
	for i := range g.NKV() {
		if k := g.Key(i); !strings.HasPrefix(k, "tokenizer.") {
			drop = append(drop, k)
		}
	}
	for _, k := range drop {
		g.RemoveKey(k)
	}
	if nVocab == have {
		return nVocab, nil
	}

	// Pad: tokens, scores and token types (type 5 = unused).
	ti := vocab.FindKey("tokenizer.ggml.tokens")
	tokens := make([]string, 0, nVocab)
	for j := range have {
		s, err := vocab.ArrString(ti, j)
		if err != nil {
			return 0, err
		}
		tokens = append(tokens, s)
	}
	for j := have; j < nVocab; j++ {
		tokens = append(tokens, fmt.Sprintf("<|synth_unused_%d|>", j))
	}
	g.SetArrayStrings("tokenizer.ggml.tokens", tokens)

	if si := vocab.FindKey("tokenizer.ggml.scores"); si >= 0 {
		raw, at, err := vocab.ArrData(si)
		if err != nil || at != cgo.GGUFFloat32 || len(raw) != 4*have {
			return 0, errors.New("tokenizer.ggml.scores is not a float32 array of the vocabulary's size")
		}
		scores := make([]float32, nVocab)
		copy(scores, unsafe.Slice((*float32)(unsafe.Pointer(&raw[0])), have))
		for j := have; j < nVocab; j++ {
			scores[j] = -1e4
		}
		g.SetArrayData("tokenizer.ggml.scores", cgo.GGUFFloat32, unsafe.Pointer(&scores[0]), nVocab)
	}
	if ti := vocab.FindKey("tokenizer.ggml.token_type"); ti >= 0 {
		raw, at, err := vocab.ArrData(ti)
		if err != nil || at != cgo.GGUFInt32 || len(raw) != 4*have {
			return 0, errors.New("tokenizer.ggml.token_type is not an int32 array of the vocabulary's size")
		}
		types := make([]int32, nVocab)
		copy(types, unsafe.Slice((*int32)(unsafe.Pointer(&raw[0])), have))
		for j := have; j < nVocab; j++ {
			types[j] = 5
		}
		g.SetArrayData("tokenizer.ggml.token_type", cgo.GGUFInt32, unsafe.Pointer(&types[0]), nVocab)
	}
	return nVocab, nil
}

// rng is xorshift64*: fast, seedable, good enough for weights.
type rng struct{ s uint64 }

func newRNG(seed uint64) *rng {
	if seed == 0 {
		seed = 0x9E3779B97F4A7C15
	}
	return &rng{s: seed}
}

func (r *rng) next() uint64 {
	r.s ^= r.s >> 12
	r.s ^= r.s << 25
	r.s ^= r.s >> 27
	return r.s * 0x2545F4914F6CDD1D
}

// fill writes uniform values with standard deviation std.
func (r *rng) fill(row []float32, std float32) {
	a := std * float32(math.Sqrt(3)) // uniform on [-a, a] has std a/sqrt(3)
	for i := range row {
		u := float32(r.next()>>40) / float32(1<<24) // [0, 1)
		row[i] = (2*u - 1) * a
	}
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for x := n / unit; x >= unit; x /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
