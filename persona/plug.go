package persona

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"unsafe"

	"github.com/pplug/pplug/internal/atomicfile"
	"github.com/pplug/pplug/internal/missing"
	"github.com/pplug/pplug/kernels"
	"github.com/pplug/pplug/llama"
)

// PlugArch is general.architecture of a plug file.
const PlugArch = "pplug"

// PlugFormatVersion is the plug file format this code writes and reads.
const PlugFormatVersion = 1

// ErrNotPlug means a file is not a pplug plug-in.
var ErrNotPlug = errors.New("not a pplug plug-in")

// Plug is a Persona-Plug plug-in: the projector that maps history
// embeddings (DEnc) into the LLM's input space (DLLM), the instruction rows,
// the aggregator's temperature and the scale that makes rows look like the
// LLM's own token embeddings. One plug serves every user.
type Plug struct {
	DEnc   int // encoder embedding width
	DLLM   int // LLM input width (n_embd)
	NInstr int // instruction rows (the paper: 1)
	// NPersona is the number of persona rows (the paper: 1; 0 reads as 1).
	// The projector's second layer has NPersona blocks of DLLM outputs:
	// row j is sum_i w_i Proj_j(h_i), all rows with the same weights w.
	// A small LLM reads a user's traits from several rows far better than
	// from one (issue 10).
	NPersona int
	Tau      float32 // aggregator temperature (the paper: 1)
	// Scale multiplies the projector output; it is the mean L2 norm of the
	// LLM's token embeddings, measured when the plug was made.
	Scale float32

	Pooling     string // encoder pooling the plug was made with
	QueryPrefix string // instruction prefix for the query encoder
	Encoder     string // encoder identity (EncoderID)
	LLM         string // LLM identity (ModelID)
	Task        string // LaMP task or "" for general use
	// Meta holds free-form facts (training steps, loss, dates).
	Meta map[string]string

	W1 []float32 // [DLLM][DEnc]
	B1 []float32 // [DLLM]
	W2 []float32 // [NPersona*DLLM][DLLM]
	B2 []float32 // [NPersona*DLLM]
	// Instr holds the instruction rows [NInstr][DLLM], already at the LLM's scale.
	Instr []float32
	// Optional query adapter q' = normalise(q + A q + a), A [DEnc][DEnc].
	// Both nil when absent (the paper trains the query encoder instead; a
	// llama.cpp encoder is frozen, so this adapter is what can learn).
	AdapterW []float32
	AdapterB []float32

	// EOSBias is added to the logit of the LLM's end-of-generation token
	// (EOS) wherever the plug's rows are injected, in training, generation
	// and likelihoods: a frozen LLM that never learned to end a text after a
	// sentence or two (stories260K was pretrained without EOS) gets its
	// length prior from the plug. 0: none. Stored as pplug.eos_bias.
	EOSBias float32
	// RetrieveK is the number of BM25-retrieved history items the plug was
	// trained to see in the prompt (pplug train --retrieve-k), which the
	// PPlug + retrieval method then uses; 0: trained without retrieval.
	// Stored as pplug.retrieve_k.
	RetrieveK int
	// Layout is the input layout the plug was trained on: LayoutPrompt
	// ("": the prompt alone, rows after BOS or after the retrieved items)
	// or LayoutChat (a conversation in the model's chat template, the rows
	// opening it; pplug train --layout chat). Stored as pplug.layout.
	Layout string
}

// The layouts a plug is trained on (Plug.Layout).
const (
	LayoutPrompt = "prompt"
	LayoutChat   = "chat"
)

// ParseLayout checks a layout name ("" reads as LayoutPrompt).
func ParseLayout(s string) (string, error) {
	switch s {
	case "", LayoutPrompt:
		return LayoutPrompt, nil
	case LayoutChat:
		return LayoutChat, nil
	}
	return "", fmt.Errorf("unknown layout %q (layouts: prompt, chat)", s)
}

