package kernels

// Checks every backend must pass against the float64 oracle. The CPU backend
// runs them in every `go test`; gpu_test.go runs them on CUDA/Metal when the
// library and a device are present.

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// tolerances (max error relative to the output's largest magnitude)
type tolerances struct {
	project, aggregate, weights float64
}

var cpuTol = tolerances{project: 1e-5, aggregate: 1e-5, weights: 1e-6}

// offsetsOf turns per-item token counts into offsets.
func offsetsOf(counts []int) []int32 {
	off := make([]int32, len(counts)+1)
	for i, c := range counts {
		off[i+1] = off[i] + int32(c)
	}
	return off
}

func runProjectChecks(t *testing.T, b Backend, tol float64) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, c := range []struct {
		dIn, dOut, n int
		scale        float32
	}{
		{1, 1, 1, 1},
		{13, 17, 5, 1},
		{300, 67, 70, 539.97}, // K blocks, tile and micro-kernel remainders
		{64, 128, 129, 2},
		{9, 5, 0, 1},
	} {
		t.Run(fmt.Sprintf("%dx%d/n=%d", c.dIn, c.dOut, c.n), func(t *testing.T) {
			p := randProjector(r, c.dIn, c.dOut, c.scale)
			in := randVec(r, c.n*c.dIn, 1)
			out := make([]float32, c.n*c.dOut)
			if err := b.Project(p, in, c.n, out); err != nil {
				t.Fatal(err)
			}
			e := maxRelErr(out, refProject(p, in, c.n))
			t.Logf("max rel error %.3g (tolerance %.3g)", e, tol)
			if e > tol {
				t.Errorf("max rel error %.3g > %.3g", e, tol)
			}
			// Changing the weights in place must change the result (GPU caches).
			if c.n > 0 {
				for i := range p.W2 {
					p.W2[i] *= -0.5
				}
				if err := b.Project(p, in, c.n, out); err != nil {
					t.Fatal(err)
				}
				if e := maxRelErr(out, refProject(p, in, c.n)); e > tol {
					t.Errorf("after changing W2: max rel error %.3g > %.3g", e, tol)
				}
			}
		})
	}
}

type aggUser struct {
	n              int
	keyScale       float64
	valScale       float64
	zeroKey, equal bool
}

func makeRefUsers(r *rand.Rand, spec []aggUser, dKey, dVal int) []refUser {
	users := make([]refUser, len(spec))
	for i, s := range spec {
		ks, vs := s.keyScale, s.valScale
		if ks == 0 {
			ks = 1
		}
		if vs == 0 {
			vs = 1
		}
		u := refUser{n: s.n, keys: randVec(r, s.n*dKey, ks), values: randVec(r, s.n*dVal, vs)}
		if s.equal && s.n > 0 {
			for it := 1; it < s.n; it++ {
				copy(u.keys[it*dKey:(it+1)*dKey], u.keys[:dKey])
			}
		}
		if s.zeroKey && s.n > 0 {
			clear(u.keys[:dKey])
		}
		users[i] = u
	}
	return users
}

func uploadAll(t testing.TB, b Backend, users []refUser, dKey, dVal int) []Resident {
	t.Helper()
	rs := make([]Resident, len(users))
	for i, u := range users {
		res, err := b.Upload(u.keys, u.values, u.n, dKey, dVal)
		if err != nil {
			t.Fatalf("Upload user %d: %v", i, err)
		}
		if res.Len() != u.n {
			t.Fatalf("Len() = %d, want %d", res.Len(), u.n)
		}
		rs[i] = res
	}
	t.Cleanup(func() {
		for _, res := range rs {
			if err := res.Close(); err != nil {
				t.Errorf("Resident.Close: %v", err)
			}
		}
	})
	return rs
}

