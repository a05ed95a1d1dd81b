package persona

import (
	"errors"
	"fmt"
	"math"
	"sort"

	"github.com/pplug/pplug/kernels"
	"github.com/pplug/pplug/llama"
	"github.com/pplug/pplug/persona/profile"
)

// History is one user's history prepared for queries: the item embeddings
// (the aggregator's keys) and their projections (its values) resident in a
// kernels backend. Projection runs once per profile; each query runs only
// the attention. A History is safe for concurrent use if its backend is.
// (The user is a person with a profile; see "Names" in DEVELOPERS.md.)
type History struct {
	plug  *Plug
	b     kernels.Backend
	res   kernels.Resident
	Items []profile.Item
	Keys  [][]float32 // item embeddings h_i (unit vectors)
}

// NewHistory projects the item embeddings keys ([n][DEnc], unit vectors) and
// uploads keys and projections to b.
func (p *Plug) NewHistory(b kernels.Backend, items []profile.Item, keys [][]float32) (*History, error) {
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
	return &History{plug: p, b: b, res: res, Items: items, Keys: keys}, nil
}

// NewUser is NewHistory under its old name, kept only until server's tests
// (server is being split in parallel) call NewHistory; remove it then.
func (p *Plug) NewUser(b kernels.Backend, items []profile.Item, keys [][]float32) (*History, error) {
	return p.NewHistory(b, items, keys)
}

// Close frees the resident buffers.
func (u *History) Close() error { return u.res.Close() }

// Len is the number of history items.
func (u *History) Len() int { return u.res.Len() }

// Rows returns the rows to inject for a query embedding q (unit vector,
// DEnc): the instruction rows, then the persona rows P_u^j = sum_i w_i
// Proj_j(h_i) with w = softmax(q . h / tau). It also returns the weights.
func (u *History) Rows(q []float32) (rows, weights []float32, err error) {
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
func (u *History) Top(weights []float32, k int) []Weighted {
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
