package train

import (
	"context"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/pplug/pplug/cgo"
	"github.com/pplug/pplug/eval/synthusers"
	"github.com/pplug/pplug/internal/testenv"
	"github.com/pplug/pplug/kernels"
	"github.com/pplug/pplug/llama"
	"github.com/pplug/pplug/llama/synth"
	"github.com/pplug/pplug/persona"
	"github.com/pplug/pplug/traingraph"
)

// testExamples makes n examples with random unit history vectors.
func testExamples(t testing.TB, m *llama.Model, dEnc, n int, seed uint64) []Example {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	unit := func() []float32 {
		v := make([]float32, dEnc)
		var s float64
		for i := range v {
			v[i] = float32(r.NormFloat64())
			s += float64(v[i] * v[i])
		}
		for i := range v {
			v[i] /= float32(math.Sqrt(s))
		}
		return v
	}
	inputs := []string{"Once upon a time", "One day, a little girl", "The dog ran to the", "Tom and Sue went"}
	outputs := []string{" there was a cat.", " saw a big red ball in the park.", " park to play.", " to the beach with a ball."}
	var ex []Example
	for i := range n {
		p, tg, err := persona.ExampleTokens(m, inputs[i%len(inputs)], outputs[i%len(outputs)])
		if err != nil {
			t.Fatal(err)
		}
		e := Example{ID: string(rune('a' + i)), Prompt: p, Target: tg, Query: unit()}
		for range 2 + i%3 {
			e.Keys = append(e.Keys, unit())
		}
		ex = append(ex, e)
	}
	return ex
}

func testPlug(t testing.TB, m *llama.Model, dEnc int, adapter bool) *persona.Plug {
	t.Helper()
	return testPlugRows(t, m, dEnc, adapter, 1)
}

// testPlugRows is testPlug with nPersona persona rows.
func testPlugRows(t testing.TB, m *llama.Model, dEnc int, adapter bool, nPersona int) *persona.Plug {
	t.Helper()
	scale, err := persona.TokenEmbeddingScale(m)
	if err != nil {
		t.Fatal(err)
	}
	p, err := persona.NewPlug(dEnc, m.NEmbd(), scale, persona.PlugOptions{Seed: 3, Adapter: adapter, NPersona: nPersona})
	if err != nil {
		t.Fatal(err)
	}
	for i := range p.B1 {
		p.B1[i] = 0.05 * float32(math.Sin(float64(i)))
	}
	for i := range p.B2 {
		p.B2[i] = 0.02 * float32(math.Cos(float64(i)))
	}
	for i := range p.AdapterW {
		p.AdapterW[i] = 0.02 * float32(math.Sin(float64(3*i)))
	}
	return p
}

