package kernels

// Parity of the GPU backend (CUDA on Linux, Metal on macOS) with the float64
// oracle and with the CPU backend. Every test here skips, naming what is
// missing, when the library or the device is absent (CI); set
// PPLUG_REQUIRE_GPU=1 to make that a failure instead (scripts/gpu-check.sh).
//
// The library is found like Open("cuda") finds it: $PPLUG_KERNELS_DIR, the
// test binary's folder, <folder>/../lib/pplug.

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
)

var gpuTol = tolerances{project: 1e-4, aggregate: 2e-5, weights: 1e-5}

func openGPU(t testing.TB) Backend {
	t.Helper()
	gpu := platformGPU()
	if gpu == "" {
		t.Skipf("no GPU backend on %s", platformName())
	}
	b, err := Open(gpu, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		if os.Getenv("PPLUG_REQUIRE_GPU") == "1" {
			t.Fatalf("PPLUG_REQUIRE_GPU=1 but the %s backend is unavailable: %v", gpu, err)
		}
		t.Skipf("skipping %s parity: %v", gpu, err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestGPUProject(t *testing.T)   { runProjectChecks(t, openGPU(t), gpuTol.project) }
func TestGPUAggregate(t *testing.T) { runAggregateChecks(t, openGPU(t), gpuTol) }
func TestGPUEqualSimilarities(t *testing.T) {
	runEqualSimilarityChecks(t, openGPU(t))
}
func TestGPUMasking(t *testing.T) { runMaskingChecks(t, openGPU(t), false) }
func TestGPUErrors(t *testing.T)  { runErrorChecks(t, openGPU(t), newCPU(1)) }
func TestGPUClose(t *testing.T)   { runCloseChecks(t, openGPU(t)) }

func TestGPUDevice(t *testing.T) {
	b := openGPU(t)
	t.Logf("backend %s, device %q", b.Name(), b.Device())
	if b.Device() == "" || b.Name() != platformGPU() {
		t.Errorf("Name %q Device %q", b.Name(), b.Device())
	}
}

// The CPU backend refuses the GPU's residents and the GPU refuses the CPU's.
func TestGPUForeignResidents(t *testing.T) {
	g := openGPU(t)
	c := newCPU(1)
	rg, err := g.Upload([]float32{1, 0}, []float32{3}, 1, 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer rg.Close()
	if err := c.Aggregate([]Resident{rg}, []float32{1, 0}, 1, make([]float32, 1), nil); err == nil {
		t.Error("cpu backend accepted a GPU resident")
	}
	g2 := openGPU(t)
	if err := g2.Aggregate([]Resident{rg}, []float32{1, 0}, 1, make([]float32, 1), nil); err == nil {
		t.Error("a GPU backend accepted another GPU backend's resident")
	}
}

// The stateless entry point (pplug_aggregate, host arrays) against the oracle.
func TestGPUAggregateHostArrays(t *testing.T) {
	g := openGPU(t)
	h, ok := g.(interface {
		aggregateHost(offsets []int32, queries, keys, values []float32, dKey, dVal int, tau float32, out, weights []float32) error
	})
	if !ok {
		t.Skip("backend has no host-array aggregate")
	}
	r := rand.New(rand.NewPCG(21, 22))
	const dKey, dVal = 33, 70
	users := makeRefUsers(r, []aggUser{{n: 4}, {n: 0}, {n: 300}, {n: 1}, {n: 9, keyScale: 1e20}}, dKey, dVal)
	counts := make([]int, len(users))
	var keys, values []float32
	for i, u := range users {
		counts[i] = u.n
		keys = append(keys, u.keys...)
		values = append(values, u.values...)
	}
	off := offsetsOf(counts)
	q := randVec(r, len(users)*dKey, 1)
	out := make([]float32, len(users)*dVal)
	w := make([]float32, off[len(users)])
	if err := h.aggregateHost(off, q, keys, values, dKey, dVal, 0.1, out, w); err != nil {
		t.Fatal(err)
	}
	wantOut, wantW := refAggregate(users, q, dKey, dVal, 0.1)
	e, ew := maxRelErr(out, wantOut), maxRelErr(w, wantW)
	t.Logf("max rel error %.3g (tolerance %.3g), weights %.3g (tolerance %.3g)", e, gpuTol.aggregate, ew, gpuTol.weights)
	if e > gpuTol.aggregate || ew > gpuTol.weights {
		t.Errorf("host-array aggregate differs from the oracle")
	}
}

// ---- realistic sizes: GPU against the CPU backend ------------------------------------

// Sizes of the paper's setting: 64 users x 512 history items, BGE-base
// embeddings (768) projected to a 7B-class LLM width (4096).
const (
	realUsers = 64
	realItems = 512
	realDEnc  = 768
	realDLLM  = 4096
	realTotal = realUsers * realItems
)

type realisticData struct {
	proj    *Projector
	items   []float32 // [realTotal][realDEnc], unit rows (pooled embeddings)
	values  []float32 // [realTotal][realDLLM]
	queries []float32 // [realUsers][realDEnc]
}

var (
	realOnce sync.Once
	realData *realisticData
)

// realistic builds the data once per process (about 1 GB).
func realistic() *realisticData {
	realOnce.Do(func() {
		r := rand.New(rand.NewPCG(31, 32))
		d := &realisticData{
			proj:    randProjector(r, realDEnc, realDLLM, 1),
			items:   randVec(r, realTotal*realDEnc, 1),
			values:  randVec(r, realTotal*realDLLM, 0.05),
			queries: randVec(r, realUsers*realDEnc, 1),
		}
		for i := 0; i < realTotal; i++ {
			row := d.items[i*realDEnc : (i+1)*realDEnc]
			normalize32(row, row)
		}
		realData = d
	})
	return realData
}

func TestGPUParityRealistic(t *testing.T) {
	g := openGPU(t)
	c := newCPU(0)
	d := realistic()

	t.Run(fmt.Sprintf("project/%dx%d->%d", realTotal, realDEnc, realDLLM), func(t *testing.T) {
		out := make([]float32, realTotal*realDLLM)
		if err := g.Project(d.proj, d.items, realTotal, out); err != nil {
			t.Fatal(err)
		}
		// the CPU computes a spread sample of the rows
		const sample = 64
		in := make([]float32, 0, sample*realDEnc)
		rows := make([]int, sample)
		for i := range rows {
			rows[i] = i * (realTotal / sample)
			if i == sample-1 {
				rows[i] = realTotal - 1
			}
			in = append(in, d.items[rows[i]*realDEnc:(rows[i]+1)*realDEnc]...)
		}
		want := make([]float32, sample*realDLLM)
		if err := c.Project(d.proj, in, sample, want); err != nil {
			t.Fatal(err)
		}
		got := make([]float32, 0, sample*realDLLM)
		for _, r := range rows {
			got = append(got, out[r*realDLLM:(r+1)*realDLLM]...)
		}
		e := maxRelErr(got, to64(want))
		t.Logf("max rel error %.3g (tolerance %.3g)", e, gpuTol.project)
		if e > gpuTol.project {
			t.Errorf("projector differs from the CPU backend: %.3g", e)
		}
	})

	t.Run(fmt.Sprintf("aggregate/%dx%d", realUsers, realItems), func(t *testing.T) {
		var gr, cr []Resident
		for u := 0; u < realUsers; u++ {
			k := d.items[u*realItems*realDEnc : (u+1)*realItems*realDEnc]
			v := d.values[u*realItems*realDLLM : (u+1)*realItems*realDLLM]
			a, err := g.Upload(k, v, realItems, realDEnc, realDLLM)
			if err != nil {
				t.Fatal(err)
			}
			b, err := c.Upload(k, v, realItems, realDEnc, realDLLM)
			if err != nil {
				t.Fatal(err)
			}
			gr, cr = append(gr, a), append(cr, b)
		}
		defer func() {
			for i := range gr {
				gr[i].Close()
				cr[i].Close()
			}
		}()
		for _, tau := range []float32{1, 0.05} {
			gOut, cOut := make([]float32, realUsers*realDLLM), make([]float32, realUsers*realDLLM)
			gW, cW := make([]float32, realTotal), make([]float32, realTotal)
			if err := g.Aggregate(gr, d.queries, tau, gOut, gW); err != nil {
				t.Fatal(err)
			}
			if err := c.Aggregate(cr, d.queries, tau, cOut, cW); err != nil {
				t.Fatal(err)
			}
			e, ew := maxRelErr(gOut, to64(cOut)), maxRelErr(gW, to64(cW))
			t.Logf("tau=%g: max rel error %.3g (tolerance %.3g), weights %.3g (tolerance %.3g)", tau, e, gpuTol.aggregate, ew, gpuTol.weights)
			if e > gpuTol.aggregate || ew > gpuTol.weights {
				t.Errorf("tau=%g: aggregation differs from the CPU backend", tau)
			}
		}
	})
}