// Chat reports whether the plug was trained on conversations in the chat
// template (Layout).
func (p *Plug) Chat() bool { return p != nil && p.Layout == LayoutChat }

// PlugOptions configure NewPlug.
type PlugOptions struct {
	NInstr      int     // default 1
	NPersona    int     // default 1
	Tau         float32 // default 1
	Seed        uint64
	Pooling     string
	QueryPrefix string
	Encoder     string
	LLM         string
	Task        string
	Adapter     bool // add a zero-initialised query adapter
	// DefaultPrefix makes NewPlugFor choose the query prefix for the
	// encoder (QueryPrefix is then ignored).
	DefaultPrefix bool
}

// DefaultQueryPrefix is BGE's instruction for retrieval queries, which the
// paper prepends to the input before encoding it.
const DefaultQueryPrefix = "Represent this sentence for searching relevant passages: "

// NewPlugFor returns a freshly initialised plug for an LLM and a history
// encoder: the rule every new plug follows. Its scale is the LLM's
// measured token-embedding scale (TokenEmbeddingScale), its identities and
// pooling are the LLM's and the encoder's, and its query prefix is
// o.QueryPrefix, or, when o.DefaultPrefix is set, BGE's retrieval
// instruction for a separate encoder and none when the LLM encodes itself.
func NewPlugFor(m *llama.Model, enc *Encoder, o PlugOptions) (*Plug, error) {
	scale, err := TokenEmbeddingScale(m)
	if err != nil {
		return nil, fmt.Errorf("measure the token embedding scale: %w", err)
	}
	id, err := ModelID(m)
	if err != nil {
		return nil, err
	}
	if o.DefaultPrefix {
		o.QueryPrefix = ""
		if enc.Model() != m {
			o.QueryPrefix = DefaultQueryPrefix
		}
	}
	o.Pooling, o.Encoder, o.LLM = enc.PoolingName(), enc.ID(), id
	return NewPlug(enc.Dim(), m.NEmbd(), scale, o)
}

// NewPlug returns a freshly initialised plug for an encoder of width dEnc
// and an LLM of width dLLM whose token embeddings have mean norm scale.
// The weights are drawn so that a unit input gives a projector output of
// norm about 1 before Scale, and the instruction rows have norm Scale.
func NewPlug(dEnc, dLLM int, scale float32, o PlugOptions) (*Plug, error) {
	if dEnc <= 0 || dLLM <= 0 {
		return nil, fmt.Errorf("plug dimensions must be positive (d_enc %d, d_llm %d)", dEnc, dLLM)
	}
	if !(scale > 0) || math.IsInf(float64(scale), 0) {
		return nil, fmt.Errorf("plug scale %v must be a positive number", scale)
	}
	if o.NInstr < 0 {
		return nil, errors.New("the number of instruction rows cannot be negative")
	}
	if o.NInstr == 0 {
		o.NInstr = 1
	}
	if o.NPersona < 0 || o.NPersona > MaxPersonaRows {
		return nil, fmt.Errorf("%d persona rows: give 1 to %d", o.NPersona, MaxPersonaRows)
	}
	if o.NPersona == 0 {
		o.NPersona = 1
	}
	if o.Tau == 0 {
		o.Tau = 1
	}
	if !(o.Tau > 0) || math.IsInf(float64(o.Tau), 0) {
		return nil, fmt.Errorf("tau %v must be a positive number", o.Tau)
	}
	r := rand.New(rand.NewPCG(o.Seed, 0x5eed))
	normal := func(dst []float32, std float64) {
		for i := range dst {
			dst[i] = float32(r.NormFloat64() * std)
		}
	}
	p := &Plug{
		DEnc: dEnc, DLLM: dLLM, NInstr: o.NInstr, NPersona: o.NPersona, Tau: o.Tau, Scale: scale,
		Pooling: o.Pooling, QueryPrefix: o.QueryPrefix, Encoder: o.Encoder, LLM: o.LLM, Task: o.Task,
		Meta:  map[string]string{},
		W1:    make([]float32, dLLM*dEnc),
		B1:    make([]float32, dLLM),
		W2:    make([]float32, o.NPersona*dLLM*dLLM),
		B2:    make([]float32, o.NPersona*dLLM),
		Instr: make([]float32, o.NInstr*dLLM),
	}
	// Unit-norm inputs give pre-activations ~ N(0, 1); GELU of those has
	// E[g^2] ~ 0.425, so W2 with std 1/(dLLM*sqrt(0.425)) gives outputs of
	// norm ~ 1.
	normal(p.W1, 1)
	normal(p.W2, 1/(float64(dLLM)*math.Sqrt(0.425)))
	normal(p.Instr, 1)
	for i := range o.NInstr {
		row := p.Instr[i*dLLM : (i+1)*dLLM]
		n := norm(row)
		for j := range row {
			row[j] *= scale / n
		}
	}
	if o.Adapter {
		p.AdapterW = make([]float32, dEnc*dEnc)
		p.AdapterB = make([]float32, dEnc)
	}
	return p, nil
}

