// Command nonwords measures how often PPlug's answers on held-out synthetic
// users hold a word outside the users' vocabulary (every word of the
// train, dev and test questions and outputs), under decoding settings and
// persona-row scales: the check behind the README's note on broken words.
//
//	go run ./scripts/nonwords -users build/demo/users -m ../shared/assets/stories260K.gguf \
//	    -plug build/demo/stories260K.plug.gguf [-n 40] [-cache build/demo/cache]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/pplug/pplug/eval"
	"github.com/pplug/pplug/kernels"
	"github.com/pplug/pplug/lamp"
	"github.com/pplug/pplug/llama"
	"github.com/pplug/pplug/persona"
	"github.com/pplug/pplug/persona/profile"
)

var wordRE = regexp.MustCompile(`[a-z]+`)

func words(s string) []string { return wordRE.FindAllString(strings.ToLower(s), -1) }

// setting is one way of decoding.
type setting struct {
	name     string
	opts     llama.SamplerOptions
	noBias   bool    // leave the plug's EOS bias out
	rowScale float32 // multiply the persona rows (0: as they are)
	seeds    int     // sampled settings run with seeds 1..seeds
}

var settings = []setting{
	{name: "greedy (eval, generate --temp 0)", opts: llama.SamplerOptions{RepeatPenalty: 1}},
	{name: "greedy, repeat penalty 1.1 over 64", opts: llama.SamplerOptions{RepeatPenalty: 1.1, RepeatLastN: 64}},
	{name: "greedy, repeat penalty 1.3 over 64", opts: llama.SamplerOptions{RepeatPenalty: 1.3, RepeatLastN: 64}},
	{name: "greedy, no EOS bias", opts: llama.SamplerOptions{RepeatPenalty: 1}, noBias: true},
	{name: "greedy, persona rows x0.75", opts: llama.SamplerOptions{RepeatPenalty: 1}, rowScale: 0.75},
	{name: "greedy, persona rows x0.5", opts: llama.SamplerOptions{RepeatPenalty: 1}, rowScale: 0.5},
	{name: "llama.cpp default sampling (temp 0.8), 3 seeds", opts: llama.DefaultSamplerOptions(), seeds: 3},
	{name: "temp 0.3 top-k 40, 3 seeds", opts: llama.SamplerOptions{Temp: 0.3, TopK: 40, RepeatPenalty: 1}, seeds: 3},
}

type run struct {
	m    *llama.Model
	c    *llama.Context
	pz   *persona.Personalizer
	qs   []lamp.Question
	dict map[string]bool
}

func main() {
	users := flag.String("users", "build/demo/users", "folder of `pplug eval synth-users`")
	model := flag.String("m", "../shared/assets/stories260K.gguf", "model")
	plugPath := flag.String("plug", "build/demo/stories260K.plug.gguf", "trained plug")
	cache := flag.String("cache", "", "embedding cache folder (default: none)")
	n := flag.Int("n", 40, "the first N test questions")
	flag.Parse()
	if err := measure(*users, *model, *plugPath, *cache, *n); err != nil {
		fmt.Fprintln(os.Stderr, "nonwords:", err)
		os.Exit(1)
	}
}

