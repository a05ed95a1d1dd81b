package train

import (
	"errors"
	"fmt"
	"math"
	"os"

	"github.com/pplug/pplug/llama"
	"github.com/pplug/pplug/persona"
	"github.com/pplug/pplug/traingraph"
)

// Shape is the fixed shape of the training graph.
type Shape struct {
	Batch   int // examples per step
	Tokens  int // positions per example: rows + prompt + target - 1
	Items   int // history items per example (padded)
	Targets int // target tokens per example (padded)
}

// ShapeFor returns the smallest shape that holds every example.
func ShapeFor(plug *persona.Plug, batch int, sets ...[]Example) (Shape, error) {
	s := Shape{Batch: batch}
	for _, ex := range sets {
		for _, e := range ex {
			if len(e.Prompt) == 0 || len(e.Target) == 0 || len(e.Keys) == 0 {
				return s, fmt.Errorf("example %q is empty (prompt %d, target %d, items %d)", e.ID, len(e.Prompt), len(e.Target), len(e.Keys))
			}
			s.Tokens = max(s.Tokens, plug.NRows()+len(e.Prompt)+len(e.Target)-1)
			s.Items = max(s.Items, len(e.Keys))
			s.Targets = max(s.Targets, len(e.Target))
		}
	}
	if s.Tokens == 0 {
		return s, errors.New("no examples")
	}
	if batch <= 0 {
		return s, fmt.Errorf("batch size %d must be positive", batch)
	}
	return s, nil
}

// CheckModel refuses, from its metadata alone, a model whose architecture
// or shape the training graph does not build, naming the ones it does. A
// file that cannot be read passes: loading it reports that better.
func CheckModel(path string) error {
	if _, err := os.Stat(path); err != nil {
		return nil
	}
	if err := traingraph.CheckModel(path); err != nil {
		return fmt.Errorf("%s: %w; train the plug for a model the training graph builds (-m)", path, err)
	}
	return nil
}

// Graph is the training graph for one plug on one model, with the plug's
// parameters living in it.
type Graph struct {
	t     *traingraph.Trainer
	m     *llama.Model
	plug  *persona.Plug
	shape Shape
	bos   llama.Token // -1: the model uses no BOS
	eos   llama.Token
	nv    int
	d     int
}

// GraphOptions configure NewGraphWith.
type GraphOptions struct {
	Threads  int
	TrainTau bool // learn the aggregator temperature
	// EOSBias learns the plug's EOS logit bias (persona.Plug.EOSBias); a
	// plug that has one always keeps learning it.
	EOSBias bool
	// Devices and GPULayers place the graph as llama.cpp's -dev and -ngl
	// (see Options.Devices); none: the CPU alone.
	Devices   []string
	GPULayers int
}

// EOSBiasScale is the factor between the graph's EOS bias parameter and
// the bias: AdamW moves a parameter by about the learning rate per step,
// and a frozen model that never ends a text early needs a bias of several
// nats, so the bias moves EOSBiasScale times faster than the other
// parameters.
const EOSBiasScale = 16

// NewGraph loads the frozen model into a training graph of the given shape
// and copies the plug's parameters in.
func NewGraph(modelPath string, m *llama.Model, plug *persona.Plug, shape Shape, threads int, trainTau bool) (*Graph, error) {
	return NewGraphWith(modelPath, m, plug, shape, GraphOptions{Threads: threads, TrainTau: trainTau})
}

// NewGraphWith is NewGraph with options.
func NewGraphWith(modelPath string, m *llama.Model, plug *persona.Plug, shape Shape, o GraphOptions) (*Graph, error) {
	threads, trainTau := o.Threads, o.TrainTau
	eosBias := o.EOSBias || plug.EOSBias != 0
	if eosBias && m.EOS() < 0 {
		return nil, errors.New("an EOS bias for a model without an EOS token")
	}
	if err := plug.Validate(); err != nil {
		return nil, err
	}
	if plug.DLLM != m.NEmbd() {
		return nil, fmt.Errorf("plug width %d does not match the model's n_embd %d", plug.DLLM, m.NEmbd())
	}
	t, err := traingraph.NewTrainer(modelPath, traingraph.Config{
		Batch: shape.Batch, Tokens: shape.Tokens, Items: shape.Items, Targets: shape.Targets,
		DEnc: plug.DEnc, NInstr: plug.NInstr, NPersona: plug.PersonaRows(), Threads: max(1, threads),
		Scale: plug.Scale, Tau: plug.Tau, Adapter: plug.AdapterW != nil, TrainTau: trainTau,
		EOSBias: eosBias, EOSBiasScale: EOSBiasScale, Devices: o.Devices, GPULayers: o.GPULayers,
	})
	if err != nil {
		return nil, fmt.Errorf("training graph: %w", err)
	}
	g := &Graph{t: t, m: m, plug: plug, shape: shape, bos: -1, eos: m.EOS(), nv: t.NVocab(), d: t.NEmbd()}
	if m.AddBOS() && m.BOS() >= 0 {
		g.bos = m.BOS()
	}
	if g.nv != m.NVocab() {
		t.Free()
		return nil, fmt.Errorf("token_embd has %d rows, the vocabulary %d", g.nv, m.NVocab())
	}
	g.setConstants()
	g.LoadPlug()
	if trainTau {
		g.t.Param(traingraph.LogTau)[0] = float32(math.Log(float64(plug.Tau)))
	}
	return g, nil
}

