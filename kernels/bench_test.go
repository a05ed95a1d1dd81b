package kernels

// Benchmarks at the paper's sizes (realUsers x realItems items, realDEnc ->
// realDLLM), one sub-benchmark per backend: "cpu" always, "cuda"/"metal" when
// the library and a device are present. They report items/s (and users/s for
// aggregation). Only `go test -bench` runs them; the CPU projector over all
// 32768 items takes minutes on a small machine (use -benchtime 1x, or
// PPLUG_BENCH_CPU_PROJECT_ITEMS, below).
//
//	go test -run '^$' -bench . -benchtime 1x ./kernels/

import (
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"
)

// benchBackends returns the CPU backend and, if available, the GPU one.
func benchBackends(b *testing.B) []Backend {
	bs := []Backend{newCPU(0)}
	if gpu := platformGPU(); gpu != "" {
		g, err := Open(gpu, Options{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Logf("%s not benchmarked: %v", gpu, err)
		} else {
			bs = append(bs, g)
		}
	}
	b.Cleanup(func() {
		for _, be := range bs {
			be.Close()
		}
	})
	return bs
}

// benchCPUProjectItems is the number of rows of the CPU projector benchmark:
// all 32768, or $PPLUG_BENCH_CPU_PROJECT_ITEMS (items/s is a rate, so a
// subset measures the same thing in less time; scripts/gpu-check.sh uses 4096).
func benchCPUProjectItems(b *testing.B) int {
	if s := os.Getenv("PPLUG_BENCH_CPU_PROJECT_ITEMS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > realTotal {
			b.Fatalf("PPLUG_BENCH_CPU_PROJECT_ITEMS=%q: want 1..%d", s, realTotal)
		}
		return n
	}
	return realTotal
}

// report sets items/s from the time of iters iterations of items each.
func report(b *testing.B, iters int, elapsed time.Duration, items, users int) {
	s := elapsed.Seconds()
	if s <= 0 || iters == 0 {
		return
	}
	b.ReportMetric(float64(items*iters)/s, "items/s")
	if users > 0 {
		b.ReportMetric(float64(users*iters)/s, "users/s")
	}
}

// BenchmarkProject: the projector over every history item of a batch
// (64 users x 512 items = 32768 rows, 768 -> 4096 -> 4096).
func BenchmarkProject(b *testing.B) {
	d := realistic()
	for _, be := range benchBackends(b) {
		b.Run(be.Name(), func(b *testing.B) {
			n := realTotal
			if be.Name() == "cpu" {
				n = benchCPUProjectItems(b)
			} else if err := be.Project(d.proj, d.items[:realDEnc], 1, make([]float32, realDLLM)); err != nil {
				b.Fatal(err) // warm-up: weight upload, library initialisation
			}
			out := make([]float32, n*realDLLM)
			iters := 0
			start := time.Now()
			for b.Loop() {
				if err := be.Project(d.proj, d.items[:n*realDEnc], n, out); err != nil {
					b.Fatal(err)
				}
				iters++
			}
			report(b, iters, time.Since(start), n, 0)
		})
	}
}

// BenchmarkAggregate: input-aware aggregation for 64 users with 512 resident
// items each (keys 768, values 4096), one query per user.
func BenchmarkAggregate(b *testing.B) {
	d := realistic()
	for _, be := range benchBackends(b) {
		b.Run(be.Name(), func(b *testing.B) {
			users := make([]Resident, realUsers)
			for u := range users {
				r, err := be.Upload(d.items[u*realItems*realDEnc:(u+1)*realItems*realDEnc],
					d.values[u*realItems*realDLLM:(u+1)*realItems*realDLLM], realItems, realDEnc, realDLLM)
				if err != nil {
					b.Fatal(err)
				}
				users[u] = r
			}
			defer func() {
				for _, r := range users {
					r.Close()
				}
			}()
			out := make([]float32, realUsers*realDLLM)
			if err := be.Aggregate(users, d.queries, 1, out, nil); err != nil {
				b.Fatal(err)
			}
			iters := 0
			start := time.Now()
			for b.Loop() {
				if err := be.Aggregate(users, d.queries, 1, out, nil); err != nil {
					b.Fatal(err)
				}
				iters++
			}
			report(b, iters, time.Since(start), realTotal, realUsers)
		})
	}
}

// BenchmarkGEMMSmall keeps an eye on the CPU GEMM's speed at a size that runs
// quickly anywhere (256 rows, 768 -> 1024).
func BenchmarkGEMMSmall(b *testing.B) {
	r := rand.New(rand.NewPCG(61, 62))
	const m, k, n = 256, 768, 1024
	x, w := randVec(r, m*k, 1), randVec(r, n*k, 1)
	y, bias := make([]float32, m*n), make([]float32, n)
	c := newCPU(0)
	start := time.Now()
	iters := 0
	for b.Loop() {
		c.gemmNT(x, m, k, w, n, y, bias, epiBiasScale, 1)
		iters++
	}
	b.ReportMetric(float64(2*m*k*n*iters)/time.Since(start).Seconds()/1e9, "GFLOP/s")
}