func measure(users, model, plugPath, cacheDir string, n int) error {
	ctx := context.Background()
	r := &run{}
	var err error
	if r.dict, err = dictionary(users); err != nil {
		return err
	}
	if r.qs, err = lamp.ReadQuestions(filepath.Join(users, "test_questions.json")); err != nil {
		return err
	}
	r.qs = r.qs[:min(n, len(r.qs))]
	if r.m, err = llama.LoadModel(ctx, model, llama.ModelOptions{}); err != nil {
		return err
	}
	defer r.m.Close()
	if r.pz, err = personalizer(r.m, plugPath, cacheDir); err != nil {
		return err
	}
	if r.c, err = r.m.NewContext(llama.ContextOptions{NCtx: 512, Threads: 1}); err != nil {
		return err
	}
	defer r.c.Close()
	if err := r.rowNorms(ctx); err != nil {
		return err
	}
	for _, s := range settings {
		if err := r.setting(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	return nil
}

// dictionary is every word of the synthetic users' files.
func dictionary(dir string) (map[string]bool, error) {
	d := map[string]bool{}
	for _, split := range []string{"train", "dev", "test"} {
		for _, kind := range []string{"questions", "outputs"} {
			b, err := os.ReadFile(filepath.Join(dir, split+"_"+kind+".json"))
			if err != nil {
				return nil, err
			}
			for _, w := range words(string(b)) {
				d[w] = true
			}
		}
	}
	return d, nil
}

func personalizer(m *llama.Model, plugPath, cacheDir string) (*persona.Personalizer, error) {
	plug, err := persona.ReadPlug(plugPath)
	if err != nil {
		return nil, err
	}
	enc, err := persona.NewEncoder(m, persona.EncoderOptions{Threads: 1})
	if err != nil {
		return nil, err
	}
	b, err := kernels.Open("cpu", kernels.Options{Threads: 1})
	if err != nil {
		return nil, err
	}
	pz := &persona.Personalizer{Method: persona.MethodPPlug, LLM: m, Plug: plug, Encoder: enc, Backend: b, Query: lamp.LaMP7.QueryPart}
	if cacheDir != "" {
		pz.Cache = &persona.Cache{Dir: cacheDir}
	}
	return pz, pz.Check()
}

// request is question q's personalised request.
func (r *run) request(ctx context.Context, q lamp.Question) (persona.Request, error) {
	prof, err := profile.FromQuestion(q, profile.Options{Task: lamp.LaMP7})
	if err != nil {
		return persona.Request{}, err
	}
	u, _, err := r.pz.Prepare(ctx, prof.Items, nil)
	if err != nil {
		return persona.Request{}, err
	}
	defer u.Close()
	return u.Personalize(ctx, q.Input)
}

// rowNorms prints the rows' L2 norms against the token embeddings'.
func (r *run) rowNorms(ctx context.Context) error {
	scale, err := persona.TokenEmbeddingScale(r.m)
	if err != nil {
		return err
	}
	req, err := r.request(ctx, r.qs[0])
	if err != nil {
		return err
	}
	d, ni := r.m.NEmbd(), r.pz.Plug.NInstr
	var instr, pers []float64
	for i := 0; i < len(req.Rows)/d; i++ {
		n := l2(req.Rows[i*d : (i+1)*d])
		if i < ni {
			instr = append(instr, n)
		} else {
			pers = append(pers, n)
		}
	}
	fmt.Printf("row norms: token embeddings (mean) %.2f, instruction rows %.2f, persona rows of question %s %.2f (max %.2f); EOS bias %.2f\n",
		scale, mean(instr), r.qs[0].ID, mean(pers), slicesMax(pers), r.pz.Plug.EOSBias)
	return nil
}

// setting answers every question with s and prints the share of answers
// with a word outside the dictionary, the first such answer and the share
// that ended with EOS.
func (r *run) setting(ctx context.Context, s setting) error {
	bad, total, eos, toks := 0, 0, 0, 0
	first := ""
	for seed := 1; seed <= max(1, s.seeds); seed++ {
		for _, q := range r.qs {
			out, res, err := r.answer(ctx, q, s, uint32(seed))
			if err != nil {
				return fmt.Errorf("question %s: %w", q.ID, err)
			}
			total++
			toks += len(res.Tokens)
			if res.Stop == llama.StopEOG {
				eos++
			}
			if w := r.unknown(out); w != "" {
				bad++
				if first == "" {
					first = fmt.Sprintf("%s %q (%s)", q.ID, out, w)
				}
			}
		}
	}
	fmt.Printf("%-48s outside the vocabulary %3d/%3d = %5.1f%%, EOS %5.1f%%, %5.1f tokens; first: %s\n",
		s.name, bad, total, pct(bad, total), pct(eos, total), float64(toks)/float64(total), first)
	return nil
}

func (r *run) answer(ctx context.Context, q lamp.Question, s setting, seed uint32) (string, llama.Result, error) {
	req, err := r.request(ctx, q)
	if err != nil {
		return "", llama.Result{}, err
	}
	if s.rowScale != 0 {
		for i := r.pz.Plug.NInstr * r.m.NEmbd(); i < len(req.Rows); i++ {
			req.Rows[i] *= s.rowScale
		}
	}
	// The one hand-off to the decoder: the layout, and the EOS bias as
	// sampler options (persona.Turn).
	turn, err := (&persona.Builder{LLM: r.m}).Lay(req, persona.Conversation{Prompt: q.Input})
	if err != nil {
		return "", llama.Result{}, err
	}
	o := s.opts
	if !s.noBias {
		o = turn.SamplerOptions(o)
	}
	o.Seed = seed
	smp, err := r.m.NewSampler(o)
	if err != nil {
		return "", llama.Result{}, err
	}
	defer smp.Close()
	if err := r.c.ClearMemory(); err != nil {
		return "", llama.Result{}, err
	}
	res, err := r.c.Generate(ctx, smp, turn.Inputs(), 0, llama.GenerateOptions{MaxTokens: eval.DefaultMaxNew(lamp.LaMP7)})
	if err != nil && !errors.Is(err, llama.ErrContextFull) {
		return "", res, err
	}
	return lamp.PyStrip(res.Text), res, nil
}

// unknown is the first word of s outside the dictionary ("" when none).
func (r *run) unknown(s string) string {
	for _, w := range words(s) {
		if !r.dict[w] {
			return w
		}
	}
	return ""
}

func l2(v []float32) float64 {
	s := 0.0
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

func mean(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(max(1, len(v)))
}

func slicesMax(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		m = math.Max(m, x)
	}
	return m
}

func pct(a, b int) float64 { return 100 * float64(a) / float64(max(1, b)) }