// maxRetrieveK bounds Plug.RetrieveK.
const maxRetrieveK = 1 << 10

// MaxPersonaRows bounds Plug.NPersona.
const MaxPersonaRows = 64

// NRows is the number of rows the plug injects: instruction rows and the
// persona rows.
func (p *Plug) NRows() int { return p.NInstr + p.PersonaRows() }

// PersonaRows is the number of persona rows (NPersona, at least 1).
func (p *Plug) PersonaRows() int { return max(1, p.NPersona) }

// Projector returns the kernels' view of the projector of the first
// persona row.
func (p *Plug) Projector() *kernels.Projector { return p.ProjectorOf(0) }

// ProjectorOf returns the kernels' view of the projector of persona row j:
// the shared first layer and block j of the second.
func (p *Plug) ProjectorOf(j int) *kernels.Projector {
	d := p.DLLM
	return &kernels.Projector{DIn: p.DEnc, DOut: d, W1: p.W1, B1: p.B1, W2: p.W2[j*d*d : (j+1)*d*d], B2: p.B2[j*d : (j+1)*d], Scale: p.Scale}
}

// Validate checks the sizes of every tensor against the dimensions.
func (p *Plug) Validate() error {
	switch {
	case p.DEnc <= 0 || p.DLLM <= 0:
		return fmt.Errorf("dimensions d_enc %d, d_llm %d must be positive", p.DEnc, p.DLLM)
	case p.NInstr < 0:
		return fmt.Errorf("n_instruction %d is negative", p.NInstr)
	case p.NPersona < 0 || p.NPersona > MaxPersonaRows:
		return fmt.Errorf("n_persona %d is outside 1 to %d", p.NPersona, MaxPersonaRows)
	case !(p.Tau > 0) || math.IsInf(float64(p.Tau), 0):
		return fmt.Errorf("tau %v is not a positive number", p.Tau)
	case !(p.Scale > 0) || math.IsInf(float64(p.Scale), 0):
		return fmt.Errorf("scale %v is not a positive number", p.Scale)
	case math.IsNaN(float64(p.EOSBias)) || math.IsInf(float64(p.EOSBias), 0):
		return fmt.Errorf("eos_bias %v is not a number", p.EOSBias)
	case p.RetrieveK < 0 || p.RetrieveK > maxRetrieveK:
		return fmt.Errorf("retrieve_k %d is outside 0 to %d", p.RetrieveK, maxRetrieveK)
	case p.Layout != "" && p.Layout != LayoutPrompt && p.Layout != LayoutChat:
		return fmt.Errorf("layout %q is not prompt or chat; this version reads those", p.Layout)
	}
	for _, pp := range PlugParams {
		v := *pp.Values(p)
		if v == nil && pp.Optional {
			continue
		}
		want := 1
		for _, d := range pp.Shape(p) {
			want *= int(d)
		}
		if len(v) != want {
			return fmt.Errorf("tensor %s has %d values, want %d", pp.Name, len(v), want)
		}
	}
	if (p.AdapterW == nil) != (p.AdapterB == nil) {
		return errors.New("the query adapter needs both query_adapter.w and query_adapter.b")
	}
	return nil
}

