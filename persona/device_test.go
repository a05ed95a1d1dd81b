package persona

import (
	"bytes"
	"log/slog"
	"math"
	"strings"
	"testing"

	"github.com/pplug/pplug/internal/testenv"
	"github.com/pplug/pplug/kernels"
	"github.com/pplug/pplug/llama"
)

// pluginRowsTol bounds max|row(ggml graph) - row(Go kernels)| relative to
// the rows' largest magnitude, and the same for the weights. Measured on
// ggml's CPU device: 1.3e-7 and 2.3e-7 (TestPluginDeviceFollowsModel logs
// them).
const pluginRowsTol = 1e-5

// openLogged opens the plug-in backend for m and returns what it logged.
func openLogged(t *testing.T, m *llama.Model, dev string) (kernels.Backend, string) {
	t.Helper()
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	b, err := OpenBackend(m, BackendOptions{PluginDevice: dev, Threads: 1, Logger: log})
	if err != nil {
		t.Fatalf("OpenBackend(%q): %v", dev, err)
	}
	t.Cleanup(func() { b.Close() })
	return b, buf.String()
}

// pluginRows builds a three-row plug's user of 29 items on b and returns
// the rows and weights for one query.
func pluginRows(t *testing.T, m *llama.Model, b kernels.Backend) (rows, weights []float32) {
	t.Helper()
	const dEnc, n = 24, 29
	p := newTestPlugRows(t, m, dEnc, 9, 3)
	p.Tau = 0.5
	keys := make([][]float32, n)
	for i := range keys {
		keys[i] = make([]float32, dEnc)
		for j := range keys[i] {
			keys[i][j] = float32(math.Sin(float64(i*dEnc+j) * 0.53))
		}
		normalize(keys[i])
	}
	q := append([]float32(nil), keys[4]...)
	u, err := p.NewUser(b, nil, keys)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	rows, weights, err = u.Rows(q)
	if err != nil {
		t.Fatal(err)
	}
	return rows, weights
}

func relErr(a, b []float32) float64 {
	var top float64
	for _, v := range b {
		top = math.Max(top, math.Abs(float64(v)))
	}
	return maxDiff(a, b) / math.Max(top, 1e-30)
}

// A model on the CPU gets the Go kernels by default; "ggml" runs the same
// plug-in as a ggml graph on the model's device, and its persona rows and
// weights equal the Go kernels' (the oracle) within pluginRowsTol. Each
// open logs the path that runs.
func TestPluginDeviceFollowsModel(t *testing.T) {
	m := loadModel(t, testenv.Stories260K(t))
	if d := m.MainDevice(); d.Backend != "CPU" {
		t.Fatalf("a model loaded without GPU layers is on %s, want the CPU", d)
	}
	cpu, log := openLogged(t, m, "")
	if cpu.Name() != "cpu" || !strings.Contains(log, "plug-in path: go cpu") {
		t.Fatalf("auto on a CPU model: backend %s, log %q", cpu.Name(), log)
	}
	graph, log := openLogged(t, m, "ggml")
	if graph.Name() != "ggml" || !strings.Contains(log, "plug-in path: ggml graph on CPU") {
		t.Fatalf("ggml: backend %s, log %q", graph.Name(), log)
	}
	wantRows, wantW := pluginRows(t, m, cpu)
	rows, w := pluginRows(t, m, graph)
	er, ew := relErr(rows, wantRows), relErr(w, wantW)
	t.Logf("ggml graph on CPU vs Go kernels: rows max rel error %.3g, weights %.3g (tolerance %g)", er, ew, pluginRowsTol)
	if er > pluginRowsTol || ew > pluginRowsTol {
		t.Errorf("rows %.3g, weights %.3g: over %g", er, ew, pluginRowsTol)
	}
}

// A plug-in device nobody knows is refused, naming the choices.
func TestCheckPluginDevice(t *testing.T) {
	for _, ok := range []string{"", "auto", "cpu", "CUDA", "cuda:1", "metal", "ggml", " GGML "} {
		if err := CheckPluginDevice(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	err := CheckPluginDevice("vulkan")
	if err == nil || !strings.Contains(err.Error(), "ggml") || !strings.Contains(err.Error(), "vulkan") {
		t.Errorf("vulkan: got %v, want an error naming it and ggml", err)
	}
}
