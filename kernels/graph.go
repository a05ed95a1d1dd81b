package kernels

import (
	"fmt"
	"hash/maphash"
	"io"
	"sync"
)

// GraphEngine runs the projector and the aggregation as ggml graphs on one
// device of the model's ggml backend (cgo.PluginGraph implements it): the
// plug-in's path on devices without a kernel library of ours (Vulkan, or a
// CUDA/Metal machine without libpplug_kernels_*). Handles are io.Closers
// made by the engine itself; NewGraph checks every argument before it calls
// the engine, serialises the calls and L2-normalises keys and queries on the
// host (in float64, like the Go kernels) before they reach the device.
type GraphEngine interface {
	Device() string
	UploadProjector(dIn, dOut int, w1, b1, w2, b2 []float32, scale float32) (io.Closer, error)
	Project(weights io.Closer, in []float32, n int, out []float32) error
	Upload(keys, values []float32, n, dKey, dVal int) (io.Closer, error)
	Aggregate(users []io.Closer, queries []float32, tau float32, out, weights []float32) error
	Close() error
}

// NewGraph returns the Backend "ggml" over e; the Backend owns e and closes
// it. Projector weights stay on the device between calls (the two most
// recently used, found again by a hash of their contents, as the kernel
// libraries do).
func NewGraph(e GraphEngine, threads int) Backend {
	return &graphBackend{e: e, threads: max(threads, 1), seed: maphash.MakeSeed(), residents: map[*graphResident]struct{}{}}
}

type graphBackend struct {
	threads int
	seed    maphash.Seed

	mu        sync.Mutex
	e         GraphEngine // nil once closed
	residents map[*graphResident]struct{}
	projs     []graphWeights // most recently used first
}

type graphWeights struct {
	sum uint64
	w   io.Closer
}

// graphResident is one user's history on the device; h is nil for a user
// without items (its row is zero, no graph runs).
type graphResident struct {
	owner     *graphBackend
	h         io.Closer
	closed    bool
	n, dk, dv int
}

func (r *graphResident) Len() int                  { return r.n }
func (r *graphResident) dims() (n, dKey, dVal int) { return r.n, r.dk, r.dv }

func (r *graphResident) Close() error {
	b := r.owner
	b.mu.Lock()
	defer b.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	delete(b.residents, r)
	if r.h == nil {
		return nil
	}
	return r.h.Close()
}

func (b *graphBackend) Name() string { return "ggml" }

func (b *graphBackend) Device() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.e == nil {
		return "closed"
	}
	return b.e.Device()
}

func (b *graphBackend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.e == nil {
		return nil
	}
	for r := range b.residents {
		if r.h != nil {
			r.h.Close()
		}
		r.closed = true
	}
	clear(b.residents)
	for _, p := range b.projs {
		p.w.Close()
	}
	b.projs = nil
	err := b.e.Close()
	b.e = nil
	return err
}

func (b *graphBackend) Project(p *Projector, in []float32, n int, out []float32) error {
	if err := checkProject(p, in, n, out); err != nil {
		return err
	}
	sum := projectorSum(b.seed, b.threads, p) // outside the lock: host work
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.e == nil {
		return ErrClosed
	}
	if n == 0 {
		return nil
	}
	w, err := b.weights(p, sum)
	if err != nil {
		return err
	}
	if err := b.e.Project(w, in, n, out); err != nil {
		return fmt.Errorf("kernels: ggml Project: %w", err)
	}
	return nil
}