// CheckModel refuses a plug whose widths do not match the LLM and encoder.
func (p *Plug) CheckModel(llmEmbd, encEmbd int) error {
	if p.DLLM != llmEmbd {
		return fmt.Errorf("plug was made for an LLM with n_embd %d, this model has %d: make a plug for it with `pplug plug init`", p.DLLM, llmEmbd)
	}
	if p.DEnc != encEmbd {
		return fmt.Errorf("plug was made for an encoder of width %d, this encoder gives %d: use the encoder it was made with (%s)", p.DEnc, encEmbd, p.Encoder)
	}
	return nil
}

// AdaptQuery applies the query adapter (if any) and renormalises q in place.
func (p *Plug) AdaptQuery(q []float32) {
	if p.AdapterW == nil {
		return
	}
	d := p.DEnc
	out := make([]float32, d)
	for i := range d {
		s := p.AdapterB[i]
		row := p.AdapterW[i*d : (i+1)*d]
		for j, x := range q {
			s += row[j] * x
		}
		out[i] = q[i] + s
	}
	if n := norm(out); n > 0 {
		for i := range out {
			q[i] = out[i] / n
		}
	}
}

// ---- files ------------------------------------------------------------------

// PlugParam is one trainable tensor of a plug: its name in plug files (and
// in the training graph, see traingraph.Param), its shape in ggml order
// (ne0 first) for a plug's dimensions, the metadata behind that shape (for
// messages), and the plug's values. PlugParams is the one list of them.
type PlugParam struct {
	Name   string
	Shape  func(p *Plug) []int64
	Why    func(p *Plug) string
	Values func(p *Plug) *[]float32
	// Optional tensors are absent from plugs made without them (the query
	// adapter); the others are always there (instruction: [d_llm, 0] for a
	// plug without instruction rows).
	Optional bool
}

// PlugParams are the tensors of a plug, in file order.
var PlugParams = []PlugParam{
	{Name: "proj.w1", Shape: func(p *Plug) []int64 { return []int64{int64(p.DEnc), int64(p.DLLM)} }, Why: whyEncLLM, Values: func(p *Plug) *[]float32 { return &p.W1 }},
	{Name: "proj.b1", Shape: func(p *Plug) []int64 { return []int64{int64(p.DLLM)} }, Why: whyLLM, Values: func(p *Plug) *[]float32 { return &p.B1 }},
	{Name: "proj.w2", Shape: func(p *Plug) []int64 { return []int64{int64(p.DLLM), int64(p.PersonaRows() * p.DLLM)} }, Why: whyPersona, Values: func(p *Plug) *[]float32 { return &p.W2 }},
	{Name: "proj.b2", Shape: func(p *Plug) []int64 { return []int64{int64(p.PersonaRows() * p.DLLM)} }, Why: whyPersona, Values: func(p *Plug) *[]float32 { return &p.B2 }},
	{Name: "instruction", Shape: func(p *Plug) []int64 { return []int64{int64(p.DLLM), int64(p.NInstr)} },
		Why: func(p *Plug) string {
			return fmt.Sprintf("pplug.d_llm is %d and pplug.n_instruction %d", p.DLLM, p.NInstr)
		},
		Values: func(p *Plug) *[]float32 { return &p.Instr }},
	{Name: "query_adapter.w", Shape: func(p *Plug) []int64 { return []int64{int64(p.DEnc), int64(p.DEnc)} }, Why: whyEnc, Values: func(p *Plug) *[]float32 { return &p.AdapterW }, Optional: true},
	{Name: "query_adapter.b", Shape: func(p *Plug) []int64 { return []int64{int64(p.DEnc)} }, Why: whyEnc, Values: func(p *Plug) *[]float32 { return &p.AdapterB }, Optional: true},
}

