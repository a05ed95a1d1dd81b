//go:build cgo

package kernels

// The ggml-graph backend (NewGraph over cgo.PluginGraph) against the float64
// oracle, with the same checks as every other backend. The fast suite runs
// it on ggml's CPU device; `make test-vulkan` sets PPLUG_GRAPH_DEVICE=Vulkan0
// (and PPLUG_BACKENDS_DIR) to run it on the first Vulkan device (lavapipe
// here). The file needs cgo, so gpu-check-prep's CGO_ENABLED=0 binary
// leaves it out.

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/pplug/pplug/cgo"
)

// graphTol: the bounds of the CUDA kernels (max error relative to the
// output's largest magnitude). Measured by these checks: projector 2.4e-7,
// aggregation 6.0e-7 (weights 1.9e-7) on ggml's CPU device; 1.7e-7 and
// 5.6e-7 (1.5e-7) on lavapipe (Mesa 22.3.6): every product runs on ggml's
// float32 matrix-vector path (cgo/plugin.c says why).
var graphTol = tolerances{project: 1e-4, aggregate: 2e-5, weights: 1e-5}

var graphLoad sync.Once

// graphDevice is $PPLUG_GRAPH_DEVICE, default "CPU".
func graphDevice() string {
	if d := os.Getenv("PPLUG_GRAPH_DEVICE"); d != "" {
		return d
	}
	return "CPU"
}

// openGraph opens the ggml-graph backend on graphDevice, first loading the
// backend modules of $PPLUG_BACKENDS_DIR for a device other than the CPU.
func openGraph(t testing.TB) Backend {
	t.Helper()
	dev := graphDevice()
	if dev != "CPU" {
		graphLoad.Do(func() { loadGraphModules(t) })
	}
	e, err := cgo.NewPluginGraph(dev, 1)
	if err != nil {
		t.Fatalf("ggml device %s: %v", dev, err)
	}
	b := NewGraph(e, 1)
	t.Cleanup(func() { b.Close() })
	return b
}

func loadGraphModules(t testing.TB) {
	dir := os.Getenv("PPLUG_BACKENDS_DIR")
	files, _ := filepath.Glob(filepath.Join(dir, "libggml-*.so"))
	for _, f := range files {
		if strings.Contains(f, "ggml-base") {
			continue
		}
		if name, err := cgo.LoadBackend(f); err != nil {
			t.Logf("backend %s not loaded: %v", f, err)
		} else {
			t.Logf("backend %s loaded from %s", name, f)
		}
	}
}

func TestGraphProject(t *testing.T)   { runProjectChecks(t, openGraph(t), graphTol.project) }
func TestGraphAggregate(t *testing.T) { runAggregateChecks(t, openGraph(t), graphTol) }
func TestGraphEqualSimilarities(t *testing.T) {
	runEqualSimilarityChecks(t, openGraph(t))
}
func TestGraphMasking(t *testing.T)    { runMaskingChecks(t, openGraph(t), false) }
func TestGraphErrors(t *testing.T)     { runErrorChecks(t, openGraph(t), newCPU(1)) }
func TestGraphClose(t *testing.T)      { runCloseChecks(t, openGraph(t)) }
func TestGraphConcurrent(t *testing.T) { runConcurrentChecks(t, openGraph(t)) }

// TestGraphProjectFreshBackends: what the plug-in does for each persona,
// round after round on a fresh backend: project one row (a query), then
// several (history items), with new weights each time. On lavapipe a
// one-row projection ran ggml-vulkan's fused matrix-vector-plus-bias shader
// and corrupted the heap within 40 rounds (the process aborted, 5 runs in
// 5); cgo/plugin.c keeps products out of fusions. Every result is checked
// against the oracle.
func TestGraphProjectFreshBackends(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for round := range 40 {
		b := openGraph(t)
		for _, n := range []int{1, 8} {
			p := randProjector(r, 64, 64, 1)
			for range 2 {
				in := randVec(r, n*64, 1)
				out := make([]float32, n*64)
				if err := b.Project(p, in, n, out); err != nil {
					t.Fatalf("round %d, %d rows: %v", round, n, err)
				}
				if e := maxRelErr(out, refProject(p, in, n)); e > graphTol.project {
					t.Fatalf("round %d, %d rows: max rel error %.3g > %.3g", round, n, e, graphTol.project)
				}
				for i := range p.W2 {
					p.W2[i] *= -0.5
				}
			}
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestGraphDevice(t *testing.T) {
	b := openGraph(t)
	if b.Name() != "ggml" || b.Device() != graphDevice() {
		t.Errorf("Name %q Device %q, want ggml on %s", b.Name(), b.Device(), graphDevice())
	}
}

// A device ggml does not have is an error naming it.
func TestGraphUnknownDevice(t *testing.T) {
	_, err := cgo.NewPluginGraph("NoSuchDevice7", 1)
	if err == nil || !strings.Contains(err.Error(), "NoSuchDevice7") {
		t.Fatalf("got %v, want an error naming the device", err)
	}
}