func runAggregateChecks(t *testing.T, b Backend, tol tolerances) {
	r := rand.New(rand.NewPCG(5, 6))
	spec := []aggUser{
		{n: 0}, {n: 1}, {n: 3}, {n: 512}, {n: 17, zeroKey: true}, {n: 0},
		{n: 5, equal: true}, {n: 9, keyScale: 1e30, valScale: 1e30}, {n: 2, keyScale: 1e-30},
	}
	const dKey, dVal = 26, 1030
	users := makeRefUsers(r, spec, dKey, dVal)
	rs := uploadAll(t, b, users, dKey, dVal)
	queries := randVec(r, len(users)*dKey, 1)
	clear(queries[2*dKey : 3*dKey])      // a zero query: uniform weights
	for j := 8 * dKey; j < 9*dKey; j++ { // a large-norm query
		queries[j] *= 1e30
	}
	for _, tau := range []float32{1, 0.05, 20, 1e-3} {
		t.Run(fmt.Sprintf("tau=%g", tau), func(t *testing.T) {
			out := make([]float32, len(users)*dVal)
			total := 0
			for _, u := range users {
				total += u.n
			}
			weights := make([]float32, total)
			if err := b.Aggregate(rs, queries, tau, out, weights); err != nil {
				t.Fatal(err)
			}
			wantOut, wantW := refAggregate(users, queries, dKey, dVal, float64(tau))
			// s = cos/tau: an error in cos grows by 1/tau in the exponent
			tol := tol
			if amp := 0.05 / float64(tau); amp > 1 {
				tol.aggregate *= amp
				tol.weights *= amp
			}
			// rows are compared one user at a time: users have very different scales
			worst := 0.0
			for u := range users {
				got := out[u*dVal : (u+1)*dVal]
				want := wantOut[u*dVal : (u+1)*dVal]
				e := maxRelErr(got, want)
				worst = math.Max(worst, e)
				if e > tol.aggregate {
					t.Errorf("user %d (n=%d): out max rel error %.3g > %.3g", u, users[u].n, e, tol.aggregate)
				}
				if users[u].n == 0 {
					for _, v := range got {
						if v != 0 {
							t.Fatalf("user %d has no items but a non-zero row", u)
						}
					}
				}
			}
			ew := maxRelErr(weights, wantW)
			t.Logf("max rel error %.3g (tolerance %.3g), weights %.3g (tolerance %.3g)", worst, tol.aggregate, ew, tol.weights)
			if ew > tol.weights {
				t.Errorf("weights max rel error %.3g > %.3g", ew, tol.weights)
			}
			off := 0
			for u, usr := range users {
				sum := 0.0
				for _, w := range weights[off : off+usr.n] {
					sum += float64(w)
				}
				if usr.n > 0 && math.Abs(sum-1) > 1e-5 {
					t.Errorf("user %d: weights sum to %g", u, sum)
				}
				off += usr.n
			}
			// weights == nil is allowed and gives the same out
			out2 := make([]float32, len(out))
			if err := b.Aggregate(rs, queries, tau, out2, nil); err != nil {
				t.Fatal(err)
			}
			for i := range out {
				if out[i] != out2[i] {
					t.Fatalf("out differs with weights == nil at %d: %g vs %g", i, out[i], out2[i])
				}
			}
		})
	}
}

// Items with the same similarity get the same weight; a zero query makes every
// similarity 0.
func runEqualSimilarityChecks(t *testing.T, b Backend) {
	r := rand.New(rand.NewPCG(7, 8))
	const n, dKey, dVal = 6, 10, 12
	keys := make([]float32, n*dKey)
	base := randVec(r, dKey, 1)
	for i := 0; i < n; i++ {
		for j, v := range base {
			keys[i*dKey+j] = v * float32(i+1) // same direction, different norms
		}
	}
	values := randVec(r, n*dVal, 1)
	res, err := b.Upload(keys, values, n, dKey, dVal)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	wantMean := make([]float64, dVal)
	for i := 0; i < n; i++ {
		for j := 0; j < dVal; j++ {
			wantMean[j] += float64(values[i*dVal+j]) / n
		}
	}
	for _, q := range [][]float32{randVec(r, dKey, 1), make([]float32, dKey)} {
		out := make([]float32, dVal)
		w := make([]float32, n)
		if err := b.Aggregate([]Resident{res}, q, 0.07, out, w); err != nil {
			t.Fatal(err)
		}
		for i := 1; i < n; i++ {
			if math.Abs(float64(w[i]-w[0])) > 1e-6 {
				t.Fatalf("equal similarities, unequal weights: %v", w)
			}
		}
		if math.Abs(float64(w[0])-1.0/n) > 1e-6 {
			t.Fatalf("weights %v, want 1/%d each", w, n)
		}
		if e := maxRelErr(out, wantMean); e > 1e-5 {
			t.Fatalf("out is not the mean of the values: rel error %g", e)
		}
	}
}

