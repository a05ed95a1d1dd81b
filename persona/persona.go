package persona

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"

	"github.com/pplug/pplug/kernels"
	"github.com/pplug/pplug/llama"
	"github.com/pplug/pplug/persona/profile"
)

// User is one user's history, prepared for queries: the item embeddings
// (the aggregator's keys) and their projections (its values) resident in a
// kernels backend. Projection runs once per profile; each query runs only
// the attention. A User is safe for concurrent use if its backend is.
type User struct {
	plug  *Plug
	b     kernels.Backend
	res   kernels.Resident
	Items []profile.Item
	Keys  [][]float32 // item embeddings h_i (unit vectors)
}

// NewUser projects the item embeddings keys ([n][DEnc], unit vectors) and
// uploads keys and projections to b.
func (p *Plug) NewUser(b kernels.Backend, items []profile.Item, keys [][]float32) (*User, error) {
	n := len(keys)
	if n == 0 {
		return nil, errors.New("the profile has no items to build a persona from")
	}
	if len(items) != 0 && len(items) != n {
		return nil, fmt.Errorf("%d items but %d embeddings", len(items), n)
	}
	flat := make([]float32, n*p.DEnc)
	for i, k := range keys {
		if len(k) != p.DEnc {
			return nil, fmt.Errorf("item %d has an embedding of %d values, the plug expects %d", i, len(k), p.DEnc)
		}
		copy(flat[i*p.DEnc:], k)
	}
	// Every persona row has its projector; item i's values are its
	// projections for all rows, one after the other, so that one
	// aggregation gives all rows.
	r, d := p.PersonaRows(), p.DLLM
	proj := make([]float32, n*d)
	vals := proj
	if r > 1 {
		vals = make([]float32, n*r*d)
	}
	for j := range r {
		if err := b.Project(p.ProjectorOf(j), flat, n, proj); err != nil {
			return nil, fmt.Errorf("project history: %w", err)
		}
		if r > 1 {
			for i := range n {
				copy(vals[(i*r+j)*d:(i*r+j+1)*d], proj[i*d:(i+1)*d])
			}
		}
	}
	res, err := b.Upload(flat, vals, n, p.DEnc, r*d)
	if err != nil {
		return nil, fmt.Errorf("upload history: %w", err)
	}
	return &User{plug: p, b: b, res: res, Items: items, Keys: keys}, nil
}

// Close frees the resident buffers.
func (u *User) Close() error { return u.res.Close() }

// Len is the number of history items.
func (u *User) Len() int { return u.res.Len() }

// Rows returns the rows to inject for a query embedding q (unit vector,
// DEnc): the instruction rows, then the persona rows P_u^j = sum_i w_i
// Proj_j(h_i) with w = softmax(q . h / tau). It also returns the weights.
func (u *User) Rows(q []float32) (rows, weights []float32, err error) {
	p := u.plug
	if len(q) != p.DEnc {
		return nil, nil, fmt.Errorf("query embedding has %d values, the plug expects %d", len(q), p.DEnc)
	}
	q = append([]float32(nil), q...)
	p.AdaptQuery(q)
	rows = make([]float32, p.NRows()*p.DLLM)
	copy(rows, p.Instr)
	weights = make([]float32, u.Len())
	if err := u.b.Aggregate([]kernels.Resident{u.res}, q, p.Tau, rows[p.NInstr*p.DLLM:], weights); err != nil {
		return nil, nil, fmt.Errorf("aggregate history: %w", err)
	}
	return rows, weights, nil
}

// Weighted is a history item with its aggregation weight.
type Weighted struct {
	Index  int
	Weight float32
	Item   profile.Item
}

// Top returns the k items with the highest weights, highest first: none
// for k <= 0, all of them when k exceeds their number.
func (u *User) Top(weights []float32, k int) []Weighted {
	if k <= 0 {
		return nil
	}
	out := make([]Weighted, len(weights))
	for i, w := range weights {
		out[i] = Weighted{Index: i, Weight: w}
		if i < len(u.Items) {
			out[i].Item = u.Items[i]
		}
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].Weight > out[b].Weight })
	if k < len(out) {
		out = out[:k]
	}
	return out
}

