//go:build heavy

package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/pplug/pplug/internal/testenv"
)

// The load tool runs end to end against a real pplug serve on stories260K:
// two levels, with and without personas, and the one-at-a-time baseline.
func TestServeLoadRuns(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "pplug")
	build := exec.Command("go", "build", "-o", bin, "github.com/pplug/pplug/cmd/pplug")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build pplug: %v\n%s", err, out)
	}
	model := testenv.Stories260K(t)
	plug := filepath.Join(dir, "plug.gguf")
	if out, err := exec.Command(bin, "plug", "init", "-m", model, "-o", plug, "-t", "1").CombinedOutput(); err != nil {
		t.Fatalf("plug init: %v\n%s", err, out)
	}
	js := filepath.Join(dir, "out.json")
	c := config{pplug: bin, model: model, plug: plug, threads: 1, nPredict: 4, perUser: 2, levels: []int{1, 3},
		ctxSize: 2048, serial: 3, jsonOut: js}
	if err := run(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(js)
	if err != nil {
		t.Fatal(err)
	}
	var rs []result
	if err := json.Unmarshal(b, &rs); err != nil {
		t.Fatal(err)
	}
	if len(rs) != 5 {
		t.Fatalf("%d results, want 2 levels x 2 modes + serial: %s", len(rs), b)
	}
	for _, r := range rs {
		want := r.Users * 2
		if r.Mode == "serial" {
			want = 3
		}
		if r.Requests != want || r.Tokens != 4*want || r.TokPerSec <= 0 || r.Invisible != 0 || r.TTFTp50 <= 0 || r.TTFTp95 < r.TTFTp50 {
			t.Fatalf("implausible result %+v", r)
		}
	}
}
