// Package train learns a Persona-Plug plug-in with the LLM and the history
// encoder frozen: the projector, the instruction row(s) and optionally a
// query adapter and the aggregator's temperature, by next-token cross-entropy
// of the target output given [BOS][I][P_u][prompt] (PAPER.md).
//
// The forward and backward passes run in a ggml graph (cgo/train.c) that
// contains the plug-in and the frozen decoder; AdamW, the schedule,
// batching, checkpoints and evaluation are here.
package train

import (
	"context"
	"fmt"
	"math/rand/v2"

	"github.com/pplug/pplug/lamp"
	"github.com/pplug/pplug/llama"
	"github.com/pplug/pplug/persona"
	"github.com/pplug/pplug/persona/profile"
)

// Example is one training example, encoded: the user's history embeddings
// (the aggregator's keys), the query embedding, and the tokens.
type Example struct {
	ID     string
	Keys   [][]float32   // [n][d_enc] unit vectors
	Query  []float32     // [d_enc] unit vector
	Prompt []llama.Token // with BOS
	At     int           // the rows go after the prompt's first At tokens after BOS (persona.NewLayout)
	Target []llama.Token // ending with EOS
	// retrieve lays out the prompt again for a part of the history (the
	// items at kept, indexes into Keys' order): the items retrieved into
	// the prompt must come from the history the persona sees. nil for the
	// layout without retrieval.
	retrieve func(kept []int) (prompt []llama.Token, at int, err error)
}

// DataOptions control how LaMP data becomes examples.
type DataOptions struct {
	Task      lamp.Task
	MaxItems  int // history items kept per user (default 512)
	MaxInput  int // prompt tokens kept (default 256, the paper's LLM input limit)
	MaxTarget int // target tokens kept (default 128)
	Limit     int // use only the first N questions (0: all)
	// ProfileSource names the questions file in embedding cache keys (see
	// persona.ProfileKey).
	ProfileSource string
	QueryFn       func(input string) string // the text the query encoder sees (default: Task.QueryPart)
	Progress      func(done, total int)
	ProfileOpt    profile.Options
	// RetrieveK > 0 adds, for every question, an example whose prompt holds
	// the top RetrieveK history items for the query by BM25 before the rows
	// (persona.Request.Context, the layout of eval's pplug+bm25 method), so
	// that PPlug with retrieval is a trained layout. The example without
	// retrieval stays unless RetrieveOnly.
	RetrieveK    int
	RetrieveOnly bool
}

func (o *DataOptions) defaults() {
	if o.MaxItems <= 0 {
		o.MaxItems = profile.DefaultMaxItems
	}
	if o.MaxInput <= 0 {
		o.MaxInput = 256
	}
	if o.MaxTarget <= 0 {
		o.MaxTarget = 128
	}
	if o.QueryFn == nil {
		task := o.Task
		o.QueryFn = func(s string) string {
			if task.Valid() {
				return task.QueryPart(s)
			}
			return s
		}
	}
}

