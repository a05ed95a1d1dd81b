package train

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"github.com/pplug/pplug/chat"
	"github.com/pplug/pplug/eval"
	"github.com/pplug/pplug/eval/synthusers"
	"github.com/pplug/pplug/internal/testenv"
	"github.com/pplug/pplug/kernels"
	"github.com/pplug/pplug/lamp"
	"github.com/pplug/pplug/llama"
	"github.com/pplug/pplug/persona"
	"github.com/pplug/pplug/persona/profile"
)

// TestEveryConsumerLaysOutTheBuildersTurn checks that the input layout of
// every consumer comes from persona.Builder: for one user and one prompt,
// generate's turn (a plain Builder), training's example (its tokens and
// the graph's layout of them), eval's gold likelihood (which must equal
// the turn's own, bit for bit, only if eval decodes the same inputs) and
// chat's first turn (the turn in the chat template) put BOS, the context,
// the rows and the prompt at the same positions, for pplug and for
// pplug+bm25 (the rows after the retrieved items).
func TestEveryConsumerLaysOutTheBuildersTurn(t *testing.T) {
	ctx := context.Background()
	m := loadModel(t, testenv.Stories260K(t))
	dir, ds, enc := synthUsersFor(t, m, synthusers.Options{Users: 8, Items: 5, QuestionsPerUser: 2, Seed: 5, Split: 0.5})
	plug, err := persona.NewPlugFor(m, enc, persona.PlugOptions{Seed: 4, NInstr: 3, NPersona: 2})
	if err != nil {
		t.Fatal(err)
	}
	plug.EOSBias, plug.RetrieveK = 2.5, 2
	cache := &persona.Cache{Dir: filepath.Join(dir, "cache")}
	qpath, opath := filepath.Join(dir, "dev_questions.json"), filepath.Join(dir, "dev_outputs.json")
	ex, err := LoadExamples(ctx, m, enc, cache, plug, qpath, opath, DataOptions{Task: synthusers.Task, RetrieveK: plug.RetrieveK})
	if err != nil {
		t.Fatal(err)
	}
	qs, _ := lamp.ReadQuestions(qpath)
	q, gold := qs[0], ds.Dev.Outputs.Golds[0].Output
	prof, err := profile.FromQuestion(q, profile.Options{Task: synthusers.Task})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := kernels.Open("cpu", kernels.Options{Threads: 1})
	defer b.Close()
	c, err := m.NewContext(llama.ContextOptions{NCtx: 512, Threads: 1, KVF32: true, FlashAttn: llama.FlashAttnOff})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pz := &persona.Personalizer{Method: persona.MethodPPlug, LLM: m, Plug: plug, Encoder: enc, Backend: b, Cache: cache, Query: synthusers.Task.QueryPart}
	pred := &eval.Predictor{LLM: m, Ctx: c, Personalizer: pz, Task: synthusers.Task}
	defer pred.Close()
	g, err := NewGraph(testenv.Stories260K(t), m, plug, Shape{Tokens: 512, Items: 8, Targets: 64, Batch: 1}, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	_, target, _ := persona.ExampleTokens(m, "", gold)
	for _, tc := range []struct {
		method persona.Method
		id     string
	}{{persona.MethodPPlug, q.ID}, {persona.MethodPPlugBM25, q.ID + "+bm25"}} {
		user, _, err := pz.WithMethod(tc.method).Prepare(ctx, prof.Items, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer user.Close()
		turn, err := (&persona.Builder{LLM: m, Window: c.NCtxSeq()}).Build(ctx, user, persona.Conversation{Prompt: q.Input})
		if err != nil {
			t.Fatal(err)
		}
		if tc.method == persona.MethodPPlugBM25 && turn.At == 0 {
			t.Fatalf("%s: no context before the rows", tc.method)
		}
		// Training: the example's tokens, and the graph's layout of them.
		e := byIDOf(ex)[tc.id]
		gl, _ := g.layout(e.Prompt, e.At)
		if !slices.Equal(e.Prompt, turn.Tokens) || e.At != turn.At || gl != turn.Layout {
			t.Fatalf("%s: training lays out %v (rows after %d, %+v), the builder %v (after %d, %+v)", tc.method, e.Prompt, e.At, gl, turn.Tokens, turn.At, turn.Layout)
		}
		// Eval: the gold likelihood of its generation input is the turn's.
		want, _, err := turn.TargetNLL(ctx, c, target)
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := pred.GoldNLL(ctx, tc.method, q, gold)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("%s: eval's gold NLL %.9g, the builder's turn %.9g", tc.method, got, want)
		}
	}
	checkChatTurn(t, m, pz, prof.Items, q.Input)
}

// checkChatTurn checks that chat's first turn sits where the builder puts
// a templated turn: BOS, the rows opening the conversation, then the
// rendered message (the retrieved items in it), and that eval --chat
// scores that same turn.
func checkChatTurn(t *testing.T, m *llama.Model, pz *persona.Personalizer, items []profile.Item, msg string) {
	ctx := context.Background()
	user, _, err := pz.WithMethod(persona.MethodPPlugBM25).Prepare(ctx, items, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer user.Close()
	tmpl, err := persona.ChooseTemplate(m, "")
	if err != nil {
		t.Fatal(err)
	}
	turn, err := (&persona.Builder{LLM: m, Template: &tmpl}).Build(ctx, user, persona.Conversation{Prompt: msg})
	if err != nil {
		t.Fatal(err)
	}
	c, err := m.NewContext(llama.ContextOptions{NCtx: 512, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	smp, err := m.NewSampler(llama.SamplerOptions{Temp: 0, RepeatPenalty: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer smp.Close()
	s, err := chat.New(c, smp, chat.Options{MaxTokens: 4, Persona: user})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Send(ctx, msg, nil); err != nil {
		t.Fatal(err)
	}
	l, want := s.Layout(), turn.Layout
	if l.BOS != want.BOS || l.RowsAt() != want.RowsAt() || l.NInstr != want.NInstr || l.NPersona != want.NPersona || l.PromptAt() != want.PromptAt() || l.NPrompt < want.NPrompt {
		t.Fatalf("chat's first turn %+v, the builder's %+v", l, want)
	}
	if s.LastRequest().Prompt != turn.Prompt || turn.At != 0 {
		t.Fatalf("chat read %q, the builder %q (rows after %d)", s.LastRequest().Prompt, turn.Prompt, turn.At)
	}
}
