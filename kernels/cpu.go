package kernels

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
)

// cpuBackend is the pure Go implementation: the default, the fallback and the
// oracle the GPU backends are tested against.
//
// Precision: dot products and GEMMs accumulate in float32 (4-way or 2x4
// register blocks); norms, the mean of pooling and the softmax use float64.
type cpuBackend struct {
	threads int
	closed  atomic.Bool
}

func newCPU(threads int) *cpuBackend {
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	return &cpuBackend{threads: threads}
}

func (b *cpuBackend) Name() string   { return "cpu" }
func (b *cpuBackend) Device() string { return fmt.Sprintf("cpu (%d threads)", b.threads) }

func (b *cpuBackend) Close() error {
	b.closed.Store(true)
	return nil
}

// parallel runs fn(i) for i in [0, n) on up to b.threads goroutines.
func (b *cpuBackend) parallel(n int, fn func(i int)) {
	workers := min(b.threads, n)
	if workers <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(i)
			}
		})
	}
	wg.Wait()
}

// normalize32 returns x / |x| as a new slice (float64 norm; zero stays zero).
func normalize32(dst, x []float32) {
	ss := 0.0
	for _, v := range x {
		ss += float64(v) * float64(v)
	}
	if ss == 0 {
		clear(dst)
		return
	}
	inv := 1 / math.Sqrt(ss)
	for j, v := range x {
		dst[j] = float32(float64(v) * inv)
	}
}

// ---------------------------------------------------------------------------
// projector
// ---------------------------------------------------------------------------

// Tiles of the blocked GEMM: tileM x tileN outputs per task, K in blocks of tileK.
const (
	tileM = 64
	tileN = 64
	tileK = 256
)

// projChunkFloats bounds the hidden activation buffer of Project (a variable
// for the tests).
var projChunkFloats = 16 << 20

type epilogue int

const (
	epiBiasGELU  epilogue = iota // y = GELU(y + b)
	epiBiasScale                 // y = scale * (y + b)
)

func (b *cpuBackend) Project(p *Projector, in []float32, n int, out []float32) error {
	if b.closed.Load() {
		return ErrClosed
	}
	if err := checkProject(p, in, n, out); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	chunk := max(tileM, projChunkFloats/p.DOut/tileM*tileM)
	chunk = min(chunk, n)
	hid := make([]float32, chunk*p.DOut)
	for r0 := 0; r0 < n; r0 += chunk {
		rows := min(chunk, n-r0)
		h := hid[:rows*p.DOut]
		b.gemmNT(in[r0*p.DIn:(r0+rows)*p.DIn], rows, p.DIn, p.W1, p.DOut, h, p.B1, epiBiasGELU, 1)
		b.gemmNT(h, rows, p.DOut, p.W2, p.DOut, out[r0*p.DOut:(r0+rows)*p.DOut], p.B2, epiBiasScale, p.Scale)
	}
	return nil
}

// gemmNT computes y[m][nOut] = epi(x[m][k] · w[nOut][k]^T + bias) with both
// operands row-major (the dot products run along contiguous memory), in
// tileM x tileN tiles spread over the goroutines.
func (b *cpuBackend) gemmNT(x []float32, m, k int, w []float32, nOut int, y, bias []float32, epi epilogue, scale float32) {
	tm := (m + tileM - 1) / tileM
	tn := (nOut + tileN - 1) / tileN
	b.parallel(tm*tn, func(t int) {
		r0, c0 := (t/tn)*tileM, (t%tn)*tileN
		r1, c1 := min(r0+tileM, m), min(c0+tileN, nOut)
		for r := r0; r < r1; r++ {
			clear(y[r*nOut+c0 : r*nOut+c1])
		}
		for k0 := 0; k0 < k; k0 += tileK {
			k1 := min(k0+tileK, k)
			r := r0
			for ; r+2 <= r1; r += 2 {
				c := c0
				for ; c+4 <= c1; c += 4 {
					kernel2x4(x, k, r, w, c, k0, k1, y, nOut)
				}
				for ; c < c1; c++ {
					for rr := r; rr < r+2; rr++ {
						y[rr*nOut+c] += dot32(x[rr*k+k0:rr*k+k1], w[c*k+k0:c*k+k1])
					}
				}
			}
			for ; r < r1; r++ {
				xr := x[r*k+k0 : r*k+k1]
				for c := c0; c < c1; c++ {
					y[r*nOut+c] += dot32(xr, w[c*k+k0:c*k+k1])
				}
			}
		}
		for r := r0; r < r1; r++ {
			row := y[r*nOut+c0 : r*nOut+c1]
			bb := bias[c0:c1]
			switch epi {
			case epiBiasGELU:
				for j := range row {
					row[j] = gelu(row[j] + bb[j])
				}
			case epiBiasScale:
				for j := range row {
					row[j] = (row[j] + bb[j]) * scale
				}
			}
		}
	})
}