// LoadExamples reads a LaMP split (questions and their gold outputs),
// encodes every user's history (through the cache) and query, and tokenizes
// prompts and targets for the model.
func LoadExamples(ctx context.Context, m *llama.Model, enc *persona.Encoder, cache *persona.Cache, plug *persona.Plug,
	questionsPath, outputsPath string, o DataOptions) ([]Example, error) {
	o.defaults()
	outs, err := lamp.ReadOutputs(outputsPath)
	if err != nil {
		return nil, err
	}
	golds := make(map[string]string, len(outs.Golds))
	for _, g := range outs.Golds {
		golds[g.ID] = g.Output
	}
	qs, err := lamp.ReadQuestions(questionsPath)
	if err != nil {
		return nil, err
	}
	if o.Limit > 0 && len(qs) > o.Limit {
		qs = qs[:o.Limit]
	}
	popts := o.ProfileOpt
	popts.Task, popts.MaxItems = o.Task, o.MaxItems
	// The retrieval layout's prompt is what inference's pplug+bm25 method
	// reads: the same Personalizer rule, with the plug's retrieve_k.
	retrieval := &persona.Personalizer{Method: persona.MethodBM25, LLM: m, K: o.RetrieveK, Query: o.QueryFn}
	var out []Example
	for i, q := range qs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		gold, ok := golds[q.ID]
		if !ok {
			return nil, fmt.Errorf("%s: question %q has no gold output in %s", questionsPath, q.ID, outputsPath)
		}
		prof, err := profile.FromQuestion(q, popts)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", questionsPath, err)
		}
		keys, _, err := persona.EncodeCached(ctx, enc, cache, persona.ProfileKey(o.ProfileSource, q.ID), prof.Texts(), nil)
		if err != nil {
			return nil, fmt.Errorf("encode the history of question %q: %w", q.ID, err)
		}
		qtext := o.QueryFn(q.Input)
		query, err := enc.EncodeOne(ctx, qtext, plug.QueryPrefix)
		if err != nil {
			return nil, fmt.Errorf("encode the query of question %q: %w", q.ID, err)
		}
		_, target, err := persona.ExampleTokens(m, "", gold)
		if err != nil {
			return nil, fmt.Errorf("question %q: %w", q.ID, err)
		}
		if len(target) > o.MaxTarget {
			target = target[:o.MaxTarget]
		}
		e := Example{ID: q.ID, Keys: keys, Query: query, Target: target}
		if o.RetrieveK <= 0 || !o.RetrieveOnly {
			if e.Prompt, e.At, err = layoutPrompt(ctx, m, nil, nil, q.Input, o.MaxInput); err != nil {
				return nil, fmt.Errorf("question %q: %w", q.ID, err)
			}
			out = append(out, e)
		}
		if o.RetrieveK > 0 {
			// The retrieved items go before the rows, as pplug+bm25 reads
			// them (Request.Context).
			items, input := prof.Items, q.Input
			e.ID = q.ID + "+bm25"
			e.retrieve = func(kept []int) ([]llama.Token, int, error) {
				sub := make([]profile.Item, len(kept))
				for i, k := range kept {
					sub[i] = items[k]
				}
				return layoutPrompt(ctx, m, retrieval, sub, input, o.MaxInput)
			}
			if e.Prompt, e.At, err = layoutPrompt(ctx, m, retrieval, items, input, o.MaxInput); err != nil {
				return nil, fmt.Errorf("question %q: %w", q.ID, err)
			}
			out = append(out, e)
		}
		if o.Progress != nil {
			o.Progress(i+1, len(qs))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no questions", questionsPath)
	}
	return out, nil
}

// layoutPrompt tokenizes an example's prompt as inference lays it out: the
// input alone (retrieval nil), or with retrieval's items from items before
// the rows (the Personalizer's own rule); cut to maxInput tokens as
// generation cuts it (persona.FitPromptAt: the oldest tokens go, BOS and
// the text right before the answer stay).
func layoutPrompt(ctx context.Context, m *llama.Model, retrieval *persona.Personalizer, items []profile.Item, input string, maxInput int) ([]llama.Token, int, error) {
	req := persona.Request{Prompt: input}
	if retrieval != nil {
		u, _, err := retrieval.Prepare(ctx, items, "", nil)
		if err != nil {
			return nil, 0, err
		}
		if req, err = u.Personalize(ctx, input); err != nil {
			return nil, 0, err
		}
	}
	prompt, at, err := persona.PromptTokens(m, req.Context, req.Prompt)
	if err != nil {
		return nil, 0, fmt.Errorf("tokenize the input: %w", err)
	}
	prompt, at, _ = persona.FitPromptAt(m, prompt, at, maxInput)
	return prompt, at, nil
}

// Augment returns the examples plus, for every example with more than two
// history items, copies extra versions with 1 % to 50 % of the items
// dropped at random: the history dropout of the paper's reference code. A
// copy of an example with retrieved items retrieves them again from the
// items it keeps.
func Augment(ex []Example, copies int, r *rand.Rand) ([]Example, error) {
	out := append([]Example(nil), ex...)
	if copies <= 0 {
		return out, nil
	}
	for _, e := range ex {
		n := len(e.Keys)
		if n <= 2 {
			continue
		}
		for range copies {
			frac := 0.01 + 0.49*r.Float64()
			drop := max(1, int(frac*float64(n)))
			if drop >= n {
				drop = n - 1
			}
			perm := r.Perm(n)
			dropped := make(map[int]bool, drop)
			for _, i := range perm[:drop] {
				dropped[i] = true
			}
			c := e
			c.Keys = make([][]float32, 0, n-drop)
			kept := make([]int, 0, n-drop)
			for i, k := range e.Keys {
				if !dropped[i] {
					c.Keys = append(c.Keys, k)
					kept = append(kept, i)
				}
			}
			if e.retrieve != nil {
				var err error
				if c.Prompt, c.At, err = e.retrieve(kept); err != nil {
					return nil, fmt.Errorf("example %q: %w", e.ID, err)
				}
			}
			out = append(out, c)
		}
	}
	return out, nil
}
