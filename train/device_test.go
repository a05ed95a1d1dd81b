package train

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pplug/pplug/internal/testenv"
	"github.com/pplug/pplug/traingraph"
)

// TestTrainRefusesUnknownDevices: a device that is not loaded is an error
// naming it and the way out (device none) before any work; "none" and no
// list are the CPU.
func TestTrainRefusesUnknownDevices(t *testing.T) {
	path := testenv.Stories260K(t)
	m := loadModel(t, path)
	trainEx, _, plug, dir := synthData(t, m, 8)
	for _, devs := range [][]string{{"Nope0"}, {"none", "Nope0"}} {
		steps := 0
		o := Options{Epochs: 1, Batch: 2, Threads: 1, Devices: devs, Output: filepath.Join(dir, "x.gguf"),
			Progress: func(Progress) { steps++ }}
		_, err := Train(context.Background(), path, m, clonePlug(plug), trainEx, nil, o)
		if err == nil || !strings.Contains(err.Error(), "Nope0") || !strings.Contains(err.Error(), "none") || steps > 0 {
			t.Errorf("devices %q: err %v after %d steps, want an error naming Nope0 and none before any step", devs, err, steps)
		}
	}
	if _, err := trainDevices([]string{"Nope0", "Nope0"}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("a device listed twice: err %v, want one saying so", err)
	}
	for _, devs := range [][]string{nil, {"none"}} {
		got, err := trainDevices(devs)
		if err != nil || got != nil {
			t.Errorf("devices %q: %q, %v; want the CPU alone", devs, got, err)
		}
	}
}

// TestGraphOnTheCPU: without devices every node of the training graph runs
// on the CPU in one split; the CPU named as a device and names ggml does
// not know are refused by the graph itself.
func TestGraphOnTheCPU(t *testing.T) {
	path := testenv.Stories260K(t)
	m := loadModel(t, path)
	trainEx, _, plug, _ := synthData(t, m, 8)
	shape, err := ShapeFor(plug, 2, trainEx)
	if err != nil {
		t.Fatal(err)
	}
	g, err := NewGraphWith(path, m, clonePlug(plug), shape, GraphOptions{Threads: 1, GPULayers: 99})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	ops := map[string]bool{}
	for _, p := range g.Placement() {
		ops[p.Op] = true
		if p.OnCPU != p.Nodes || p.Unsupported != 0 || p.Nodes == 0 {
			t.Errorf("%+v: want every node on the CPU, none unsupported", p)
		}
	}
	for _, op := range []string{"MUL_MAT", "OUT_PROD", "ROPE", "ROPE_BACK", "CROSS_ENTROPY_LOSS_BACK"} {
		if !ops[op] {
			t.Errorf("the training graph has no %s node (ops %v)", op, ops)
		}
	}
	if g.Splits() != 1 {
		t.Errorf("%d splits on the CPU alone, want 1", g.Splits())
	}
	for dev, want := range map[string]string{"CPU": "is the CPU", "Nope0": "no device Nope0", "a,b": "device name"} {
		cfg := traingraph.Config{Batch: 1, Tokens: 4, Items: 1, Targets: 1, DEnc: plug.DEnc, Threads: 1, Scale: 1, Tau: 1,
			Devices: []string{dev}}
		if tr, err := traingraph.NewTrainer(path, cfg); err == nil || !strings.Contains(err.Error(), want) {
			if tr != nil {
				tr.Free()
			}
			t.Errorf("device %q: err %v, want one saying %q", dev, err, want)
		}
	}
}
