package cgo_test

import (
	"testing"
	"time"

	"github.com/pplug/pplug/cgo"
)

// TestDeviceLock: without a GPU device the lock is off and takes nothing;
// once on, every call that may use a device waits for it (each call below
// must still be waiting while the test holds the lock, and must finish
// once it lets go).
func TestDeviceLock(t *testing.T) {
	m, c := guardModel(t)
	if cgo.DeviceLockOn() || cgo.LockDevices() {
		t.Fatal("the device lock is on without a GPU device")
	}
	g, err := cgo.NewPluginGraph("CPU", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	w, err := g.UploadProjector(2, 2, []float32{1, 0, 0, 1}, []float32{0, 0}, []float32{1, 0, 0, 1}, []float32{0, 0}, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	smp := cgo.NewSamplerChain()
	smp.AddGreedy()
	defer smp.Free()

	defer cgo.ForceDeviceLock(true)()
	calls := []struct {
		name string
		f    func()
	}{
		{"Decode", func() {
			c.Decode(&cgo.Batch{Tokens: []int32{m.BOS()}, Pos: []int32{0}, Seq: []int32{0}, Output: []int8{1}})
		}},
		{"LogitsView", func() { c.LogitsView(0, m.NVocab()) }},
		{"Sample", func() { smp.Sample(c, 0) }},
		{"SeqRm", func() { c.SeqRm(0, 0, -1) }},
		{"MemClear", func() { c.MemClear(true) }},
		{"NewContext", func() {
			if c2, err := cgo.NewContext(m, cgo.ContextParams{NCtx: 64, Threads: 1}); err == nil {
				c2.Free()
			}
		}},
		{"Project", func() { g.Project(w, []float32{1, 2}, 1, make([]float32, 2)) }},
		{"Upload", func() {
			if h, err := g.Upload([]float32{1, 0}, []float32{3, 4}, 1, 2, 2); err == nil {
				h.Close()
			}
		}},
	}
	for _, call := range calls {
		held := cgo.LockDevices()
		if !held {
			t.Fatal("LockDevices took nothing with the lock on")
		}
		done := make(chan struct{})
		go func() { call.f(); close(done) }()
		select {
		case <-done:
			t.Errorf("%s ran while the device lock was held", call.name)
		case <-time.After(50 * time.Millisecond):
		}
		cgo.UnlockDevices(held)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s still waits after the device lock was released", call.name)
		}
	}
}