func whyEncLLM(p *Plug) string {
	return fmt.Sprintf("pplug.d_enc is %d and pplug.d_llm %d", p.DEnc, p.DLLM)
}
func whyLLM(p *Plug) string { return fmt.Sprintf("pplug.d_llm is %d", p.DLLM) }
func whyPersona(p *Plug) string {
	return fmt.Sprintf("pplug.d_llm is %d and pplug.n_persona %d", p.DLLM, p.PersonaRows())
}
func whyEnc(p *Plug) string { return fmt.Sprintf("pplug.d_enc is %d", p.DEnc) }

// plugParam is the PlugParam called name (nil when there is none).
func plugParam(name string) *PlugParam {
	for i := range PlugParams {
		if PlugParams[i].Name == name {
			return &PlugParams[i]
		}
	}
	return nil
}

type plugTensor struct {
	name  string
	data  []float32
	shape []int64
}

// tensors are the tensors the plug holds, in file order (the instruction
// tensor only with instruction rows).
func (p *Plug) tensors() []plugTensor {
	var ts []plugTensor
	for _, pp := range PlugParams {
		v := *pp.Values(p)
		if (pp.Optional && v == nil) || (pp.Name == "instruction" && p.NInstr == 0) {
			continue
		}
		ts = append(ts, plugTensor{pp.Name, v, pp.Shape(p)})
	}
	return ts
}

// WriteFile writes the plug as a GGUF file, atomically (a temporary file in
// the same folder renamed over path).
func (p *Plug) WriteFile(path string) error {
	if err := p.Validate(); err != nil {
		return fmt.Errorf("write plug: %w", err)
	}
	return atomicfile.Write(path, p.Encode)
}

