package persona

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pplug/pplug/cgo"
	"github.com/pplug/pplug/internal/testenv"
	"github.com/pplug/pplug/kernels"
	"github.com/pplug/pplug/llama"
	"github.com/pplug/pplug/llama/synth"
	"github.com/pplug/pplug/persona/profile"
)

func loadModel(t testing.TB, path string) *llama.Model {
	t.Helper()
	m, err := llama.LoadModel(context.Background(), path, llama.ModelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// bertModel writes a small random-weight BERT encoder with the real BGE
// WordPiece vocabulary.
func bertModel(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bert.gguf")
	err := synth.Write(p, testenv.BertVocab(t), synth.Spec{
		Arch: "bert", NEmbd: 64, NLayer: 2, NHead: 4, NFF: 128, NCtx: 128,
		Type: cgo.TypeF32, Pooling: cgo.PoolingCLS, Std: 0.1, Seed: 7,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var historyTexts = []string{
	"Lily played with her red ball in the park.",
	"Max the dog found a big stick and ran to Lily.",
	"Tom built a spaceship out of boxes and flew to the moon with his robot.",
	"The robot beeped. Tom looked at the stars and smiled at the moon.",
	"Lily and Max went home after a long sunny day in the park.",
	"Once upon a time there was a little cat who liked milk.",
	"The cat drank the milk and went to sleep in the warm sun.",
	"A short one.",
	strings.Repeat("A very long story about a girl and her dog who walked and walked. ", 30),
}

func maxDiff(a, b []float32) float64 {
	d := 0.0
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

// Both encoder paths: the LLM itself (stories260K, mean pooling) and a BERT
// encoder (CLS pooling).
func encoders(t *testing.T) map[string]*Encoder {
	out := map[string]*Encoder{}
	llm := loadModel(t, testenv.Stories260K(t))
	e, err := NewEncoder(llm, EncoderOptions{Threads: 1, MaxTokens: 128, MaxSeqs: 4, BatchTokens: 512})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	out["llm"] = e
	b, err := OpenEncoder(context.Background(), bertModel(t), EncoderOptions{Threads: 1, MaxSeqs: 4, BatchTokens: 512})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	out["bert"] = b
	return out
}

func TestBatchedEncodingEqualsSequential(t *testing.T) {
	for name, enc := range encoders(t) {
		t.Run(name, func(t *testing.T) {
			if name == "bert" && enc.PoolingName() != "cls" {
				t.Fatalf("BERT encoder pools with %s, want the model's cls", enc.PoolingName())
			}
			if name == "llm" && enc.PoolingName() != "mean" {
				t.Fatalf("LLM encoder pools with %s, want mean", enc.PoolingName())
			}
			ctx := context.Background()
			before := enc.Decodes()
			batched, err := enc.Encode(ctx, historyTexts, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			batchDecodes := enc.Decodes() - before
			worst := 0.0
			for i, text := range historyTexts {
				one, err := enc.EncodeOne(ctx, text, "")
				if err != nil {
					t.Fatal(err)
				}
				if n := norm(one); math.Abs(float64(n)-1) > 1e-5 {
					t.Fatalf("vector %d has norm %v", i, n)
				}
				worst = math.Max(worst, maxDiff(batched[i], one))
			}
			t.Logf("%s: %d texts in %d decodes; max |batched - one at a time| = %.3g", name, len(historyTexts), batchDecodes, worst)
			if worst >= 1e-4 {
				t.Fatalf("batched and sequential encodings differ by %.3g", worst)
			}
			if batchDecodes >= int64(len(historyTexts)) {
				t.Fatalf("%d decodes for %d texts: not batched", batchDecodes, len(historyTexts))
			}
			if maxDiff(batched[0], batched[2]) < 1e-3 {
				t.Fatal("different texts gave the same vector")
			}
			// A prefix changes the vector (the query path).
			q, _ := enc.EncodeOne(ctx, historyTexts[0], DefaultQueryPrefix)
			if maxDiff(q, batched[0]) < 1e-4 {
				t.Fatal("the query prefix had no effect")
			}
		})
	}
}

func TestEncoderTruncatesLongItems(t *testing.T) {
	m := loadModel(t, testenv.Stories260K(t))
	e, err := NewEncoder(m, EncoderOptions{Threads: 1, MaxTokens: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	toks, err := e.tokens(strings.Repeat("a long text ", 100))
	if err != nil {
		t.Fatal(err)
	}
	if len(toks) != 16 {
		t.Fatalf("%d tokens after truncation, want 16", len(toks))
	}
	if _, err := e.Encode(context.Background(), []string{"bad \xff"}, "", nil); err == nil {
		t.Fatal("invalid UTF-8 was encoded")
	}
}

func newTestPlug(t testing.TB, m *llama.Model, dEnc int, seed uint64) *Plug {
	t.Helper()
	return newTestPlugRows(t, m, dEnc, seed, 1)
}

func newTestPlugRows(t testing.TB, m *llama.Model, dEnc int, seed uint64, nPersona int) *Plug {
	t.Helper()
	scale, err := TokenEmbeddingScale(m)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPlug(dEnc, m.NEmbd(), scale, PlugOptions{Seed: seed, Adapter: true, NPersona: nPersona})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPlugFileRoundTripAndRefusals(t *testing.T) {
	m := loadModel(t, testenv.Stories260K(t))
	p := newTestPlug(t, m, 48, 3)
	p.Task, p.Encoder, p.LLM, p.QueryPrefix = "LaMP_5", "enc-id", "llm-id", "prefix: "
	p.Meta["steps"] = "12"
	for i := range p.AdapterW {
		p.AdapterW[i] = float32(i%7) * 1e-3
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "p.gguf")
	if err := p.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	q, err := ReadPlug(path)
	if err != nil {
		t.Fatal(err)
	}
	same := func(name string, a, b []float32) {
		if len(a) != len(b) {
			t.Fatalf("%s: %d values read back, %d written", name, len(b), len(a))
		}
		for i := range a {
			if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
				t.Fatalf("%s[%d]: %v read back, %v written", name, i, b[i], a[i])
			}
		}
	}
	same("w1", p.W1, q.W1)
	same("b1", p.B1, q.B1)
	same("w2", p.W2, q.W2)
	same("b2", p.B2, q.B2)
	same("instruction", p.Instr, q.Instr)
	same("adapter w", p.AdapterW, q.AdapterW)
	same("adapter b", p.AdapterB, q.AdapterB)
	if q.DEnc != p.DEnc || q.DLLM != p.DLLM || q.NInstr != p.NInstr || q.Tau != p.Tau || q.Scale != p.Scale ||
		q.Task != p.Task || q.Encoder != p.Encoder || q.LLM != p.LLM || q.QueryPrefix != p.QueryPrefix || q.Meta["steps"] != "12" {
		t.Fatalf("metadata changed: wrote %+v, read %+v", p, q)
	}
	// Rewriting what was read gives the same bytes.
	path2 := filepath.Join(dir, "p2.gguf")
	if err := q.WriteFile(path2); err != nil {
		t.Fatal(err)
	}
	b1, _ := os.ReadFile(path)
	b2, _ := os.ReadFile(path2)
	if string(b1) != string(b2) {
		t.Fatal("a plug written, read and written again is not byte-identical")
	}

	// Wrong dimensions are refused against the model.
	if q.EOSBias != 0 || q.RetrieveK != 0 || (Request{EOSBias: q.EOSBias}).LogitBias(m) != nil {
		t.Fatalf("a plug without eos_bias or retrieve_k read back %v, %d", q.EOSBias, q.RetrieveK)
	}
	// The optional EOS bias and retrieval depth round-trip, change the
	// checksum and become the sampler's bias on EOS.
	q.EOSBias, q.RetrieveK = 6.25, 2
	if q.Checksum() == p.Checksum() {
		t.Fatal("eos_bias and retrieve_k do not change the checksum")
	}
	path3 := filepath.Join(dir, "p3.gguf")
	if err := q.WriteFile(path3); err != nil {
		t.Fatal(err)
	}
	r, err := ReadPlug(path3)
	if err != nil {
		t.Fatal(err)
	}
	if r.EOSBias != 6.25 || r.RetrieveK != 2 || r.Checksum() != q.Checksum() {
		t.Fatalf("read back eos_bias %v, retrieve_k %d", r.EOSBias, r.RetrieveK)
	}
	if lb := (Request{EOSBias: r.EOSBias}).LogitBias(m); len(lb) != 1 || lb[m.EOS()] != 6.25 {
		t.Fatalf("logit bias %v", lb)
	}
	for _, bad := range []func(*Plug){func(x *Plug) { x.EOSBias = float32(math.Inf(1)) }, func(x *Plug) { x.RetrieveK = -1 }} {
		x := *r
		bad(&x)
		if err := x.WriteFile(filepath.Join(dir, "bad.gguf")); err == nil {
			t.Errorf("wrote a plug with eos_bias %v, retrieve_k %d", x.EOSBias, x.RetrieveK)
		}
	}
	q.EOSBias, q.RetrieveK = 0, 0
	// A plug with three persona rows round-trips too.
	p3 := newTestPlugRows(t, m, 48, 4, 3)
	if err := p3.WriteFile(filepath.Join(dir, "r3.gguf")); err != nil {
		t.Fatal(err)
	}
	r3, err := ReadPlug(filepath.Join(dir, "r3.gguf"))
	if err != nil || r3.NPersona != 3 || r3.NRows() != 4 || r3.Checksum() != p3.Checksum() || r3.Checksum() == p.Checksum() {
		t.Fatalf("three persona rows read back: %v %+v", err, r3)
	}
	same("w2 of three rows", p3.W2, r3.W2)
	if _, err := NewPlug(48, m.NEmbd(), 1, PlugOptions{NPersona: MaxPersonaRows + 1}); err == nil {
		t.Error("made a plug with too many persona rows")
	}

	if err := q.CheckModel(m.NEmbd()+1, 48); err == nil || !strings.Contains(err.Error(), "n_embd") {
		t.Fatalf("wrong d_llm: %v", err)
	}
	if err := q.CheckModel(m.NEmbd(), 47); err == nil {
		t.Fatal("wrong d_enc accepted")
	}
	// A truncated plug, a model GGUF and a text file are refused.
	trunc := filepath.Join(dir, "trunc.gguf")
	os.WriteFile(trunc, b1[:len(b1)-100], 0o644)
	if _, err := ReadPlug(trunc); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("truncated plug: %v", err)
	}
	head := filepath.Join(dir, "head.gguf")
	os.WriteFile(head, b1[:200], 0o644)
	if _, err := ReadPlug(head); err == nil {
		t.Fatal("a plug cut inside its header was read")
	}
	if _, err := ReadPlug(testenv.Stories260K(t)); !errors.Is(err, ErrNotPlug) {
		t.Fatalf("model as plug: %v, want ErrNotPlug", err)
	}
	txt := filepath.Join(dir, "x.txt")
	os.WriteFile(txt, []byte("hello world"), 0o644)
	if _, err := ReadPlug(txt); !errors.Is(err, ErrNotPlug) {
		t.Fatalf("text as plug: %v", err)
	}
	if _, err := ReadPlug(filepath.Join(dir, "missing.gguf")); err == nil {
		t.Fatal("missing plug read")
	}
}

// TestPersonaRowsMatchReference checks the whole plug-in path (projector,
// aggregator, query adapter, instruction rows, three persona rows) against a
// float64 reference written here from the formulas.
func TestPersonaRowsMatchReference(t *testing.T) {
	m := loadModel(t, testenv.Stories260K(t))
	const dEnc, n, R = 24, 37, 3
	p := newTestPlugRows(t, m, dEnc, 5, R)
	if p.NRows() != p.NInstr+R {
		t.Fatalf("%d rows for %d instruction and %d persona rows", p.NRows(), p.NInstr, R)
	}
	p.Tau = 0.3
	for i := range p.AdapterW {
		p.AdapterW[i] = float32(math.Sin(float64(i))) * 0.05
	}
	for i := range p.B1 {
		p.B1[i] = float32(math.Cos(float64(i))) * 0.1
	}
	for i := range p.B2 {
		p.B2[i] = float32(math.Sin(float64(3*i))) * 0.01
	}
	keys := make([][]float32, n)
	for i := range keys {
		keys[i] = make([]float32, dEnc)
		for j := range keys[i] {
			keys[i][j] = float32(math.Sin(float64(i*dEnc+j) * 0.37))
		}
		normalize(keys[i])
	}
	q := make([]float32, dEnc)
	for j := range q {
		q[j] = float32(math.Cos(float64(j) * 0.11))
	}
	normalize(q)

	b, err := kernels.Open("cpu", kernels.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	u, err := p.NewHistory(b, nil, keys)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	rows, weights, err := u.Rows(q)
	if err != nil {
		t.Fatal(err)
	}

	// float64 reference
	d := p.DLLM
	qa := make([]float64, dEnc)
	var qn float64
	for i := range dEnc {
		s := float64(p.AdapterB[i])
		for j := range dEnc {
			s += float64(p.AdapterW[i*dEnc+j]) * float64(q[j])
		}
		qa[i] = float64(q[i]) + s
		qn += qa[i] * qa[i]
	}
	for i := range qa {
		qa[i] /= math.Sqrt(qn)
	}
	logits := make([]float64, n)
	mx := math.Inf(-1)
	for i, k := range keys {
		for j := range dEnc {
			logits[i] += qa[j] * float64(k[j])
		}
		logits[i] /= float64(p.Tau)
		mx = math.Max(mx, logits[i])
	}
	var z float64
	w := make([]float64, n)
	for i := range w {
		w[i] = math.Exp(logits[i] - mx)
		z += w[i]
	}
	pu := make([]float64, R*d)
	for i, k := range keys {
		w[i] /= z
		hidden := make([]float64, d)
		for o := range d {
			s := float64(p.B1[o])
			for j := range dEnc {
				s += float64(p.W1[o*dEnc+j]) * float64(k[j])
			}
			hidden[o] = 0.5 * s * (1 + math.Erf(s/math.Sqrt2))
		}
		for o := range R * d { // row o/d, its projector's output o%d
			s := float64(p.B2[o])
			for j := range d {
				s += float64(p.W2[o*d+j]) * hidden[j]
			}
			pu[o] += w[i] * s * float64(p.Scale)
		}
	}
	var werr, perr float64
	for i := range w {
		werr = math.Max(werr, math.Abs(w[i]-float64(weights[i])))
	}
	if len(rows) != (p.NInstr+R)*d {
		t.Fatalf("%d row values, want %d rows", len(rows), p.NInstr+R)
	}
	for o := range R * d {
		perr = math.Max(perr, math.Abs(pu[o]-float64(rows[p.NInstr*d+o]))/(1+math.Abs(pu[o])))
	}
	t.Logf("weights max abs error %.3g; persona row max relative error %.3g", werr, perr)
	if werr > 1e-5 || perr > 1e-4 {
		t.Fatalf("plug-in output differs from the float64 reference: weights %.3g, row %.3g", werr, perr)
	}
	if maxDiff(rows[:p.NInstr*d], p.Instr) != 0 {
		t.Fatal("the instruction rows were not injected as stored")
	}
	if n := norm(rows[:d]); math.Abs(float64(n-p.Scale)) > 1e-3*float64(p.Scale) {
		t.Fatalf("instruction row norm %v, want the token scale %v", n, p.Scale)
	}
}

func TestRowsOfRealTokensReproduceThePrompt(t *testing.T) {
	m := loadModel(t, testenv.Stories260K(t))
	c, err := m.NewContext(llama.ContextOptions{NCtx: 256, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	greedy := func(in []llama.Input) string {
		s, _ := llama.NewSampler(llama.SamplerOptions{Temp: 0, RepeatPenalty: 1})
		defer s.Close()
		c.ClearMemory()
		r, err := c.Generate(context.Background(), s, in, 0, llama.GenerateOptions{MaxTokens: 32})
		if err != nil {
			t.Fatal(err)
		}
		return r.Text
	}
	// "Lily and Max" as rows after BOS, then the prompt, against the same
	// words as tokens.
	persona, _ := m.Tokenize(" Lily and Max", false, false)
	prompt, _ := m.Tokenize("went to the park", true, false)
	rows, err := m.TokenEmbeddings(persona)
	if err != nil {
		t.Fatal(err)
	}
	withRows := greedy(Inputs(m, rows, prompt))
	asTokens := append(append([]llama.Token{prompt[0]}, persona...), prompt[1:]...)
	withTokens := greedy([]llama.Input{llama.TokenInput(asTokens...)})
	t.Logf("rows: %q", withRows)
	if withRows != withTokens {
		t.Fatalf("rows of real tokens gave %q, the tokens %q", withRows, withTokens)
	}
	without := greedy([]llama.Input{llama.TokenInput(prompt...)})
	if without == withTokens {
		t.Fatal("the injected words did not change the continuation; the test proves nothing")
	}

	// The rows after a context (pplug+bm25's layout, InputsAt), as rows
	// and as tokens, also through Request.Inputs.
	req := Request{Context: "Tom had a dog. ", Prompt: "Tom had a dog. They went to the park", Rows: rows}
	toks, at, err := req.Tokenize(m)
	if err != nil {
		t.Fatal(err)
	}
	ctxToks, _ := m.Tokenize(req.Context, true, false)
	if at != len(ctxToks)-1 {
		t.Fatalf("rows after %d context tokens, the context has %d after BOS", at, len(ctxToks)-1)
	}
	in, err := req.Inputs(m)
	if err != nil {
		t.Fatal(err)
	}
	withRows = greedy(in)
	asTokens = slices.Concat(toks[:1+at], persona, toks[1+at:])
	withTokens = greedy([]llama.Input{llama.TokenInput(asTokens...)})
	if withRows != withTokens {
		t.Fatalf("rows after a context gave %q, the tokens %q", withRows, withTokens)
	}
	if first := greedy(InputsAt(m, rows, toks, 0)); first == withRows {
		t.Fatal("rows first and rows after the context continue alike; the test proves nothing")
	}
}

func TestFitPromptAt(t *testing.T) {
	m := loadModel(t, testenv.Stories260K(t))
	toks, at, err := PromptTokens(m, "Past texts: Lily had a cat.\n\n", "Past texts: Lily had a cat.\n\nOnce upon a time")
	if err != nil || at < 3 {
		t.Fatalf("at %d, err %v", at, err)
	}
	rest := len(toks) - 1 - at
	// Two tokens too many: the context's first two go, BOS stays.
	out, at2, cut := FitPromptAt(m, toks, at, len(toks)-2)
	if !cut || out[0] != m.BOS() || at2 != at-2 || !slices.Equal(out[1:], toks[3:]) {
		t.Fatalf("cut by 2: %v at %d (from %v at %d)", out, at2, toks, at)
	}
	// Cut into the rest: no context is left.
	out, at2, _ = FitPromptAt(m, toks, at, rest)
	if at2 != 0 || len(out) != rest || out[0] != m.BOS() {
		t.Fatalf("cut to %d: %v at %d", rest, out, at2)
	}
	if _, _, err := PromptTokens(m, "other", "Once upon a time"); err == nil {
		t.Fatal("a context that does not start the prompt was accepted")
	}
}

func kl(p, q []float64) float64 {
	s := 0.0
	for i := range p {
		if p[i] > 0 {
			s += p[i] * math.Log(p[i]/q[i])
		}
	}
	return s
}

func softmax(l []float32) []float64 {
	mx := math.Inf(-1)
	for _, x := range l {
		mx = math.Max(mx, float64(x))
	}
	out := make([]float64, len(l))
	var z float64
	for i, x := range l {
		out[i] = math.Exp(float64(x) - mx)
		z += out[i]
	}
	for i := range out {
		out[i] /= z
	}
	return out
}

func loadProfile(t *testing.T, name string) *profile.Profile {
	t.Helper()
	root, _ := testenv.RepoRoot()
	p, err := profile.Load(filepath.Join(root, "examples", "profiles", name), profile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestProfilesChangeTheNextToken runs the whole runtime (LLM as encoder,
// cache, plug, CPU kernels) for two profiles.
func TestProfilesChangeTheNextToken(t *testing.T) {
	m := loadModel(t, testenv.Stories260K(t))
	enc, err := NewEncoder(m, EncoderOptions{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	b, _ := kernels.Open("cpu", kernels.Options{Threads: 1})
	defer b.Close()
	pz := &Personalizer{Method: MethodPPlug, LLM: m, Plug: newTestPlug(t, m, enc.Dim(), 9), Encoder: enc, Backend: b, Cache: &Cache{Dir: t.TempDir()}}
	if err := pz.Check(); err != nil {
		t.Fatal(err)
	}
	c, err := m.NewContext(llama.ContextOptions{NCtx: 256, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	prompt := "Once upon a time"
	dist := func(prof *profile.Profile) ([]float64, string) {
		u, _, err := pz.Prepare(ctx, prof.Items, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		req, err := u.Personalize(ctx, prompt)
		if err != nil {
			t.Fatal(err)
		}
		if req.Prompt != prompt || len(req.Rows) != pz.NRows()*m.NEmbd() || len(req.Weights) != u.Len() {
			t.Fatalf("request %q with %d rows and %d weights", req.Prompt, len(req.Rows), len(req.Weights))
		}
		c.ClearMemory()
		s, _ := llama.NewSampler(llama.SamplerOptions{Temp: 0, RepeatPenalty: 1})
		defer s.Close()
		in, err := req.Inputs(m)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.DecodeInputs(ctx, in, llama.DecodeOptions{}); err != nil {
			t.Fatal(err)
		}
		l, _ := c.Logits(-1)
		c.ClearMemory()
		r, err := c.Generate(ctx, s, in, 0, llama.GenerateOptions{MaxTokens: 24})
		if err != nil {
			t.Fatal(err)
		}
		return softmax(l), r.Text
	}
	lily, tom := loadProfile(t, "lily.json"), loadProfile(t, "tom.jsonl")
	pl, tl := dist(lily)
	pt, tt := dist(tom)
	pl2, tl2 := dist(lily)
	k := kl(pl, pt)
	t.Logf("KL(lily || tom) over the next token = %.4g nats; lily: %q; tom: %q", k, tl, tt)
	if !(k > 0) {
		t.Fatalf("KL between profiles = %v, want > 0", k)
	}
	if tl != tl2 || maxDiff64(pl, pl2) != 0 {
		t.Fatal("the same profile gave different outputs across runs")
	}
}

func maxDiff64(a, b []float64) float64 {
	d := 0.0
	for i := range a {
		d = math.Max(d, math.Abs(a[i]-b[i]))
	}
	return d
}

func TestRetrievalPrompt(t *testing.T) {
	tom := loadProfile(t, "tom.jsonl")
	r := NewRetrieval(tom.Items)
	top := r.Top("the robot and the moon rock", 2)
	if len(top) != 2 {
		t.Fatalf("top = %v", top)
	}
	for _, i := range top {
		if !strings.Contains(tom.Items[i].Text, "moon") {
			t.Fatalf("retrieved %q for a moon query", tom.Items[i].Text)
		}
	}
	p := RetrievalPrompt(tom.Items, top, "Write a story.")
	if !strings.HasSuffix(p, "Write a story.") || strings.Count(p, "\n- ") != 2 {
		t.Fatalf("prompt:\n%s", p)
	}
	rec := Recent(tom.Items, 2)
	if tom.Items[rec[0]].ID != "a6" || tom.Items[rec[1]].ID != "a5" {
		t.Fatalf("recent = %v", rec)
	}
}

// TestConcurrentUsers queries two users of one plug and backend from many
// goroutines (run under -race by make test).
func TestConcurrentUsers(t *testing.T) {
	m := loadModel(t, testenv.Stories260K(t))
	const dEnc = 16
	p := newTestPlug(t, m, dEnc, 4)
	b, err := kernels.Open("cpu", kernels.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	mk := func(seed float64) ([][]float32, []float32) {
		keys := make([][]float32, 9)
		for i := range keys {
			keys[i] = make([]float32, dEnc)
			for j := range keys[i] {
				keys[i][j] = float32(math.Sin(seed + float64(i*dEnc+j)))
			}
			normalize(keys[i])
		}
		q := append([]float32(nil), keys[0]...)
		return keys, q
	}
	k1, q1 := mk(1)
	k2, q2 := mk(2)
	u1, err := p.NewHistory(b, nil, k1)
	if err != nil {
		t.Fatal(err)
	}
	defer u1.Close()
	u2, err := p.NewHistory(b, nil, k2)
	if err != nil {
		t.Fatal(err)
	}
	defer u2.Close()
	want1, _, _ := u1.Rows(q1)
	want2, _, _ := u2.Rows(q2)
	errs := make(chan error, 16)
	for g := range 16 {
		go func() {
			u, q, want := u1, q1, want1
			if g%2 == 1 {
				u, q, want = u2, q2, want2
			}
			for range 20 {
				rows, _, err := u.Rows(q)
				if err != nil {
					errs <- err
					return
				}
				if maxDiff(rows, want) != 0 {
					errs <- fmt.Errorf("goroutine %d: rows differ from the sequential result", g)
					return
				}
			}
			errs <- nil
		}()
	}
	for range 16 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
