package eval

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pplug/pplug/eval/synthusers"
	"github.com/pplug/pplug/internal/testenv"
	"github.com/pplug/pplug/kernels"
	"github.com/pplug/pplug/lamp"
	"github.com/pplug/pplug/llama"
	"github.com/pplug/pplug/persona"
)

type fixture struct {
	m   *llama.Model
	c   *llama.Context
	pz  *persona.Personalizer
	dir string // the synthetic data
	ds  synthusers.Dataset
}

// setup loads stories260K, makes an untrained plug for it (the LLM is its
// own encoder) and writes a small synthetic dataset.
func setup(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	m, err := llama.LoadModel(ctx, testenv.Stories260K(t), llama.ModelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	c, err := m.NewContext(llama.ContextOptions{NCtx: 512, Threads: 1, ThreadsBatch: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	enc, err := persona.NewEncoder(m, persona.EncoderOptions{Threads: 1, MaxTokens: 128})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { enc.Close() })
	scale, err := persona.TokenEmbeddingScale(m)
	if err != nil {
		t.Fatal(err)
	}
	plug, err := persona.NewPlug(enc.Dim(), m.NEmbd(), scale, persona.PlugOptions{Seed: 3, Encoder: enc.ID()})
	if err != nil {
		t.Fatal(err)
	}
	b, err := kernels.Open("cpu", kernels.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	ds, err := synthusers.Generate(synthusers.Options{Users: 8, Items: 5, QuestionsPerUser: 2, Seed: 5, Split: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := synthusers.Write(dir, ds); err != nil {
		t.Fatal(err)
	}
	pz := &persona.Personalizer{Method: persona.MethodPPlug, LLM: m, Plug: plug, Encoder: enc, Backend: b, Cache: &persona.Cache{Dir: t.TempDir()}}
	return &fixture{m: m, c: c, pz: pz, dir: dir, ds: ds}
}

func TestParseMethods(t *testing.T) {
	got, err := ParseMethods(" None,BM25 ,recent,none,pplug+bm25")
	if err != nil || !slices.Equal(got, []Method{None, BM25, Recent, PPlugBM25}) {
		t.Fatalf("%v %v", got, err)
	}
	if got, _ := ParseMethods("all"); !slices.Equal(got, AllMethods()) {
		t.Fatalf("all: %v", got)
	}
	for _, bad := range []string{"", " , ", "none,rag"} {
		if _, err := ParseMethods(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
	if !PPlug.NeedsPlug() || !PPlugBM25.NeedsPlug() || BM25.NeedsPlug() || None.NeedsProfile() || OutputsFile(PPlugBM25) != "pplug+bm25_outputs.json" {
		t.Error("method properties")
	}
}

func TestGoldsFor(t *testing.T) {
	golds := []lamp.Output{{ID: "1", Output: "a"}, {ID: "2", Output: "b"}, {ID: "3", Output: "c"}}
	got, err := GoldsFor(golds, []string{"3", "1"})
	if err != nil || !slices.Equal(got, []lamp.Output{{ID: "3", Output: "c"}, {ID: "1", Output: "a"}}) {
		t.Fatalf("%v %v", got, err)
	}
	if _, err := GoldsFor(golds, []string{"1", "9", "8"}); err == nil || !strings.Contains(err.Error(), `2 of 3 questions have no gold output: "9", "8"`) {
		t.Fatalf("missing golds: %v", err)
	}
	if _, err := GoldsFor(append(golds, golds[0]), []string{"1"}); err == nil || !strings.Contains(err.Error(), "duplicate") {
		t.Fatalf("duplicate golds: %v", err)
	}
}

func TestFitPrompt(t *testing.T) {
	f := setup(t)
	toks, _ := f.m.Tokenize("Once upon a time there was a cat", true, false)
	if out, cut := persona.FitPrompt(f.m, toks, len(toks)); cut || !slices.Equal(out, toks) {
		t.Fatal("cut a prompt that fits")
	}
	out, cut := persona.FitPrompt(f.m, toks, 4)
	if !cut || len(out) != 4 || out[0] != f.m.BOS() || !slices.Equal(out[1:], toks[len(toks)-3:]) {
		t.Fatalf("cut to %v from %v", out, toks)
	}
}

func TestRunEveryMethod(t *testing.T) {
	f := setup(t)
	qpath := filepath.Join(f.dir, "dev_questions.json")
	p := &Predictor{LLM: f.m, Ctx: f.c, Personalizer: f.pz, Task: lamp.LaMP7, MaxNew: 12}
	defer p.Close()
	out := filepath.Join(t.TempDir(), "out")
	var progressed int
	rep, err := Run(context.Background(), p, RunOptions{
		Methods: AllMethods(), QuestionsFile: qpath, Golds: f.ds.Dev.Outputs.Golds, GoldsFile: "dev_outputs.json",
		Limit: 3, OutDir: out, Report: Report{Model: "stories260K.gguf"},
		Progress: func(_ Method, done, total int, _ time.Duration) { progressed++ },
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Questions != 3 || len(rep.Results) != len(AllMethods()) || rep.K != 4 || rep.MaxNew != 12 || progressed != 3*len(AllMethods()) {
		t.Fatalf("report %+v", rep)
	}
	preds := map[Method][]lamp.Output{}
	for _, r := range rep.Results {
		o, err := lamp.ReadOutputs(filepath.Join(out, r.Predictions))
		if err != nil {
			t.Fatal(err)
		}
		if o.Task != "LaMP_7" || len(o.Golds) != 3 || o.Golds[0].ID != f.ds.Dev.Questions[0].ID {
			t.Fatalf("%s predictions: %+v", r.Method, o)
		}
		for _, g := range o.Golds {
			if g.Output != lamp.PyStrip(g.Output) {
				t.Errorf("%s: prediction %q is not stripped", r.Method, g.Output)
			}
		}
		preds[r.Method] = o.Golds
		if r.Scores == nil || r.Scores.N != 3 || r.Questions != 3 || r.GenTokens == 0 || !(r.SecondsPerQuestion > 0) {
			t.Fatalf("result %+v", r)
		}
		if _, ok := r.Scores.Get(lamp.Rouge1); !ok {
			t.Fatalf("%s: no rouge-1", r.Method)
		}
		if r.GoldNLL == nil || !(*r.GoldNLL > 0) || r.EOSWithin2x == nil || r.MeanOutputTokens > 12 || r.EOSShare < 0 || r.EOSShare > 1 ||
			r.MeanGoldTokens < 10 || r.OutputTokens > r.GenTokens {
			t.Fatalf("%s: length, EOS or likelihood figures %+v", r.Method, r)
		}
		t.Logf("%-10s rouge-1 %.4f, nll %.4f, %d prompt positions, %q", r.Method, r.Scores.Values[lamp.Rouge1], *r.GoldNLL, r.PromptPositions, o.Golds[0].Output)
	}
	// The gold likelihood scores the layout generation uses: for none it is
	// the plain prompt's (persona.ExampleTokens), for pplug the own-persona
	// figure of PersonaNLL, computed by their own code paths.
	qs, _ := lamp.ReadQuestions(qpath)
	golds := map[string]string{}
	var none float64
	var tokens int
	for _, q := range qs[:3] {
		golds[q.ID] = goldOf(f.ds, q.ID)
		pr, tg, err := persona.ExampleTokens(f.m, q.Input, golds[q.ID])
		if err != nil {
			t.Fatal(err)
		}
		s, n, err := persona.TargetNLL(context.Background(), f.c, nil, pr, tg)
		if err != nil {
			t.Fatal(err)
		}
		none, tokens = none+s, tokens+n
	}
	nllRep, err := PersonaNLL(context.Background(), f.pz, f.c, lamp.LaMP7, qs[:3], golds, NLLOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for m, want := range map[Method]float64{None: none / float64(tokens), PPlug: nllRep.Own} {
		var got *float64
		for _, r := range rep.Results {
			if r.Method == m {
				got = r.GoldNLL
			}
		}
		if got == nil || math.Abs(*got-want) > 1e-3 {
			t.Errorf("%s: gold NLL %v in the report, %v computed directly", m, got, want)
		}
	}
	// Retrieval makes longer prompts than none; pplug adds two rows.
	byMethod := map[Method]Result{}
	for _, r := range rep.Results {
		byMethod[r.Method] = r
	}
	if byMethod[BM25].PromptPositions <= byMethod[None].PromptPositions || byMethod[PPlug].PromptPositions != byMethod[None].PromptPositions+3*2 {
		t.Errorf("prompt positions: none %d, bm25 %d, pplug %d", byMethod[None].PromptPositions, byMethod[BM25].PromptPositions, byMethod[PPlug].PromptPositions)
	}
	// results.json reads back; results.md has a row per method.
	back, err := ReadReport(filepath.Join(out, "results.json"))
	if err != nil || len(back.Results) != len(rep.Results) || back.Task != lamp.LaMP7 || back.Results[0].Scores.Values[lamp.RougeL] != rep.Results[0].Scores.Values[lamp.RougeL] {
		t.Fatalf("results.json: %+v %v", back, err)
	}
	var raw map[string]any
	b, _ := os.ReadFile(filepath.Join(out, "results.json"))
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	md, _ := os.ReadFile(filepath.Join(out, "results.md"))
	for _, want := range []string{"| method | rouge-1 | rouge-l | nll/token | out tokens | EOS | EOS <= 2x gold | n | s/question |", "| pplug+bm25 |", "LaMP_7, 3 questions"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("results.md lacks %q:\n%s", want, md)
		}
	}
	// The same run again is deterministic (greedy), embeddings from the cache.
	out2 := filepath.Join(t.TempDir(), "out2")
	if _, err := Run(context.Background(), p, RunOptions{Methods: []Method{PPlug}, QuestionsFile: qpath, Limit: 3, OutDir: out2}); err != nil {
		t.Fatal(err)
	}
	o, _ := lamp.ReadOutputs(filepath.Join(out2, "pplug_outputs.json"))
	if !slices.Equal(o.Golds, preds[PPlug]) {
		t.Errorf("pplug predictions differ between runs:\n%v\n%v", o.Golds, preds[PPlug])
	}
	if _, err := os.Stat(filepath.Join(out2, "results.json")); err != nil {
		t.Errorf("no results.json without golds: %v", err)
	}
}

func goldOf(ds synthusers.Dataset, id string) string {
	for _, sp := range ds.Splits() {
		for _, g := range sp.Outputs.Golds {
			if g.ID == id {
				return g.Output
			}
		}
	}
	return ""
}

func TestRunCancelKeepsCompletedMethods(t *testing.T) {
	f := setup(t)
	qpath := filepath.Join(f.dir, "dev_questions.json")
	p := &Predictor{LLM: f.m, Ctx: f.c, Task: lamp.LaMP7, MaxNew: 4}
	defer p.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := t.TempDir()
	rep, err := Run(ctx, p, RunOptions{
		Methods: []Method{None, BM25, Recent}, QuestionsFile: qpath, Golds: f.ds.Dev.Outputs.Golds, Limit: 2, OutDir: out,
		MethodDone: func(r Result) { cancel() },
	})
	if !errors.Is(err, context.Canceled) || len(rep.Results) != 1 {
		t.Fatalf("err %v, %d results", err, len(rep.Results))
	}
	if _, err := os.Stat(filepath.Join(out, "none_outputs.json")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, "bm25_outputs.json")); err == nil {
		t.Fatal("the interrupted method wrote predictions")
	}
	back, err := ReadReport(filepath.Join(out, "results.json"))
	if err != nil || len(back.Results) != 1 || back.Results[0].Method != None {
		t.Fatalf("results.json after cancel: %+v %v", back, err)
	}
}

func TestRunRefusals(t *testing.T) {
	f := setup(t)
	qpath := filepath.Join(f.dir, "dev_questions.json")
	p := &Predictor{LLM: f.m, Ctx: f.c, Task: lamp.LaMP7, MaxNew: 4}
	defer p.Close()
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte("[{\"id\": \"1\", \"input\": \"a\xffb\", \"profile\": []}]"), 0o644)
	for name, o := range map[string]RunOptions{
		"plug method without plug": {Methods: []Method{PPlug}, QuestionsFile: qpath},
		"unknown method":           {Methods: []Method{"rag"}, QuestionsFile: qpath},
		"missing golds":            {Methods: []Method{None}, QuestionsFile: qpath, Golds: f.ds.Dev.Outputs.Golds[1:]},
		"missing file":             {Methods: []Method{None}, QuestionsFile: qpath + ".nope"},
		"invalid utf-8":            {Methods: []Method{None}, QuestionsFile: bad},
	} {
		o.OutDir = t.TempDir()
		if _, err := Run(context.Background(), p, o); err == nil {
			t.Errorf("%s: no error", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

func TestPersonaNLL(t *testing.T) {
	f := setup(t)
	qs := f.ds.Dev.Questions
	golds := map[string]string{}
	for _, g := range f.ds.Dev.Outputs.Golds {
		golds[g.ID] = g.Output
	}
	var calls int
	rep, err := PersonaNLL(context.Background(), f.pz, f.c, lamp.LaMP7, qs, golds, NLLOptions{Progress: func(done, total int) { calls++ }})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", rep)
	if rep.Questions != len(qs) || calls != len(qs) || rep.Tokens < len(qs) || !rep.HasOther || rep.Skipped != 0 {
		t.Fatalf("report %+v", rep)
	}
	for _, v := range []float64{rep.Own, rep.None, rep.Other} {
		if !(v > 0) || math.IsInf(v, 0) {
			t.Fatalf("mean NLL %v", v)
		}
	}
	for _, v := range []float64{rep.OwnBeatsNone, rep.OwnBeatsOther, rep.OwnBeatsBoth} {
		if v < 0 || v > 1 || rep.OwnBeatsBoth > min(rep.OwnBeatsNone, rep.OwnBeatsOther) {
			t.Fatalf("fractions %+v", rep)
		}
	}
	// The none condition is the plain model: TargetNLL without rows.
	var sum float64
	var n int
	for _, q := range qs {
		p, tgt, _ := persona.ExampleTokens(f.m, q.Input, golds[q.ID])
		s, k, err := persona.TargetNLL(context.Background(), f.c, nil, p, tgt)
		if err != nil {
			t.Fatal(err)
		}
		sum, n = sum+s, n+k
	}
	if n != rep.Tokens || math.Abs(sum/float64(n)-rep.None) > 1e-9 {
		t.Fatalf("none %v over %d tokens, recomputed %v over %d", rep.None, rep.Tokens, sum/float64(n), n)
	}
	js, err := json.Marshal(rep)
	if err != nil || !strings.Contains(string(js), `"own_beats_other"`) || !strings.Contains(string(js), `"task":"LaMP_7"`) {
		t.Fatalf("json %s %v", js, err)
	}

	// One user: no other condition.
	one := qs[:2]
	rep, err = PersonaNLL(context.Background(), f.pz, f.c, lamp.LaMP7, one, golds, NLLOptions{})
	if err != nil || rep.HasOther || rep.Questions != 2 || rep.Other != 0 {
		t.Fatalf("one user: %+v %v", rep, err)
	}
	if js, _ := json.Marshal(rep); strings.Contains(string(js), "other") {
		t.Fatalf("one user json %s", js)
	}
	// A missing gold is an error.
	delete(golds, qs[1].ID)
	if _, err := PersonaNLL(context.Background(), f.pz, f.c, lamp.LaMP7, qs, golds, NLLOptions{}); err == nil || !strings.Contains(err.Error(), "no gold") {
		t.Fatalf("missing gold: %v", err)
	}
}

func TestMarkdownMixedScores(t *testing.T) {
	s := lamp.Scores{Task: lamp.LaMP3, N: 2, Values: map[lamp.Metric]float64{lamp.MAE: 0.5, lamp.RMSE: 0.75}}
	r := Report{Task: lamp.LaMP3, QuestionsFile: "q.json", Questions: 2, K: 4, MaxNew: 10, Results: []Result{
		{Method: None, Questions: 2, SecondsPerQuestion: 0.25, Scores: &s},
		{Method: BM25, Questions: 2, SecondsPerQuestion: 0.5},
	}}
	nll, w := 1.25, 0.5
	r.Results[0].GoldNLL, r.Results[0].EOSWithin2x, r.Results[0].MeanOutputTokens, r.Results[0].EOSShare = &nll, &w, 3.5, 1
	md := r.Markdown()
	for _, want := range []string{"| method | mae | rmse | nll/token | out tokens | EOS | EOS <= 2x gold | n | s/question |",
		"| none | 0.5000 | 0.7500 | 1.2500 | 3.5 | 1.00 | 0.50 | 2 | 0.250 |", "| bm25 | - | - | - | 0.0 | 0.00 | - | 2 | 0.500 |"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}