// Placement is where the scheduler put the training graph's ops.
func (g *Graph) Placement() []traingraph.OpPlacement { return g.t.Placement() }

// Splits is the number of the training graph's splits between backends.
func (g *Graph) Splits() int { return g.t.Splits() }

// Close frees the graph.
func (g *Graph) Close() { g.t.Free() }

// Shape is the graph's shape.
func (g *Graph) Shape() Shape { return g.shape }

// layout is the input layout of an example's prompt (persona.Layout, the
// one generation and chat use; the rows after the prompt's first at tokens)
// and the prompt after BOS.
func (g *Graph) layout(prompt []llama.Token, at int) (persona.Layout, []llama.Token) {
	return persona.NewLayout(g.m, g.plug.NInstr, g.plug.PersonaRows(), prompt, at)
}

func (g *Graph) setConstants() {
	T := g.shape.Tokens
	pos := g.t.InputI32(traingraph.InPos) // [T*B]
	for i := range pos {
		pos[i] = int32(i % T)
	}
	mask := g.t.InputF32(traingraph.InKQMask) // [T_k, T_q]
	ninf := float32(math.Inf(-1))
	for q := range T {
		for k := range T {
			if k <= q {
				mask[q*T+k] = 0
			} else {
				mask[q*T+k] = ninf
			}
		}
	}
	if ev := g.t.InputF32(traingraph.InEOSVec); ev != nil {
		clear(ev)
		ev[g.eos] = 1
	}
}

// placeRows marks where example b's rows sit in layout l: the instruction
// rows in select_instruction [n_instr, T, B], the persona rows in
// select_persona [R, T, B]. Examples differ when they have a context.
func (g *Graph) placeRows(b int, l persona.Layout) {
	T := g.shape.Tokens
	if sel := g.t.InputF32(traingraph.InSelI); sel != nil {
		I := g.plug.NInstr
		for j := range I {
			sel[(b*T+l.InstrAt(j))*I+j] = 1
		}
	}
	selP := g.t.InputF32(traingraph.InSelP)
	R := g.plug.PersonaRows()
	for j := range R {
		selP[(b*T+l.PersonaAt()+j)*R+j] = 1
	}
}

// paramRef pairs a graph parameter with the plug's slice.
type paramRef struct {
	id  traingraph.Param
	dst []float32
}

// params pairs the plug's tensors (persona.PlugParams, the one list of
// them) with the graph's parameters of the same names.
func (g *Graph) params() []paramRef {
	var out []paramRef
	for _, pp := range persona.PlugParams {
		v := *pp.Values(g.plug)
		if len(v) == 0 {
			continue // an absent adapter, no instruction rows
		}
		id, ok := traingraph.ParamByName(pp.Name)
		if !ok {
			panic("traingraph has no parameter " + pp.Name) // TestPlugParamsMatchTheGraph
		}
		out = append(out, paramRef{id, v})
	}
	return out
}

// LoadPlug copies the plug's parameters into the graph.
func (g *Graph) LoadPlug() {
	for _, x := range g.params() {
		copy(g.t.Param(x.id), x.dst)
	}
	if eb := g.t.Param(traingraph.EOSBias); eb != nil {
		eb[0] = g.plug.EOSBias / EOSBiasScale
	}
}

// StorePlug copies the graph's parameters back into the plug.
func (g *Graph) StorePlug() {
	for _, x := range g.params() {
		copy(x.dst, g.t.Param(x.id))
	}
	if lt := g.t.Param(traingraph.LogTau); lt != nil {
		g.plug.Tau = float32(math.Exp(float64(lt[0])))
	}
	if eb := g.t.Param(traingraph.EOSBias); eb != nil {
		g.plug.EOSBias = eb[0] * EOSBiasScale
	}
}

// Fill writes a batch of at most Shape.Batch examples into the graph's
// inputs and returns the number of target tokens.
func (g *Graph) Fill(batch []Example) (int, error) {
	s := g.shape
	if len(batch) > s.Batch {
		return 0, fmt.Errorf("%d examples for a batch of %d", len(batch), s.Batch)
	}
	g.clearInputs()
	targets := 0
	for b := range s.Batch {
		if b >= len(batch) {
			g.t.InputF32(traingraph.InHMask)[b*s.Items] = 0 // a padding example attends to one zero item
			l, _ := g.layout(nil, 0)
			g.placeRows(b, l)
			continue
		}
		e := batch[b]
		if len(e.Keys) > s.Items || g.plug.NRows()+len(e.Prompt)+len(e.Target)-1 > s.Tokens || len(e.Target) > s.Targets {
			return 0, fmt.Errorf("example %q does not fit the graph's shape %+v", e.ID, s)
		}
		if err := g.fillHistory(b, e); err != nil {
			return 0, err
		}
		if err := g.fillTokens(b, e); err != nil {
			return 0, err
		}
		targets += len(e.Target)
	}
	if targets == 0 {
		return 0, errors.New("a batch without targets")
	}
	g.t.InputF32(traingraph.InLScale)[0] = float32(s.Targets*s.Batch) / float32(targets)
	return targets, nil
}