func loadModel(t testing.TB, path string) *llama.Model {
	t.Helper()
	m, err := llama.LoadModel(context.Background(), path, llama.ModelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// synthUsersFor writes the synthetic LaMP users of o to a temporary folder
// (returned with the data set) and opens an encoder over m (one thread),
// closed with the test.
func synthUsersFor(t testing.TB, m *llama.Model, o synthusers.Options) (string, synthusers.Dataset, *persona.Encoder) {
	t.Helper()
	dir := t.TempDir()
	ds, err := synthusers.Generate(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := synthusers.Write(dir, ds); err != nil {
		t.Fatal(err)
	}
	enc, err := persona.NewEncoder(m, persona.EncoderOptions{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { enc.Close() })
	return dir, ds, enc
}

// models: the real stories260K (llama, F32) and a random-weight qwen2
// (biases, NEOX rope, grouped-query attention, F16 weights).
func testModels(t *testing.T) map[string]string {
	q := filepath.Join(t.TempDir(), "qwen2.gguf")
	err := synth.Write(q, testenv.Phi3Vocab(t), synth.Spec{Arch: "qwen2", NEmbd: 64, NLayer: 2, NHead: 4, NHeadKV: 2, NFF: 96,
		NVocab: 0, Type: cgo.TypeF16, Std: 0.05, Seed: 11}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{"stories260K": testenv.Stories260K(t), "qwen2-f16": q}
}

// TestGraphMatchesLlamaCpp checks the training graph's forward against
// llama.cpp on the same input, and its persona rows against the kernels.
func TestGraphMatchesLlamaCpp(t *testing.T) {
	for name, path := range testModels(t) {
		t.Run(name, func(t *testing.T) {
			// stories260K with the paper's one persona row, qwen2 with three.
			nPersona := map[string]int{"stories260K": 1, "qwen2-f16": 3}[name]
			worst := graphParity(t, path, nPersona)
			t.Logf("%s: logits, training graph vs llama.cpp: max abs difference %.3g", name, worst)
			limit := 1e-4
			if name == "qwen2-f16" {
				limit = 2e-3 // llama.cpp rounds activations to F16 for F16 matmuls
			}
			if worst > limit {
				t.Fatalf("training graph logits differ from llama.cpp by %.3g", worst)
			}
		})
	}
}

// graphParity builds the training graph for three examples with a plug of
// nPersona persona rows (and an EOS bias), checks the graph's persona rows
// against the plug-in's kernels, and returns the largest difference between
// the graph's logits and llama.cpp's decoding the same rows as embeddings.
func graphParity(t *testing.T, path string, nPersona int) float64 {
	t.Helper()
	m := loadModel(t, path)
	const dEnc = 24
	plug := testPlugRows(t, m, dEnc, true, nPersona)
	// A plug with an EOS bias: the graph adds it to the EOS logit
	// as a sampler with Plug.EOSBias does.
	plug.EOSBias = 1.5
	ex := testExamples(t, m, dEnc, 3, 5)
	shape, err := ShapeFor(plug, 3, ex)
	if err != nil {
		t.Fatal(err)
	}
	g, err := NewGraph(path, m, plug, shape, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, err := g.Fill(ex); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Forward(); err != nil {
		t.Fatal(err)
	}
	graphRows := append([]float32(nil), g.Rows()...)
	logits, err := g.Logits()
	if err != nil {
		t.Fatal(err)
	}
	// Persona rows: the graph against the plug-in's CPU kernels.
	b, _ := kernels.Open("cpu", kernels.Options{Threads: 1})
	defer b.Close()
	d, nv, T := m.NEmbd(), m.NVocab(), shape.Tokens
	var rowErr float64
	for i, e := range ex {
		u, err := plug.NewHistory(b, nil, e.Keys)
		if err != nil {
			t.Fatal(err)
		}
		rows, _, err := u.Rows(e.Query)
		u.Close()
		if err != nil {
			t.Fatal(err)
		}
		pu := rows[plug.NInstr*d:]
		if len(pu) != nPersona*d {
			t.Fatalf("%d persona values, want %d rows", len(pu), nPersona)
		}
		for j := range pu {
			rowErr = math.Max(rowErr, math.Abs(float64(pu[j]-graphRows[i*nPersona*d+j]))/(1+math.Abs(float64(pu[j]))))
		}
	}
	t.Logf("persona rows, graph vs kernels: max relative error %.3g", rowErr)
	if rowErr > 1e-4 {
		t.Fatalf("graph rows differ from the kernels by %.3g", rowErr)
	}
	// Logits: the graph against llama.cpp decoding [BOS][I][P_u][prompt][target].
	// F32 KV cache and no flash attention: llama.cpp's defaults (F16
	// cache, CPU flash attention in F16) move logits by ~1e-2.
	c, err := m.NewContext(llama.ContextOptions{NCtx: 256, Threads: 1, KVF32: true, FlashAttn: llama.FlashAttnOff})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var worst float64
	for i, e := range ex {
		rows := append(append([]float32(nil), plug.Instr...), graphRows[i*nPersona*d:(i+1)*nPersona*d]...)
		in := persona.Inputs(m, rows, e.Prompt)
		in = append(in, llama.TokenInput(e.Target[:len(e.Target)-1]...))
		c.ClearMemory()
		n := 0
		_, err := c.DecodeInputs(context.Background(), in, llama.DecodeOptions{Output: llama.OutputAll,
			OnOutput: func(pos llama.Pos, l []float32) error {
				gl := logits[(i*T+int(pos))*nv : (i*T+int(pos)+1)*nv]
				for k := range l {
					want := l[k]
					if llama.Token(k) == m.EOS() {
						want += plug.EOSBias
					}
					worst = math.Max(worst, math.Abs(float64(want-gl[k])))
				}
				n++
				return nil
			}})
		if err != nil {
			t.Fatal(err)
		}
		if n != plug.NRows()+len(e.Prompt)+len(e.Target)-1 {
			t.Fatalf("compared %d positions", n)
		}
	}
	return worst
}

// TestGradientMatchesFiniteDifferences checks the backward pass: the
// gradient of the loss with respect to the instruction row and the persona
// row (through b2: P_u = scale * sum_i w_i (W2 g_i + b2) with sum w = 1) and
// a few projector weights, against central differences.
func TestGradientMatchesFiniteDifferences(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, typ cgo.GGMLType) string {
		p := filepath.Join(dir, name)
		err := synth.Write(p, testenv.Phi3Vocab(t), synth.Spec{Arch: "qwen2", NEmbd: 64, NLayer: 2, NHead: 4, NHeadKV: 2, NFF: 96,
			Type: typ, Std: 0.05, Seed: 12}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	q32, q8 := write("qwen2-f32.gguf", cgo.TypeF32), write("qwen2-q8.gguf", cgo.TypeQ8_0)
	grads := map[string]map[traingraph.Param][]float32{}
	for _, tc := range []struct {
		name, path string
		fd         bool
	}{{"stories260K", testenv.Stories260K(t), true}, {"qwen2-f32", q32, true}, {"qwen2-q8_0", q8, false}} {
		t.Run(tc.name, func(t *testing.T) { grads[tc.name] = checkGradients(t, tc.path, tc.fd) })
	}
	// Q8_0 weights stay quantized in the graph and ggml quantizes the
	// activations they multiply, which makes the loss a step function at
	// the scale of finite differences. Its backward pass is checked against
	// the same weights in F32 instead.
	var worst float64
	for id, g32 := range grads["qwen2-f32"] {
		g8 := grads["qwen2-q8_0"][id]
		var num, den float64
		for i := range g32 {
			d := float64(g8[i] - g32[i])
			num += d * d
			den += float64(g32[i]) * float64(g32[i])
		}
		rel := math.Sqrt(num / math.Max(den, 1e-30))
		worst = math.Max(worst, rel)
		if rel > 0.1 {
			t.Errorf("%s: Q8_0 gradient differs from the F32 one by %.3g (relative L2)", id, rel)
		}
	}
	t.Logf("Q8_0 vs F32 weights: gradients differ by at most %.3g (relative L2 per parameter)", worst)
}

// checkGradients runs one backward pass and returns the gradients; with fd
// it compares sampled entries with central differences.
func checkGradients(t *testing.T, path string, fd bool) map[traingraph.Param][]float32 {
	m := loadModel(t, path)
	const dEnc = 16
	plug := testPlugRows(t, m, dEnc, true, 2)
	plug.EOSBias = 2
	ex := testExamples(t, m, dEnc, 2, 9)
	shape, _ := ShapeFor(plug, 2, ex)
	g, err := NewGraphWith(path, m, plug, shape, GraphOptions{Threads: 1, TrainTau: true, EOSBias: true})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, err := g.Fill(ex); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Backward(); err != nil {
		t.Fatal(err)
	}
	out := map[traingraph.Param][]float32{}
	for _, id := range g.ParamIDs() {
		out[id] = append([]float32(nil), g.Grad(id)...)
	}
	if !fd {
		return out
	}
	r := rand.New(rand.NewPCG(2, 2))
	worst, worstAbs := 0.0, 0.0
	checked := 0
	for _, id := range []traingraph.Param{traingraph.Instr, traingraph.B2, traingraph.W1, traingraph.W2, traingraph.AdaptW, traingraph.LogTau, traingraph.EOSBias} {
		grad := out[id]
		param := g.Param(id)
		for range 6 {
			j := r.IntN(len(param))
			orig := param[j]
			h := float32(1e-2) * max(1, float32(math.Abs(float64(orig))))
			param[j] = orig + h
			lp, err := g.Forward()
			if err != nil {
				t.Fatal(err)
			}
			param[j] = orig - h
			lm, err := g.Forward()
			if err != nil {
				t.Fatal(err)
			}
			param[j] = orig
			fd := (lp - lm) / (2 * float64(h))
			an := float64(grad[j])
			abs := math.Abs(fd - an)
			// float32 losses make central differences noisy near zero: judge
			// entries with a visible gradient by relative error, the rest
			// by absolute error.
			rel := abs / math.Max(1e-2, math.Max(math.Abs(fd), math.Abs(an)))
			worst, worstAbs = math.Max(worst, rel), math.Max(worstAbs, abs)
			checked++
			if rel > 0.05 && abs > 5e-4 {
				t.Errorf("param %s[%d]: backward %.6g, finite difference %.6g", id, j, an, fd)
			}
		}
	}
	t.Logf("%d gradient entries checked against central differences: max relative difference %.3g, max absolute %.3g", checked, worst, worstAbs)
	return out
}

// TestFillFollowsTheLayout: the training graph puts BOS, the instruction
// rows, the persona row and the prompt at the positions generation puts
// them (persona.Inputs, the layout chat uses too): position by position,
// the row generation decodes equals the token embedding of the token
// training reads there, or the row training selects there.
func TestFillFollowsTheLayout(t *testing.T) {
	for name, path := range testModels(t) {
		t.Run(name, func(t *testing.T) {
			m := loadModel(t, path)
			const dEnc = 8
			plug := testPlug(t, m, dEnc, false)
			plug.NInstr = 2
			plug.Instr = make([]float32, 2*m.NEmbd())
			ex := testExamples(t, m, dEnc, 2, 9)
			shape, err := ShapeFor(plug, 2, ex)
			if err != nil {
				t.Fatal(err)
			}
			g, err := NewGraph(path, m, plug, shape, 1, false)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			if _, err := g.Fill(ex); err != nil {
				t.Fatal(err)
			}
			d, T, R := m.NEmbd(), shape.Tokens, plug.NRows()
			toks := g.t.InputI32(traingraph.InTokens)
			mask := g.t.InputF32(traingraph.InTokMask)
			selI := g.t.InputF32(traingraph.InSelI)
			selP := g.t.InputF32(traingraph.InSelP)
			for b, e := range ex {
				// Distinct rows: row j is j+1 everywhere.
				rows := make([]float32, R*d)
				for j := range R {
					for k := range d {
						rows[j*d+k] = float32(j + 1)
					}
				}
				in := persona.Inputs(m, rows, e.Prompt)
				if len(in) != 1 || in[0].Embd == nil {
					t.Fatalf("generation input is %d runs, want one run of rows", len(in))
				}
				gen := in[0].Embd
				n := len(gen) / d
				if want := len(e.Prompt) + R; n != want {
					t.Fatalf("generation has %d positions, want %d", n, want)
				}
				for p := range n {
					want := gen[p*d : (p+1)*d]
					i := b*T + p
					var got []float32
					switch {
					case mask[i] == 1:
						emb, err := m.TokenEmbeddings([]llama.Token{llama.Token(toks[i])})
						if err != nil {
							t.Fatal(err)
						}
						got = emb
					case selP[i] == 1:
						got = rows[(R-1)*d : R*d]
					default:
						j := -1
						for k := range plug.NInstr {
							if selI[p*plug.NInstr+k] == 1 {
								j = k
							}
						}
						if j < 0 {
							t.Fatalf("example %d, position %d: neither a token nor a row in training", b, p)
						}
						got = rows[j*d : (j+1)*d]
					}
					if !slices.Equal(got, want) {
						t.Fatalf("example %d, position %d: training and generation disagree on what goes there", b, p)
					}
				}
			}
		})
	}
}

// TestPlugParamsMatchTheGraph: every tensor of persona.PlugParams (the one
// list of a plug's parameters) is a parameter of the training graph with
// the same name and as many values, and the graph has no other plug
// parameter (log_tau and eos_bias are kept as pplug.tau and pplug.eos_bias).
func TestPlugParamsMatchTheGraph(t *testing.T) {
	path := testenv.Stories260K(t)
	m := loadModel(t, path)
	const dEnc = 8
	plug := testPlug(t, m, dEnc, true) // with the optional adapter
	ex := testExamples(t, m, dEnc, 1, 3)
	shape, err := ShapeFor(plug, 1, ex)
	if err != nil {
		t.Fatal(err)
	}
	g, err := NewGraph(path, m, plug, shape, 1, true)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	seen := map[traingraph.Param]bool{}
	for _, pp := range persona.PlugParams {
		id, ok := traingraph.ParamByName(pp.Name)
		if !ok || id.String() != pp.Name {
			t.Fatalf("plug tensor %s has no graph parameter", pp.Name)
		}
		n := int64(1)
		for _, d := range pp.Shape(plug) {
			n *= d
		}
		if got := len(g.Param(id)); int64(got) != n {
			t.Errorf("%s: the graph holds %d values, the plug's shape %v %d", pp.Name, got, pp.Shape(plug), n)
		}
		seen[id] = true
	}
	for id := range traingraph.NParams {
		if !seen[id] && id != traingraph.LogTau && id != traingraph.EOSBias {
			t.Errorf("graph parameter %s is no plug tensor", id)
		}
	}
	if traingraph.Param(99).String() != "Param(99)" || traingraph.InSelP.String() != "select_persona" {
		t.Error("enum names")
	}
}
