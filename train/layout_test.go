package train

import (
	"context"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pplug/pplug/eval"
	"github.com/pplug/pplug/eval/synthusers"
	"github.com/pplug/pplug/internal/testenv"
	"github.com/pplug/pplug/kernels"
	"github.com/pplug/pplug/lamp"
	"github.com/pplug/pplug/llama"
	"github.com/pplug/pplug/persona"
)

// TestTrainingLayoutIsInferenceLayout checks that what training optimises
// is what inference scores: for every question, in both layouts (plain and
// with the plug's retrieve_k BM25 items), the training graph's loss of the
// example LoadExamples makes equals the gold NLL per token eval computes
// through its generation input (Predictor.GoldNLL: rows after BOS, prompt,
// target with its leading space and EOS, the plug's EOS bias). A drift in
// any of them moves the two apart.
func TestTrainingLayoutIsInferenceLayout(t *testing.T) {
	ctx := context.Background()
	m := loadModel(t, testenv.Stories260K(t))
	dir, ds, enc := synthUsersFor(t, m, synthusers.Options{Users: 8, Items: 5, QuestionsPerUser: 2, Seed: 5, Split: 0.5})
	plug, err := persona.NewPlugFor(m, enc, persona.PlugOptions{Seed: 4, NInstr: 3, NPersona: 2})
	if err != nil {
		t.Fatal(err)
	}
	for i := range plug.B2 {
		plug.B2[i] = 0.3 * float32(math.Sin(float64(i)))
	}
	plug.EOSBias, plug.RetrieveK = 2.5, 2
	cache := &persona.Cache{Dir: filepath.Join(dir, "cache")}
	qpath, opath := filepath.Join(dir, "dev_questions.json"), filepath.Join(dir, "dev_outputs.json")
	ex, err := LoadExamples(ctx, m, enc, cache, plug, qpath, opath, DataOptions{Task: synthusers.Task, RetrieveK: plug.RetrieveK})
	if err != nil {
		t.Fatal(err)
	}
	qs, _ := lamp.ReadQuestions(qpath)
	if len(ex) != 2*len(qs) {
		t.Fatalf("%d examples for %d questions in two layouts", len(ex), len(qs))
	}
	golds := map[string]string{}
	for _, g := range ds.Dev.Outputs.Golds {
		golds[g.ID] = g.Output
	}
	// The target continues the input with a space, and ends with EOS.
	for _, e := range ex[:2] {
		id := strings.TrimSuffix(e.ID, "+bm25")
		if e.Target[len(e.Target)-1] != m.EOS() {
			t.Fatalf("%s: the target does not end with EOS", e.ID)
		}
		text, _ := m.Detokenize(append(append([]llama.Token(nil), e.Prompt...), e.Target[:len(e.Target)-1]...), true, false)
		if !strings.HasSuffix(text, ", "+golds[id]) && !strings.HasSuffix(text, ". "+golds[id]) && !strings.HasSuffix(text, "a "+golds[id]) {
			t.Fatalf("%s: prompt and target read %q, gold %q", e.ID, text, golds[id])
		}
	}

	// History dropout: a copy of a retrieval example retrieves its item
	// from the items it keeps (the persona and the prompt see one history).
	aug, err := Augment(ex, 6, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	texts := map[string][]string{} // question id -> item texts, in key order
	for _, q := range qs {
		for _, it := range q.Profile {
			texts[q.ID] = append(texts[q.ID], it.Fields["text"])
		}
	}
	orig := byIDOf(ex)
	moved := 0
	for _, c := range aug[len(ex):] {
		if c.At == 0 {
			continue
		}
		e := orig[c.ID]
		id := strings.TrimSuffix(c.ID, "+bm25")
		var kept []string
		for _, k := range c.Keys {
			for i, ek := range e.Keys {
				if &k[0] == &ek[0] {
					kept = append(kept, texts[id][i])
				}
			}
		}
		context, _ := m.Detokenize(c.Prompt[1:1+c.At], false, false)
		found := false
		for _, k := range kept {
			found = found || strings.Contains(context, k)
		}
		if !found || len(kept) != len(c.Keys) {
			t.Fatalf("%s: a copy with %d of %d items has the context %q, none of its items", c.ID, len(kept), len(e.Keys), context)
		}
		if !slices.Equal(c.Prompt, e.Prompt) {
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("no copy retrieved another item than its example; the check proves nothing")
	}

	// A prompt over MaxInput is cut as generation cuts it (persona.FitPromptAt):
	// BOS and the tokens right before the answer stay.
	short, err := LoadExamples(ctx, m, enc, cache, plug, qpath, opath, DataOptions{Task: synthusers.Task, RetrieveK: 2, RetrieveOnly: true, MaxInput: 6})
	if err != nil {
		t.Fatal(err)
	}
	if len(short) != len(qs) || short[0].ID != qs[0].ID+"+bm25" {
		t.Fatalf("--retrieve-only: %d examples for %d questions, first %q", len(short), len(qs), short[0].ID)
	}
	full := byIDOf(ex)[short[0].ID].Prompt
	if p := short[0].Prompt; len(p) != 6 || p[0] != m.BOS() || !slices.Equal(p[1:], full[len(full)-5:]) {
		t.Fatalf("a prompt cut to 6 tokens is %v, the full one %v", p, full)
	}

	shape, err := ShapeFor(plug, 1, ex)
	if err != nil {
		t.Fatal(err)
	}
	g, err := NewGraph(testenv.Stories260K(t), m, plug, shape, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	b, _ := kernels.Open("cpu", kernels.Options{Threads: 1})
	defer b.Close()
	c, err := m.NewContext(llama.ContextOptions{NCtx: 512, Threads: 1, KVF32: true, FlashAttn: llama.FlashAttnOff})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pz := &persona.Personalizer{Method: persona.MethodPPlug, LLM: m, Plug: plug, Encoder: enc, Backend: b, Cache: cache}
	p := &eval.Predictor{LLM: m, Ctx: c, Personalizer: pz, Task: synthusers.Task}
	defer p.Close()
	byID := byIDOf(ex)
	var worst float64
	for _, q := range qs {
		for _, tc := range []struct {
			id string
			m  eval.Method
		}{{q.ID, eval.PPlug}, {q.ID + "+bm25", eval.PPlugBM25}} {
			loss, err := EvalLoss(g, []Example{byID[tc.id]})
			if err != nil {
				t.Fatal(err)
			}
			s, n, err := p.GoldNLL(ctx, tc.m, q, golds[q.ID])
			if err != nil {
				t.Fatal(err)
			}
			if n != len(byID[tc.id].Target) {
				t.Fatalf("%s: inference scores %d target tokens, training %d", tc.id, n, len(byID[tc.id].Target))
			}
			d := math.Abs(loss - s/float64(n))
			worst = math.Max(worst, d)
			if d > 1e-3 {
				t.Errorf("%s (%s): training loss %.6f, inference NLL per token %.6f", tc.id, tc.m, loss, s/float64(n))
			}
		}
	}
	t.Logf("%d examples: training loss and inference gold NLL differ by at most %.3g nats/token", len(ex), worst)

	// In a batch the examples' rows sit at their own positions (the
	// retrieval layout's after its context): a batch of both layouts has
	// the loss of its examples scored one by one.
	for _, e := range ex {
		if strings.HasSuffix(e.ID, "+bm25") != (e.At > 0) {
			t.Fatalf("%s: rows after %d prompt tokens", e.ID, e.At)
		}
	}
	one, err := EvalLoss(g, ex)
	if err != nil {
		t.Fatal(err)
	}
	shape.Batch = 4
	g4, err := NewGraph(testenv.Stories260K(t), m, plug, shape, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	defer g4.Close()
	mixed := slices.Clone(ex)
	rand.New(rand.NewPCG(3, 3)).Shuffle(len(mixed), func(i, j int) { mixed[i], mixed[j] = mixed[j], mixed[i] })
	batched, err := EvalLoss(g4, mixed)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(batched-one) > 1e-4 {
		t.Fatalf("loss in batches of 4 with both layouts %.6f, one by one %.6f", batched, one)
	}
}

func byIDOf(ex []Example) map[string]Example {
	out := map[string]Example{}
	for _, e := range ex {
		out[e.ID] = e
	}
	return out
}