// weights returns the device copy of p's weights, uploading them when no
// cached copy has the same contents. b.mu is held.
func (b *graphBackend) weights(p *Projector, sum uint64) (io.Closer, error) {
	for i, c := range b.projs {
		if c.sum == sum {
			copy(b.projs[1:i+1], b.projs[:i])
			b.projs[0] = c
			return c.w, nil
		}
	}
	w, err := b.e.UploadProjector(p.DIn, p.DOut, p.W1, p.B1, p.W2, p.B2, p.Scale)
	if err != nil {
		return nil, fmt.Errorf("kernels: ggml Project (uploading the weights): %w", err)
	}
	if len(b.projs) == maxCachedProjectors {
		b.projs[len(b.projs)-1].w.Close()
		b.projs = b.projs[:len(b.projs)-1]
	}
	b.projs = append([]graphWeights{{sum, w}}, b.projs...)
	return w, nil
}

func (b *graphBackend) Upload(keys, values []float32, n, dKey, dVal int) (Resident, error) {
	if err := checkUpload(keys, values, n, dKey, dVal); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.e == nil {
		return nil, ErrClosed
	}
	r := &graphResident{owner: b, n: n, dk: dKey, dv: dVal}
	if n > 0 {
		h, err := b.e.Upload(unitRows(keys, n, dKey), values, n, dKey, dVal)
		if err != nil {
			return nil, fmt.Errorf("kernels: ggml Upload: %w", err)
		}
		r.h = h
	}
	b.residents[r] = struct{}{}
	return r, nil
}

func (b *graphBackend) Aggregate(users []Resident, queries []float32, tau float32, out []float32, weights []float32) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.e == nil {
		return ErrClosed
	}
	rs, err := b.own(users)
	if err != nil {
		return err
	}
	shapes := make([]residentShape, len(rs))
	for i, r := range rs {
		shapes[i] = r
	}
	dKey, dVal, _, err := checkAggregate(shapes, queries, tau, out, weights)
	if err != nil {
		return err
	}
	return b.aggregate(rs, queries, tau, out, weights, dKey, dVal)
}

// own checks that every user is an open resident of b. b.mu is held.
func (b *graphBackend) own(users []Resident) ([]*graphResident, error) {
	rs := make([]*graphResident, len(users))
	for i, u := range users {
		r, ok := u.(*graphResident)
		switch {
		case !ok || r == nil:
			return nil, fmt.Errorf("kernels: Aggregate: users[%d] (%T) was not made by this ggml backend", i, u)
		case r.owner != b:
			return nil, fmt.Errorf("kernels: Aggregate: users[%d] belongs to another ggml backend", i)
		case r.closed:
			return nil, fmt.Errorf("kernels: Aggregate: users[%d] is a closed Resident: %w", i, ErrClosed)
		}
		rs[i] = r
	}
	return rs, nil
}

// aggregate runs one graph over the users that have items; users without
// items get a zero row. b.mu is held.
func (b *graphBackend) aggregate(rs []*graphResident, queries []float32, tau float32, out, weights []float32, dKey, dVal int) error {
	var hs []io.Closer
	var idx []int
	for i, r := range rs {
		clear(out[i*dVal : (i+1)*dVal])
		if r.n > 0 {
			hs, idx = append(hs, r.h), append(idx, i)
		}
	}
	if len(hs) == 0 {
		return nil
	}
	q := make([]float32, len(idx)*dKey)
	for j, i := range idx {
		normalize32(q[j*dKey:(j+1)*dKey], queries[i*dKey:(i+1)*dKey])
	}
	rows := make([]float32, len(idx)*dVal)
	if err := b.e.Aggregate(hs, q, tau, rows, weights); err != nil {
		return fmt.Errorf("kernels: ggml Aggregate: %w", err)
	}
	for j, i := range idx {
		copy(out[i*dVal:(i+1)*dVal], rows[j*dVal:(j+1)*dVal])
	}
	return nil
}

// unitRows returns the n rows of x [n][d] as unit vectors (the norm in
// float64 on the host, where float32 squares of the device would overflow
// or vanish for very large or small vectors; zero stays zero).
func unitRows(x []float32, n, d int) []float32 {
	out := make([]float32, len(x))
	for i := range n {
		normalize32(out[i*d:(i+1)*d], x[i*d:(i+1)*d])
	}
	return out
}