// clearInputs zeroes the batch inputs; the history mask starts fully
// masked.
func (g *Graph) clearInputs() {
	clear(g.t.InputI32(traingraph.InTokens))
	clear(g.t.InputI32(traingraph.InTgtPos))
	for _, in := range []traingraph.Input{traingraph.InTokMask, traingraph.InSelI, traingraph.InSelP,
		traingraph.InHist, traingraph.InQuery, traingraph.InLabels} {
		clear(g.t.InputF32(in))
	}
	hmask := g.t.InputF32(traingraph.InHMask)
	ninf := float32(math.Inf(-1))
	for i := range hmask {
		hmask[i] = ninf
	}
}

// fillHistory writes example b's item and query embeddings.
func (g *Graph) fillHistory(b int, e Example) error {
	N, dEnc := g.shape.Items, g.plug.DEnc
	hist := g.t.InputF32(traingraph.InHist)
	hmask := g.t.InputF32(traingraph.InHMask)
	for i, k := range e.Keys {
		if len(k) != dEnc {
			return fmt.Errorf("example %q: item embedding of %d values, the plug expects %d", e.ID, len(k), dEnc)
		}
		copy(hist[(b*N+i)*dEnc:], k)
		hmask[b*N+i] = 0
	}
	if len(e.Query) != dEnc {
		return fmt.Errorf("example %q: query embedding of %d values, the plug expects %d", e.ID, len(e.Query), dEnc)
	}
	copy(g.t.InputF32(traingraph.InQuery)[b*dEnc:], e.Query)
	return nil
}

// fillTokens writes example b's input in the layout (persona.Layout):
// [BOS][context][rows][rest of the prompt][target but its last token],
// and its targets.
func (g *Graph) fillTokens(b int, e Example) error {
	T, M := g.shape.Tokens, g.shape.Targets
	seq := g.t.InputI32(traingraph.InTokens)[b*T : (b+1)*T]
	msk := g.t.InputF32(traingraph.InTokMask)[b*T : (b+1)*T]
	tpos := g.t.InputI32(traingraph.InTgtPos)
	labels := g.t.InputF32(traingraph.InLabels)
	l, prompt := g.layout(e.Prompt, e.At)
	g.placeRows(b, l)
	if l.BOS {
		seq[0], msk[0] = g.bos, 1
	}
	for i, tk := range prompt {
		seq[l.BodyAt(i)], msk[l.BodyAt(i)] = tk, 1
	}
	p := l.Len()
	first := p - 1 // predicts target[0]
	for _, tk := range e.Target[:len(e.Target)-1] {
		seq[p], msk[p] = tk, 1
		p++
	}
	for j, tk := range e.Target {
		if tk < 0 || int(tk) >= g.nv {
			return fmt.Errorf("example %q: target token %d outside the vocabulary", e.ID, tk)
		}
		row := b*M + j
		tpos[row] = int32(b*T + first + j)
		labels[row*g.nv+int(tk)] = 1
	}
	for _, tk := range seq[:p] {
		if tk < 0 || int(tk) >= g.nv {
			return fmt.Errorf("example %q: token %d outside the vocabulary", e.ID, tk)
		}
	}
	return nil
}

// Forward returns the mean target NLL of the filled batch.
func (g *Graph) Forward() (float64, error) {
	l, err := g.t.Compute(false)
	return float64(l), err
}

// Backward runs forward and backward; the gradients are in Grad.
func (g *Graph) Backward() (float64, error) {
	l, err := g.t.Compute(true)
	return float64(l), err
}

// Param and Grad give views of a graph parameter and its gradient.
func (g *Graph) Param(id traingraph.Param) []float32 { return g.t.Param(id) }
func (g *Graph) Grad(id traingraph.Param) []float32  { return g.t.Grad(id) }

// Rows is the persona rows of each example of the last compute
// [B][NPersona][d_llm].
func (g *Graph) Rows() []float32 { return g.t.Rows(g.shape.Batch) }

// Logits computes every position's logits of the filled batch [B][T][n_vocab].
func (g *Graph) Logits() ([]float32, error) { return g.t.Logits(g.shape.Batch, g.shape.Tokens) }

// ParamIDs lists the parameters the graph trains.
func (g *Graph) ParamIDs() []traingraph.Param {
	var ids []traingraph.Param
	for id := range traingraph.NParams {
		if g.t.Param(id) != nil {
			ids = append(ids, id)
		}
	}
	return ids
}
