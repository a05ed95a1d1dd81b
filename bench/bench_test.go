package bench

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/pplug/pplug/llama"
)

// llama-bench's poll 0 (no spinning) is ContextOptions' -1; 1-100 stay.
func TestPollOption(t *testing.T) {
	for in, want := range map[int]int{0: -1, 1: 1, 50: 50, 100: 100} {
		if got := pollOption(in); got != want {
			t.Errorf("pollOption(%d) = %d, want %d", in, got, want)
		}
	}
}

func okParams() Params {
	return Params{Models: []string{"m.gguf"}, NPrompt: []int{8}, NGen: []int{0}, NDepth: []int{0}, Threads: []int{1},
		Batch: []int{2048}, UBatch: []int{512}, Ctx: []int{0}, GPULayers: []int{99}, Poll: []int{50},
		FlashAttn: []llama.FlashAttn{llama.FlashAttnAuto}, Devices: []string{"auto"}, SplitModes: []llama.SplitMode{llama.SplitLayer},
		Repetitions: 1, Format: "md"}
}

// TestParamsCheck: what no test can run with is a ParamError, found before
// any model is read (the model here does not exist).
func TestParamsCheck(t *testing.T) {
	if err := okParams().Check(); err != nil {
		t.Fatal(err)
	}
	for want, edit := range map[string]func(*Params){
		`--output "xml"`:       func(p *Params) { p.Format = "xml" },
		"nothing to run":       func(p *Params) { p.NPrompt = []int{0} },
		"--repetitions":        func(p *Params) { p.Repetitions = 0 },
		"every list needs":     func(p *Params) { p.Devices = nil },
		"is smaller than test": func(p *Params) { p.Ctx = []int{4}; p.NPrompt = []int{64} },
		"more than 16777216":   func(p *Params) { p.NPrompt, p.NDepth = []int{MaxPositions}, []int{1} },
	} {
		p := okParams()
		edit(&p)
		err := Run(context.Background(), p, io.Discard, io.Discard)
		var pe *ParamError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want a ParamError", want, err)
		}
	}
}