// kernel2x4 adds x[r..r+1][k0:k1] · w[c..c+3][k0:k1]^T to y[r..r+1][c..c+3].
// Eight accumulators and six operands fit the 16 vector registers of amd64
// (a 4x4 block spills and runs at less than half the speed).
func kernel2x4(x []float32, k, r int, w []float32, c, k0, k1 int, y []float32, ldy int) {
	a0 := x[r*k+k0 : r*k+k1]
	n := len(a0)
	a1 := x[(r+1)*k+k0:][:n]
	b0 := w[c*k+k0:][:n]
	b1 := w[(c+1)*k+k0:][:n]
	b2 := w[(c+2)*k+k0:][:n]
	b3 := w[(c+3)*k+k0:][:n]
	var s00, s01, s02, s03, s10, s11, s12, s13 float32
	for i := range n {
		x0, x1 := a0[i], a1[i]
		w0, w1, w2, w3 := b0[i], b1[i], b2[i], b3[i]
		s00 += x0 * w0
		s01 += x0 * w1
		s02 += x0 * w2
		s03 += x0 * w3
		s10 += x1 * w0
		s11 += x1 * w1
		s12 += x1 * w2
		s13 += x1 * w3
	}
	y0 := y[r*ldy+c:][:4]
	y1 := y[(r+1)*ldy+c:][:4]
	y0[0] += s00
	y0[1] += s01
	y0[2] += s02
	y0[3] += s03
	y1[0] += s10
	y1[1] += s11
	y1[2] += s12
	y1[3] += s13
}

// dot32 is a float32 dot product with four accumulators.
func dot32(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// gelu is the exact GELU, x/2 * (1 + erf(x/sqrt 2)), as PyTorch's nn.GELU().
func gelu(x float32) float32 {
	v := float64(x)
	return float32(0.5 * v * (1 + math.Erf(v*(1/math.Sqrt2))))
}

// ---------------------------------------------------------------------------
// residents and aggregation
// ---------------------------------------------------------------------------

type cpuResident struct {
	owner      *cpuBackend
	n, dk, dv  int
	keys, vals []float32 // keys L2-normalised at upload
	closed     atomic.Bool
}

func (r *cpuResident) Len() int                  { return r.n }
func (r *cpuResident) dims() (n, dKey, dVal int) { return r.n, r.dk, r.dv }
func (r *cpuResident) Close() error {
	r.closed.Store(true) // the slices are left to the GC: a concurrent Aggregate may still read them
	return nil
}

func (b *cpuBackend) Upload(keys, values []float32, n, dKey, dVal int) (Resident, error) {
	if b.closed.Load() {
		return nil, ErrClosed
	}
	if err := checkUpload(keys, values, n, dKey, dVal); err != nil {
		return nil, err
	}
	r := &cpuResident{owner: b, n: n, dk: dKey, dv: dVal,
		keys: make([]float32, len(keys)), vals: make([]float32, len(values))}
	for i := range n {
		normalize32(r.keys[i*dKey:(i+1)*dKey], keys[i*dKey:(i+1)*dKey])
	}
	copy(r.vals, values)
	return r, nil
}

func (b *cpuBackend) Aggregate(users []Resident, queries []float32, tau float32, out []float32, weights []float32) error {
	if b.closed.Load() {
		return ErrClosed
	}
	rs := make([]*cpuResident, len(users))
	shapes := make([]residentShape, len(users))
	for i, u := range users {
		r, err := b.ownResident(u, i)
		if err != nil {
			return err
		}
		rs[i], shapes[i] = r, r
	}
	dKey, dVal, total, err := checkAggregate(shapes, queries, tau, out, weights)
	if err != nil {
		return err
	}
	if len(users) == 0 {
		return nil
	}
	// Weights of every item, user after user.
	offs := make([]int, len(users)+1)
	for i, r := range rs {
		offs[i+1] = offs[i] + r.n
	}
	w := weights
	if w == nil {
		w = make([]float32, total)
	}
	b.parallel(len(users), func(u int) {
		q := make([]float32, dKey)
		normalize32(q, queries[u*dKey:(u+1)*dKey])
		softmaxScores(w[offs[u]:offs[u+1]], q, rs[u].keys, float64(tau))
	})
	// out_b = sum_i w_i v_i, split by user and column block.
	const colBlock = 1024
	cb := (dVal + colBlock - 1) / colBlock
	b.parallel(len(users)*cb, func(t int) {
		u, c0 := t/cb, (t%cb)*colBlock
		c1 := min(c0+colBlock, dVal)
		o := out[u*dVal+c0 : u*dVal+c1]
		clear(o)
		r := rs[u]
		for i, wi := range w[offs[u]:offs[u+1]] {
			axpy32(o, wi, r.vals[i*dVal+c0:i*dVal+c1])
		}
	})
	return nil
}

// softmaxScores writes w_i = softmax_i(q · k_i / tau) for the unit vectors k_i
// (rows of keys) and the unit query q; normalisation in float64.
func softmaxScores(w, q, keys []float32, tau float64) {
	n, d := len(w), len(q)
	if n == 0 {
		return
	}
	s := make([]float64, n)
	m := math.Inf(-1)
	for i := range n {
		s[i] = float64(dot32(q, keys[i*d:(i+1)*d])) / tau
		m = math.Max(m, s[i])
	}
	sum := 0.0
	for i := range s {
		s[i] = math.Exp(s[i] - m)
		sum += s[i]
	}
	for i := range s {
		w[i] = float32(s[i] / sum)
	}
}

// axpy32 computes y += a*x.
func axpy32(y []float32, a float32, x []float32) {
	x = x[:len(y)]
	for j := range y {
		y[j] += a * x[j]
	}
}

func (b *cpuBackend) ownResident(u Resident, i int) (*cpuResident, error) {
	r, ok := u.(*cpuResident)
	if !ok || r == nil {
		return nil, fmt.Errorf("kernels: Aggregate: users[%d] (%T) was not made by this cpu backend", i, u)
	}
	if r.owner != b {
		return nil, fmt.Errorf("kernels: Aggregate: users[%d] belongs to another cpu backend", i)
	}
	if r.closed.Load() {
		return nil, fmt.Errorf("kernels: Aggregate: users[%d] is a closed Resident: %w", i, ErrClosed)
	}
	return r, nil
}