// Checksum is a SHA-256 over the plug's dimensions, temperature, scale and
// every tensor's values: two plugs with the same checksum hold the same
// parameters. Training stores it with a checkpoint's optimizer state so
// that a plug and a state of different checkpoints are not paired.
func (p *Plug) Checksum() [32]byte {
	h := sha256.New()
	fmt.Fprintf(h, "pplug-plug|%d|%d|%d|%08x|%08x|", p.DEnc, p.DLLM, p.NInstr, math.Float32bits(p.Tau), math.Float32bits(p.Scale))
	if p.PersonaRows() > 1 {
		fmt.Fprintf(h, "n_persona|%d|", p.PersonaRows())
	}
	if p.EOSBias != 0 || p.RetrieveK != 0 {
		fmt.Fprintf(h, "eos_bias|%08x|retrieve_k|%d|", math.Float32bits(p.EOSBias), p.RetrieveK)
	}
	if p.Chat() {
		fmt.Fprintf(h, "layout|%s|", p.Layout)
	}
	for _, t := range p.tensors() {
		fmt.Fprintf(h, "%s|%d|", t.name, len(t.data))
		h.Write(floatBytes(t.data))
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// Encode writes the plug as a GGUF file to w.
func (p *Plug) Encode(w io.Writer) error {
	if err := p.Validate(); err != nil {
		return fmt.Errorf("write plug: %w", err)
	}
	return p.encode(w, p.tensors(), nil)
}

// encode writes the metadata and the tensors ts; edit, when set, may change
// the metadata before it is written (tests make inconsistent files with it).
func (p *Plug) encode(w io.Writer, ts []plugTensor, edit func(g *llama.GGUFWriter)) error {
	g := llama.NewGGUFWriter()
	defer g.Close()
	g.SetString("general.architecture", PlugArch)
	g.SetString("general.name", "pplug plug-in")
	g.SetUint32("pplug.format_version", PlugFormatVersion)
	g.SetUint32("pplug.d_enc", uint32(p.DEnc))
	g.SetUint32("pplug.d_llm", uint32(p.DLLM))
	g.SetUint32("pplug.n_instruction", uint32(p.NInstr))
	g.SetUint32("pplug.n_persona", uint32(p.PersonaRows()))
	g.SetFloat32("pplug.tau", p.Tau)
	g.SetFloat32("pplug.scale", p.Scale)
	g.SetString("pplug.pooling", p.Pooling)
	g.SetString("pplug.query_prefix", p.QueryPrefix)
	g.SetString("pplug.encoder", p.Encoder)
	g.SetString("pplug.llm", p.LLM)
	g.SetUint32("pplug.llm_n_embd", uint32(p.DLLM))
	g.SetString("pplug.task", p.Task)
	if p.EOSBias != 0 {
		g.SetFloat32("pplug.eos_bias", p.EOSBias)
	}
	if p.RetrieveK != 0 {
		g.SetUint32("pplug.retrieve_k", uint32(p.RetrieveK))
	}
	if p.Chat() {
		g.SetString("pplug.layout", p.Layout)
	}
	for _, k := range slices.Sorted(maps.Keys(p.Meta)) {
		g.SetString("pplug.meta."+k, p.Meta[k])
	}
	if edit != nil {
		edit(g)
	}
	for _, t := range ts {
		if err := g.AddTensor(t.name, llama.TensorF32, t.shape); err != nil {
			return fmt.Errorf("write plug: %w", err)
		}
	}
	return g.Write(w, func(i int, w io.Writer) error {
		_, err := w.Write(floatBytes(ts[i].data))
		return err
	})
}

// ReadPlug reads and validates a plug file.
func ReadPlug(path string) (*Plug, error) {
	p, err := readPlug(path)
	if err != nil {
		return nil, fmt.Errorf("read plug %q: %w", path, missing.File(err, missing.Plug))
	}
	return p, nil
}

func readPlug(path string) (*Plug, error) {
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return nil, err
	case fi.IsDir():
		return nil, errors.New("is a directory")
	case fi.Size() < 4:
		return nil, fmt.Errorf("%w: the file has %d bytes", ErrNotPlug, fi.Size())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	magic := make([]byte, 4)
	if _, err := io.ReadFull(f, magic); err != nil || !bytes.Equal(magic, []byte("GGUF")) {
		return nil, fmt.Errorf("%w: not a GGUF file", ErrNotPlug)
	}
	g, err := llama.OpenGGUF(path)
	if err != nil {
		return nil, fmt.Errorf("corrupt or truncated plug header: %w", err)
	}
	defer g.Close()
	p, err := readPlugMeta(g)
	if err != nil {
		return nil, err
	}
	if err := readPlugTensors(g, f, fi.Size(), p); err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}

// readPlugMeta reads and checks a plug file's metadata.
func readPlugMeta(g *llama.GGUFFile) (*Plug, error) {
	kv := ggufKV{g: g}
	if arch := kv.str("general.architecture"); arch != PlugArch {
		return nil, fmt.Errorf("%w: general.architecture is %q (is this a model? plugs are made with `pplug plug init`)", ErrNotPlug, arch)
	}
	if v := kv.u32("pplug.format_version"); v != PlugFormatVersion {
		return nil, fmt.Errorf("plug format version %d is not supported (this pplug reads version %d)", v, PlugFormatVersion)
	}
	p := &Plug{
		DEnc:        int(kv.u32("pplug.d_enc")),
		DLLM:        int(kv.u32("pplug.d_llm")),
		NInstr:      int(kv.u32("pplug.n_instruction")),
		Tau:         kv.f32("pplug.tau"),
		Scale:       kv.f32("pplug.scale"),
		Pooling:     kv.str("pplug.pooling"),
		QueryPrefix: kv.str("pplug.query_prefix"),
		Encoder:     kv.str("pplug.encoder"),
		LLM:         kv.str("pplug.llm"),
		Task:        kv.str("pplug.task"),
		Meta:        map[string]string{},
	}
	if kv.err != nil {
		return nil, kv.err
	}
	p.NPersona = int(kv.u32("pplug.n_persona"))
	if p.NPersona < 1 || p.NPersona > MaxPersonaRows {
		return nil, fmt.Errorf("pplug.n_persona is %d; this version supports 1 to %d", p.NPersona, MaxPersonaRows)
	}
	// Optional keys (absent in plugs written before they existed).
	if g.FindKey("pplug.eos_bias") >= 0 {
		p.EOSBias = kv.f32("pplug.eos_bias")
	}
	if g.FindKey("pplug.retrieve_k") >= 0 {
		p.RetrieveK = int(kv.u32("pplug.retrieve_k"))
	}
	if g.FindKey("pplug.layout") >= 0 {
		p.Layout = kv.str("pplug.layout")
	}
	if kv.err != nil {
		return nil, kv.err
	}
	for i := range g.NKV() {
		if k := g.Key(i); strings.HasPrefix(k, "pplug.meta.") {
			p.Meta[strings.TrimPrefix(k, "pplug.meta.")] = g.ValueString(i)
		}
	}
	if p.DEnc <= 0 || p.DLLM <= 0 || p.DEnc > 1<<20 || p.DLLM > 1<<20 || p.NInstr > 1<<16 {
		return nil, fmt.Errorf("implausible dimensions pplug.d_enc %d, pplug.d_llm %d, pplug.n_instruction %d", p.DEnc, p.DLLM, p.NInstr)
	}
	if err := checkPlugMeta(g, p); err != nil {
		return nil, err
	}

	return p, nil
}

// readPlugTensors reads the tensors of PlugParams from the file f of size
// bytes into p, checking each one's type, shape and values.
func readPlugTensors(g *llama.GGUFFile, f *os.File, size int64, p *Plug) error {
	// why says which metadata fields give a tensor its shape, for messages.
	read := func(name string, want []int64, why string, required bool) ([]float32, error) {
		i := g.FindTensor(name)
		if i < 0 {
			if required {
				return nil, fmt.Errorf("tensor %s is missing (%s)", name, why)
			}
			return nil, nil
		}
		t := g.Tensor(i)
		if t.Type != llama.TensorF32 {
			return nil, fmt.Errorf("tensor %s is %s, want f32", name, t.Type)
		}
		if !equalShape(t.Shape, want) {
			return nil, fmt.Errorf("tensor %s has shape %v, but %s: want %v (the metadata contradicts the tensors)", name, t.Shape, why, want)
		}
		off := g.DataOffset() + t.Offset
		if off+t.Size > size {
			return nil, fmt.Errorf("truncated: tensor %s ends at byte %d, the file has %d", name, off+t.Size, size)
		}
		buf := make([]float32, t.Size/4)
		if _, err := f.ReadAt(floatBytes(buf), off); err != nil {
			return nil, fmt.Errorf("read tensor %s: %w", name, err)
		}
		return buf, nil
	}
	for _, pp := range PlugParams {
		required := !pp.Optional
		if pp.Name == "instruction" && p.NInstr == 0 {
			if i := g.FindTensor("instruction"); i >= 0 {
				return fmt.Errorf("pplug.n_instruction is 0 but the file holds an instruction tensor of shape %v (the metadata contradicts the tensors)", g.Tensor(i).Shape)
			}
			p.Instr = []float32{}
			continue
		}
		if pp.Name == "query_adapter.b" {
			required = p.AdapterW != nil
		}
		v, err := read(pp.Name, pp.Shape(p), pp.Why(p), required)
		if err != nil {
			return err
		}
		*pp.Values(p) = v
	}
	if p.AdapterW == nil && p.AdapterB != nil {
		return errors.New("tensor query_adapter.b has no query_adapter.w beside it")
	}
	for _, t := range p.tensors() {
		for _, x := range t.data {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return fmt.Errorf("tensor %s holds a non-finite value", t.name)
			}
		}
	}
	return nil
}

// checkPlugMeta refuses metadata that contradicts itself or the file's
// tensor list: pplug.llm_n_embd against pplug.d_llm, the widths recorded in
// the LLM and encoder identities, the pooling, unknown tensors.
func checkPlugMeta(g *llama.GGUFFile, p *Plug) error {
	kv := ggufKV{g: g}
	if n := int(kv.u32("pplug.llm_n_embd")); kv.err == nil && n != p.DLLM {
		return fmt.Errorf("pplug.llm_n_embd is %d but pplug.d_llm is %d (the metadata contradicts itself)", n, p.DLLM)
	}
	if kv.err != nil {
		return kv.err
	}
	if n, ok := idField(p.LLM, "n_embd="); ok && n != fmt.Sprint(p.DLLM) {
		return fmt.Errorf("pplug.llm names a model with n_embd %s but pplug.d_llm is %d (the metadata contradicts itself)", n, p.DLLM)
	}
	if n, ok := idField(p.Encoder, "n_embd="); ok && n != fmt.Sprint(p.DEnc) {
		return fmt.Errorf("pplug.encoder names an encoder with n_embd %s but pplug.d_enc is %d (the metadata contradicts itself)", n, p.DEnc)
	}
	if pool, ok := idField(p.Encoder, "pool="); ok && p.Pooling != "" && pool != p.Pooling {
		return fmt.Errorf("pplug.encoder names pooling %s but pplug.pooling is %s (the metadata contradicts itself)", pool, p.Pooling)
	}
	for i := range g.NTensors() {
		if name := g.Tensor(i).Name; plugParam(name) == nil {
			return fmt.Errorf("unknown tensor %q (plug format version %d has proj.*, instruction and query_adapter.*)", name, PlugFormatVersion)
		}
	}
	return nil
}

// idField returns the value of the "key=value" part of a model or encoder
// identity (ModelID, Encoder.ID: parts separated by '|').
func idField(id, key string) (string, bool) {
	for part := range strings.SplitSeq(id, "|") {
		if v, ok := strings.CutPrefix(part, key); ok {
			return v, true
		}
	}
	return "", false
}

// equalShape compares shapes ignoring trailing 1s (ggml reports an [n, 1]
// tensor as [n]).
func equalShape(a, b []int64) bool {
	for len(a) > 1 && a[len(a)-1] == 1 {
		a = a[:len(a)-1]
	}
	for len(b) > 1 && b[len(b)-1] == 1 {
		b = b[:len(b)-1]
	}
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// ggufKV reads typed keys, remembering the first error.
type ggufKV struct {
	g   *llama.GGUFFile
	err error
}

func (k *ggufKV) find(key string) int {
	i := k.g.FindKey(key)
	if i < 0 && k.err == nil {
		k.err = fmt.Errorf("key %s is missing", key)
	}
	return i
}

func (k *ggufKV) str(key string) string {
	i := k.find(key)
	if i < 0 {
		return ""
	}
	s, err := k.g.String(i)
	if err != nil && k.err == nil {
		k.err = err
	}
	return s
}

func (k *ggufKV) u32(key string) uint32 {
	i := k.find(key)
	if i < 0 {
		return 0
	}
	v, err := k.g.Uint32(i)
	if err != nil && k.err == nil {
		k.err = err
	}
	return v
}

func (k *ggufKV) f32(key string) float32 {
	i := k.find(key)
	if i < 0 {
		return 0
	}
	v, err := k.g.Float32(i)
	if err != nil && k.err == nil {
		k.err = err
	}
	return v
}

// floatBytes views a float32 slice as bytes (little-endian hosts, as GGUF).
func floatBytes(f []float32) []byte {
	if len(f) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&f[0])), len(f)*4)
}

func norm(x []float32) float32 {
	var s float64
	for _, v := range x {
		s += float64(v) * float64(v)
	}
	return float32(math.Sqrt(s))
}
