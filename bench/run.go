package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/pplug/pplug/lamp"
	"github.com/pplug/pplug/llama"
	"github.com/pplug/pplug/persona"
	"github.com/pplug/pplug/persona/profile"
)

// MaxPositions bounds a test's context: llama.cpp keeps n_ctx in 32 bits
// and no model is trained on more than a few million positions.
const MaxPositions = 1 << 24

// Params are a run's value lists, llama-bench's options: every combination
// of the lists is one test per -p, -n and -pg value.
type Params struct {
	Models                                       []string
	NPrompt, NGen, NDepth                        []int
	Threads, Batch, UBatch, Ctx, GPULayers, Poll []int
	PG                                           []PG
	FlashAttn                                    []llama.FlashAttn
	Devices                                      []string // per test: auto, none or names joined by "/"
	SplitModes                                   []llama.SplitMode
	MainGPU, Prio, Repetitions                   int
	Warmup, CLoop, Progress                      bool
	Seed                                         uint64
	Format                                       string // md, csv, json, jsonl or sql
	AggItems                                     []int  // history sizes of the aggregation test
	Persona                                      *PersonaParams
}

// PersonaParams add the persona tests (nil: none), once per model.
type PersonaParams struct {
	Profile *profile.Profile
	Task    lamp.Task
	// PlugPath is a trained plug; "" makes a fresh one for each model.
	PlugPath string
	// Encoder opens the history encoder for a model.
	Encoder func(ctx context.Context, llm *llama.Model, threads int) (*persona.Encoder, error)
	// RetrieveK is the retrieval baseline's number of items.
	RetrieveK int
	// Query is the prompt of the time-to-first-token tests ("": the
	// profile's LaMP input, else a fixed request).
	Query string
	// CacheDir, when set, adds the test of a persona prepared from the
	// embedding cache there.
	CacheDir string
	// PluginDevice overrides where the plug-in runs (persona.OpenBackend's
	// PluginDevice); "" or "auto": the device of the test's model.
	PluginDevice string
}

// ParamError is a value that no test can run with: a mistake in the
// command line.
type ParamError struct{ Err error }

func (e *ParamError) Error() string { return e.Err.Error() }
func (e *ParamError) Unwrap() error { return e.Err }

func paramErrorf(format string, a ...any) error {
	return &ParamError{fmt.Errorf(format, a...)}
}

// Formats are the output formats, llama-bench's.
func Formats() []string {
	var out []string
	for f := range benchPrinters {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}

// Check finds what would stop a run before any model loads: an unknown
// format, an empty list, nothing to run, a test larger than its context.
func (p Params) Check() error {
	if _, ok := benchPrinters[p.Format]; !ok {
		return paramErrorf("--output %q: want md, csv, json, jsonl or sql", p.Format)
	}
	if len(p.Models) == 0 || len(p.Threads) == 0 || len(p.Batch) == 0 || len(p.UBatch) == 0 || len(p.FlashAttn) == 0 ||
		len(p.GPULayers) == 0 || len(p.Devices) == 0 || len(p.SplitModes) == 0 || len(p.Poll) == 0 || len(p.NDepth) == 0 || len(p.Ctx) == 0 {
		return paramErrorf("bench: every list needs a value")
	}
	if p.Repetitions < 1 {
		return paramErrorf("--repetitions must be at least 1")
	}
	if p.Persona != nil && len(p.Persona.Profile.Items) == 0 {
		return errNoItems
	}
	_, ntests, err := p.instances(p.CLoop)
	if err == nil && ntests == 0 && p.Persona == nil {
		return paramErrorf("nothing to run: every -p, -n and -pg is 0 (give a length, or --profile for the persona tests)")
	}
	return err
}

// Run runs every test, printing each row on stdout as it comes in
// p.Format; progress goes to stderr.
func Run(ctx context.Context, p Params, stdout, stderr io.Writer) error {
	if err := p.Check(); err != nil {
		return err
	}
	groups, ntests, _ := p.instances(p.CLoop)
	b := &benchRun{p: p, stderr: stderr, reps: p.Repetitions, warmup: p.Warmup, showProg: p.Progress, prio: p.Prio,
		rng: rand.New(rand.NewPCG(p.Seed, 7)), ntests: ntests, aggItems: p.AggItems}
	b.countSteps(ntests)
	b.started = time.Now()
	llama.LoadBackends()
	b.sys[0], b.sys[1], b.sys[2] = benchSystem()
	b.out = benchPrinters[p.Format](stdout, benchLayout{ngls: p.GPULayers, devs: p.Devices, sms: p.SplitModes, threads: p.Threads, polls: p.Poll,
		batches: p.Batch, ubatches: p.UBatch, fas: p.FlashAttn, backends: b.sys[2], personaOnly: ntests == 0})
	b.out.header()
	err := b.runAll(ctx, groups, p.Models, p.personaInst(), p.Persona != nil)
	b.out.footer()
	if b.bar != nil {
		b.bar.Finish("")
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "bench: %d results in %s\n", b.nrows, time.Since(b.started).Round(time.Second))
	return nil
}

// personaInst is the setting of the persona tests: the last thread count,
// GPU layers, device list and split mode, the first batch sizes and flash
// attention setting, ggml's default polling.
func (p Params) personaInst() benchInst {
	last := func(v []int) int { return v[len(v)-1] }
	return benchInst{ngl: last(p.GPULayers), dev: p.Devices[len(p.Devices)-1], sm: p.SplitModes[len(p.SplitModes)-1],
		nb: p.Batch[0], nub: p.UBatch[0], fa: p.FlashAttn[0], threads: last(p.Threads), poll: 50}
}

// countSteps sizes the progress: every repetition (and warm-up) of every
// test, the persona tests included.
func (b *benchRun) countSteps(ntests int) {
	per := b.reps
	if b.warmup {
		per++
	}
	b.steps = ntests * per
	if pp := b.p.Persona; pp != nil {
		n := 6 + len(b.aggItems)
		if pp.CacheDir != "" {
			n++ // persona prepare cached
		}
		b.ntests += len(b.p.Models) * n
		b.steps += len(b.p.Models) * n * per
	}
}

var errNoItems = errors.New("bench: the profile has no items")