// A user's result does not depend on the other users of the batch.
func runMaskingChecks(t *testing.T, b Backend, exact bool) {
	r := rand.New(rand.NewPCG(9, 10))
	const dKey, dVal = 16, 40
	users := makeRefUsers(r, []aggUser{{n: 7}, {n: 30, keyScale: 100}, {n: 1}, {n: 0}}, dKey, dVal)
	rs := uploadAll(t, b, users, dKey, dVal)
	q := randVec(r, 4*dKey, 1)
	alone := make([]float32, dVal)
	aloneW := make([]float32, users[0].n)
	if err := b.Aggregate(rs[:1], q[:dKey], 0.5, alone, aloneW); err != nil {
		t.Fatal(err)
	}
	// user 0 placed third, between others, twice
	batch := []Resident{rs[1], rs[2], rs[0], rs[3], rs[0]}
	bq := make([]float32, 0, 5*dKey)
	bq = append(bq, q[dKey:2*dKey]...)
	bq = append(bq, q[2*dKey:3*dKey]...)
	bq = append(bq, q[:dKey]...)
	bq = append(bq, q[3*dKey:4*dKey]...)
	bq = append(bq, q[:dKey]...)
	out := make([]float32, 5*dVal)
	w := make([]float32, 30+1+7+0+7)
	if err := b.Aggregate(batch, bq, 0.5, out, w); err != nil {
		t.Fatal(err)
	}
	for _, slot := range []int{2, 4} {
		got := out[slot*dVal : (slot+1)*dVal]
		e := maxRelErr(got, to64(alone))
		if (exact && e != 0) || e > 1e-6 {
			t.Errorf("slot %d: user 0 differs from its solo result (rel error %g)", slot, e)
		}
	}
	for i := 0; i < 7; i++ {
		if d := math.Abs(float64(w[31+i] - aloneW[i])); (exact && d != 0) || d > 1e-7 {
			t.Errorf("weight %d: %g in the batch, %g alone", i, w[31+i], aloneW[i])
		}
	}
}

// Bad arguments are errors, never panics.
func runErrorChecks(t *testing.T, b Backend, other Backend) {
	r := rand.New(rand.NewPCG(11, 12))
	expectErr := func(name string, err error, substr string) {
		t.Helper()
		if err == nil {
			t.Errorf("%s: no error", name)
		} else if !strings.Contains(err.Error(), substr) {
			t.Errorf("%s: error %q does not mention %q", name, err, substr)
		}
	}
	// projector
	p := randProjector(r, 3, 4, 1)
	in := randVec(r, 2*3, 1)
	pout := make([]float32, 2*4)
	expectErr("project nil", b.Project(nil, in, 2, pout), "nil Projector")
	bad := *p
	bad.W1 = bad.W1[:5]
	expectErr("project W1", b.Project(&bad, in, 2, pout), "W1")
	bad = *p
	bad.Scale = float32(math.Inf(1))
	expectErr("project scale", b.Project(&bad, in, 2, pout), "Scale")
	bad = *p
	bad.DIn = 0
	expectErr("project dims", b.Project(&bad, in, 2, pout), "DIn")
	expectErr("project in", b.Project(p, in[:5], 2, pout), "len(in)")
	expectErr("project out", b.Project(p, in, 2, pout[:7]), "len(out)")
	expectErr("project n<0", b.Project(p, nil, -1, nil), "n = -1")
	// upload
	_, err := b.Upload(make([]float32, 6), make([]float32, 5), 2, 3, 2)
	expectErr("upload values", err, "len(values)")
	_, err = b.Upload(make([]float32, 5), make([]float32, 4), 2, 3, 2)
	expectErr("upload keys", err, "len(keys)")
	_, err = b.Upload(nil, nil, 0, 0, 2)
	expectErr("upload dKey", err, "dKey")
	_, err = b.Upload(nil, nil, -1, 1, 1)
	expectErr("upload n", err, "n = -1")
	// aggregate
	r1, err := b.Upload(randVec(r, 2*3, 1), randVec(r, 2*5, 1), 2, 3, 5)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := b.Upload(randVec(r, 3*4, 1), randVec(r, 3*5, 1), 3, 4, 5)
	if err != nil {
		t.Fatal(err)
	}
	q := randVec(r, 3, 1)
	aout := make([]float32, 5)
	for _, tau := range []float32{0, -1, float32(math.NaN()), float32(math.Inf(1))} {
		expectErr(fmt.Sprintf("tau %v", tau), b.Aggregate([]Resident{r1}, q, tau, aout, nil), "tau")
	}
	expectErr("queries", b.Aggregate([]Resident{r1}, q[:2], 1, aout, nil), "len(queries)")
	expectErr("out", b.Aggregate([]Resident{r1}, q, 1, aout[:4], nil), "len(out)")
	expectErr("weights", b.Aggregate([]Resident{r1}, q, 1, aout, make([]float32, 3)), "len(weights)")
	expectErr("mixed dims", b.Aggregate([]Resident{r1, r2}, randVec(r, 6, 1), 1, make([]float32, 10), nil), "dKey")
	expectErr("nil user", b.Aggregate([]Resident{nil}, q, 1, aout, nil), "users[0]")
	if other != nil {
		ro, err := other.Upload(randVec(r, 3, 1), randVec(r, 5, 1), 1, 3, 5)
		if err != nil {
			t.Fatal(err)
		}
		expectErr("foreign resident", b.Aggregate([]Resident{ro}, q, 1, aout, nil), "users[0]")
		ro.Close()
	}
	if err := b.Aggregate(nil, nil, 1, nil, nil); err != nil {
		t.Errorf("empty Aggregate: %v", err)
	}
	if err := r1.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r1.Close(); err != nil {
		t.Errorf("second Resident.Close: %v", err)
	}
	err = b.Aggregate([]Resident{r1}, q, 1, aout, nil)
	expectErr("closed resident", err, "closed")
	if !errors.Is(err, ErrClosed) {
		t.Errorf("closed resident: %v is not ErrClosed", err)
	}
	r2.Close()
}