// Inputs lays out a generation input the PPlug way: BOS (when the model
// uses one), the plug's rows, then the prompt's tokens. prompt is the
// tokenized prompt with the model's special tokens (as Tokenize with
// addSpecial gives it).
//
// llama.cpp decodes token runs and row runs in separate batches, and every
// batch reads all the weights once, which dominates short prompts. So the
// prompt's tokens are turned into their embedding rows (exactly what the
// model would look up; see llama.Model.TokenEmbeddings) and the whole input
// goes in as one run of rows. Should the model's token table be unreadable,
// the input falls back to token and row runs.
func Inputs(m *llama.Model, rows []float32, prompt []llama.Token) []llama.Input {
	if len(rows) == 0 {
		return []llama.Input{llama.TokenInput(prompt...)}
	}
	bos := len(prompt) > 0 && m.AddBOS() && prompt[0] == m.BOS()
	if emb, err := m.TokenEmbeddings(prompt); err == nil {
		d := m.NEmbd()
		all := make([]float32, 0, len(emb)+len(rows))
		if bos {
			all = append(append(all, emb[:d]...), rows...)
			all = append(all, emb[d:]...)
		} else {
			all = append(append(all, rows...), emb...)
		}
		return []llama.Input{llama.EmbdInput(all)}
	}
	if bos {
		in := []llama.Input{llama.TokenInput(prompt[0]), llama.EmbdInput(rows)}
		if len(prompt) > 1 {
			in = append(in, llama.TokenInput(prompt[1:]...))
		}
		return in
	}
	in := []llama.Input{llama.EmbdInput(rows)}
	if len(prompt) > 0 {
		in = append(in, llama.TokenInput(prompt...))
	}
	return in
}

// TokenEmbeddingScale measures the mean L2 norm of a model's token
// embeddings over up to 4096 rows spread across the vocabulary: the scale
// at which injected rows look like tokens to the model.
func TokenEmbeddingScale(m *llama.Model) (float32, error) {
	nv := m.NVocab()
	if nv <= 0 {
		return 0, errors.New("the model has no vocabulary")
	}
	step := max(1, nv/4096)
	var toks []llama.Token
	for t := 0; t < nv; t += step {
		toks = append(toks, llama.Token(t))
	}
	rows, err := m.TokenEmbeddings(toks)
	if err != nil {
		return 0, err
	}
	d := m.NEmbd()
	var sum float64
	n := 0
	for i := range toks {
		nr := float64(norm(rows[i*d : (i+1)*d]))
		if nr > 0 && !math.IsNaN(nr) && !math.IsInf(nr, 0) {
			sum += nr
			n++
		}
	}
	if n == 0 {
		return 0, errors.New("the token embeddings are all zero")
	}
	return float32(sum / float64(n)), nil
}

// Runtime bundles what personalised generation needs: the LLM, its plug,
// the history encoder, the kernels backend and the embedding cache.
type Runtime struct {
	LLM     *llama.Model
	Plug    *Plug
	Encoder *Encoder
	Backend kernels.Backend
	Cache   *Cache // nil: no caching
}

// PrepareUser encodes (or reads from the cache) a profile's items and
// projects them. profileKey names the profile in the cache (for example
// its absolute path and question id).
func (r *Runtime) PrepareUser(ctx context.Context, prof *profile.Profile, profileKey string, progress func(done, total int)) (*User, EncodeStats, error) {
	if len(prof.Items) == 0 {
		return nil, EncodeStats{}, errors.New("the profile has no items")
	}
	vecs, st, err := EncodeCached(ctx, r.Encoder, r.Cache, profileKey, prof.Texts(), progress)
	if err != nil {
		return nil, st, err
	}
	u, err := r.Plug.NewUser(r.Backend, prof.Items, vecs)
	return u, st, err
}

// QueryRows encodes the query (with the plug's query prefix) and returns
// the rows to inject and the item weights.
func (r *Runtime) QueryRows(ctx context.Context, u *User, query string) (rows, weights []float32, err error) {
	q, err := r.Encoder.EncodeOne(ctx, query, r.Plug.QueryPrefix)
	if err != nil {
		return nil, nil, fmt.Errorf("encode the query: %w", err)
	}
	return u.Rows(q)
}
