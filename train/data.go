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
	MaxItems  int                       // history items kept per user (default 512)
	MaxInput  int                       // prompt tokens kept (default 256, the paper's LLM input limit)
	MaxTarget int                       // target tokens kept (default 128)
	Limit     int                       // use only the first N questions (0: all)
	QueryFn   func(input string) string // the text the query encoder sees (default: Task.QueryPart)
	// Progress receives the questions made into examples so far;
	// EncodeProgress the history texts encoded so far (of those the cache
	// lacks), before that.
	Progress       func(done, total int)
	EncodeProgress func(done, total int)
	ProfileOpt     profile.Options
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
// encodes the users' histories and the queries (each distinct text once,
// through the cache) and tokenizes prompts and targets for the model.
func LoadExamples(ctx context.Context, m *llama.Model, enc *persona.Encoder, cache *persona.Cache, plug *persona.Plug,
	questionsPath, outputsPath string, o DataOptions) ([]Example, error) {
	o.defaults()
	qs, golds, err := readSplit(questionsPath, outputsPath, o.Limit)
	if err != nil {
		return nil, err
	}
	popts := o.ProfileOpt
	popts.Task, popts.MaxItems = o.Task, o.MaxItems
	profs := make([]*profile.Profile, len(qs))
	for i, q := range qs {
		if profs[i], err = profile.FromQuestion(q, popts); err != nil {
			return nil, fmt.Errorf("%s: %w", questionsPath, err)
		}
	}
	keys, queries, err := encodeSplit(ctx, enc, cache, plug, qs, profs, o)
	if err != nil {
		return nil, err
	}
	// The retrieval layout's prompt is what inference's pplug+bm25 method
	// reads: the same Personalizer rule, with the plug's retrieve_k.
	retrieval := &persona.Personalizer{Method: persona.MethodBM25, LLM: m, K: o.RetrieveK, Query: o.QueryFn}
	var out []Example
	for i, q := range qs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		_, target, err := persona.ExampleTokens(m, "", golds[q.ID])
		if err != nil {
			return nil, fmt.Errorf("question %q: %w", q.ID, err)
		}
		if len(target) > o.MaxTarget {
			target = target[:o.MaxTarget]
		}
		e := Example{ID: q.ID, Keys: keys[i], Query: queries[i], Target: target}
		if out, err = appendLayouts(ctx, out, e, m, plug, retrieval, profs[i].Items, q.Input, o); err != nil {
			return nil, fmt.Errorf("question %q: %w", q.ID, err)
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

// readSplit reads the questions (the first limit, 0: all) and the gold
// output of each; a question without one is an error.
func readSplit(questionsPath, outputsPath string, limit int) ([]lamp.Question, map[string]string, error) {
	outs, err := lamp.ReadOutputs(outputsPath)
	if err != nil {
		return nil, nil, err
	}
	golds := make(map[string]string, len(outs.Golds))
	for _, g := range outs.Golds {
		golds[g.ID] = g.Output
	}
	qs, err := lamp.ReadQuestions(questionsPath)
	if err != nil {
		return nil, nil, err
	}
	if limit > 0 && len(qs) > limit {
		qs = qs[:limit]
	}
	for _, q := range qs {
		if _, ok := golds[q.ID]; !ok {
			return nil, nil, fmt.Errorf("%s: question %q has no gold output in %s", questionsPath, q.ID, outputsPath)
		}
	}
	return qs, golds, nil
}

// encodeSplit encodes every question's history items and query, each
// distinct text once (users share items, and a user's questions share the
// whole history), reading and filling the cache. It returns each
// question's keys (in its profile's item order) and query vector.
func encodeSplit(ctx context.Context, enc *persona.Encoder, cache *persona.Cache, plug *persona.Plug,
	qs []lamp.Question, profs []*profile.Profile, o DataOptions) (keys [][][]float32, queries [][]float32, err error) {
	var texts []string
	for _, p := range profs {
		texts = append(texts, p.Texts()...)
	}
	vecs, _, err := persona.EncodeCached(ctx, enc, cache, texts, o.EncodeProgress)
	if err != nil {
		return nil, nil, fmt.Errorf("encode the histories: %w", err)
	}
	keys = make([][][]float32, len(profs))
	for i, p := range profs {
		n := len(p.Items)
		keys[i], vecs = vecs[:n:n], vecs[n:]
	}
	// The query as inference encodes it: the plug's query prefix, then
	// the query part of the input.
	qtexts := make([]string, len(qs))
	for i, q := range qs {
		qtexts[i] = plug.QueryPrefix + o.QueryFn(q.Input)
	}
	if queries, _, err = persona.EncodeCached(ctx, enc, cache, qtexts, nil); err != nil {
		return nil, nil, fmt.Errorf("encode the queries: %w", err)
	}
	return keys, queries, nil
}

// appendLayouts appends the example e of a question in the layouts the
// options ask for: the input alone, and with the retrieved items before
// the rows (persona.Request.Context, as pplug+bm25 reads them) when
// RetrieveK > 0.
func appendLayouts(ctx context.Context, out []Example, e Example, m *llama.Model, plug *persona.Plug, retrieval *persona.Personalizer,
	items []profile.Item, input string, o DataOptions) ([]Example, error) {
	var err error
	if o.RetrieveK <= 0 || !o.RetrieveOnly {
		if e.Prompt, e.At, err = layoutPrompt(ctx, m, plug, nil, nil, input, o.MaxInput); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	if o.RetrieveK > 0 {
		e.ID += "+bm25"
		e.retrieve = func(kept []int) ([]llama.Token, int, error) {
			sub := make([]profile.Item, len(kept))
			for i, k := range kept {
				sub[i] = items[k]
			}
			return layoutPrompt(ctx, m, plug, retrieval, sub, input, o.MaxInput)
		}
		if e.Prompt, e.At, err = layoutPrompt(ctx, m, plug, retrieval, items, input, o.MaxInput); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// layoutPrompt tokenizes an example's prompt as inference lays it out
// (persona.Builder, with the place of the plug's rows that the graph
// injects): the input alone (retrieval nil), or with retrieval's items
// from items before the rows (the Personalizer's own rule); cut to
// maxInput tokens as generation cuts it (persona.FitPromptAt: the oldest
// tokens go, BOS and the text right before the answer stay).
func layoutPrompt(ctx context.Context, m *llama.Model, plug *persona.Plug, retrieval *persona.Personalizer, items []profile.Item, input string, maxInput int) ([]llama.Token, int, error) {
	var user *persona.Persona
	if retrieval != nil {
		u, _, err := retrieval.Prepare(ctx, items, nil)
		if err != nil {
			return nil, 0, err
		}
		defer u.Close()
		user = u
	}
	b := persona.Builder{LLM: m, MaxPrompt: maxInput, Plug: plug}
	t, err := b.Build(ctx, user, persona.Conversation{Prompt: input})
	if err != nil {
		return nil, 0, fmt.Errorf("tokenize the input: %w", err)
	}
	return t.Tokens, t.At, nil
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