// Close is idempotent, and everything fails cleanly afterwards.
func runCloseChecks(t *testing.T, b Backend) {
	res, err := b.Upload(make([]float32, 4), make([]float32, 6), 2, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := res.Close(); err != nil {
		t.Fatalf("Resident.Close after the backend's Close: %v", err)
	}
	p := &Projector{DIn: 1, DOut: 1, W1: []float32{1}, B1: []float32{0}, W2: []float32{1}, B2: []float32{0}, Scale: 1}
	if err := b.Project(p, []float32{1}, 1, make([]float32, 1)); !errors.Is(err, ErrClosed) {
		t.Errorf("Project after Close: %v", err)
	}
	if _, err := b.Upload(nil, nil, 0, 1, 1); !errors.Is(err, ErrClosed) {
		t.Errorf("Upload after Close: %v", err)
	}
	if err := b.Aggregate(nil, nil, 1, nil, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Aggregate after Close: %v", err)
	}
}

// ---- the CPU backend ----------------------------------------------------------

func TestCPUProject(t *testing.T)   { runProjectChecks(t, newCPU(3), cpuTol.project) }
func TestCPUAggregate(t *testing.T) { runAggregateChecks(t, newCPU(3), cpuTol) }
func TestCPUEqualSimilarities(t *testing.T) {
	runEqualSimilarityChecks(t, newCPU(2))
}
func TestCPUMasking(t *testing.T) { runMaskingChecks(t, newCPU(2), true) }
func TestCPUErrors(t *testing.T)  { runErrorChecks(t, newCPU(2), newCPU(1)) }
func TestCPUClose(t *testing.T)   { runCloseChecks(t, newCPU(2)) }

// Project in several row chunks gives what one chunk gives.
func TestCPUProjectChunks(t *testing.T) {
	saved := projChunkFloats
	projChunkFloats = 1 // one tile of rows per chunk
	defer func() { projChunkFloats = saved }()
	r := rand.New(rand.NewPCG(13, 14))
	p := randProjector(r, 20, 30, 3)
	in := randVec(r, 200*20, 1)
	out := make([]float32, 200*30)
	if err := newCPU(2).Project(p, in, 200, out); err != nil {
		t.Fatal(err)
	}
	if e := maxRelErr(out, refProject(p, in, 200)); e > cpuTol.project {
		t.Errorf("max rel error %.3g", e)
	}
}

// The thread count does not change results.
func TestCPUThreadsDeterministic(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	p := randProjector(r, 40, 70, 1)
	in := randVec(r, 130*40, 1)
	a, c := make([]float32, 130*70), make([]float32, 130*70)
	if err := newCPU(1).Project(p, in, 130, a); err != nil {
		t.Fatal(err)
	}
	if err := newCPU(7).Project(p, in, 130, c); err != nil {
		t.Fatal(err)
	}
	for i := range a {
		if a[i] != c[i] {
			t.Fatalf("1 vs 7 threads differ at %d: %g vs %g", i, a[i], c[i])
		}
	}
}

func TestGELU(t *testing.T) {
	// values of x/2 (1 + erf(x / sqrt 2))
	for _, c := range []struct{ x, want float64 }{
		{0, 0}, {1, 0.8413447460685429}, {-1, -0.15865525393145707},
		{3, 2.9959502053001098}, {-3, -0.0040497946998902}, {0.5, 0.34573123063700656},
	} {
		if got := gelu(float32(c.x)); math.Abs(float64(got)-c.want) > 1e-6*math.Max(1, math.Abs(c.want)) {
			t.Errorf("gelu(%g) = %g, want %g", c.x, got, c.want)
		}
	}
}

func TestCPUDevice(t *testing.T) {
	b := newCPU(2)
	if b.Name() != "cpu" || b.Device() != "cpu (2 threads)" {
		t.Errorf("Name %q Device %q", b.Name(), b.Device())
	}
}

func TestProjectorValidate(t *testing.T) {
	var p *Projector
	if p.Validate() == nil {
		t.Error("nil projector validated")
	}
	good := randProjector(rand.New(rand.NewPCG(1, 1)), 2, 3, 1)
	if err := good.Validate(); err != nil {
		t.Error(err)
	}
	bad := *good
	bad.B2 = nil
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "B2") {
		t.Errorf("missing B2: %v", err)
	}
}
