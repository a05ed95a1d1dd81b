// Package bench is pplug's llama-bench: throughput tests (pp, tg, pp+tg at
// a depth) with llama-bench's options, field names and output formats,
// plus the persona's costs (history encoding, aggregation, time to first
// token with PPlug against retrieval). `pplug bench` parses its flags into
// Params and calls Run.
package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/pplug/pplug/internal/buildinfo"
	"github.com/pplug/pplug/internal/progress"
	"github.com/pplug/pplug/llama"
)

// pplug bench follows llama-bench (llama.cpp tools/llama-bench at the pinned
// commit): the same options, tests (pp, tg, pp+tg, at a depth), field names
// and output formats, so that scripts written for llama-bench read its
// results. pplug adds rows (the plain C loop baseline, the persona tests) and
// fields after llama-bench's (test, unit, avg, stddev, samples, note, n_ctx,
// pplug_version).

// llamaCppBuildNumber is LLAMA_BUILD_NUMBER of the pinned sources (ollama's
// llama/build-info.cpp sets 0): llama-bench's build_number.
const llamaCppBuildNumber = 0

func faInt(fa llama.FlashAttn) int {
	switch fa {
	case llama.FlashAttnOff:
		return 0
	case llama.FlashAttnOn:
		return 1
	}
	return -1
}

// PG is a -pg test: a prompt of Prompt tokens, then Gen generated ones,
// timed together.
type PG struct{ Prompt, Gen int }

// benchRow is one result. Its first fields are llama-bench's test record;
// samples are the measured durations of the repetitions.
type benchRow struct {
	CPUInfo, GPUInfo, Backends string
	Model, ModelType           string
	ModelSize, ModelParams     uint64
	Batch, UBatch, Threads     int
	Poll                       int
	GPULayers                  int
	SplitMode, Devices         string
	MainGPU                    int
	FlashAttn                  int
	NPrompt, NGen, NDepth      int
	Time                       string
	SamplesNs                  []uint64

	// pplug's additions
	Test   string
	Unit   string    // of Values: t/s for throughput rows, the persona tests' own units
	Values []float64 // one per sample, in Unit
	Note   string
	Ctx    int
}

func (r *benchRow) avgNs() uint64 {
	if len(r.SamplesNs) == 0 {
		return 0
	}
	var s uint64
	for _, x := range r.SamplesNs {
		s += x
	}
	return s / uint64(len(r.SamplesNs))
}

func (r *benchRow) stddevNs() uint64 {
	xs := make([]float64, len(r.SamplesNs))
	for i, x := range r.SamplesNs {
		xs[i] = float64(x)
	}
	_, sd := meanStd(xs)
	return uint64(sd)
}

// samplesTs is llama-bench's throughput per repetition: (n_prompt + n_gen)
// tokens over the repetition's time.
func (r *benchRow) samplesTs() []float64 {
	out := make([]float64, len(r.SamplesNs))
	for i, ns := range r.SamplesNs {
		if ns > 0 {
			out[i] = 1e9 * float64(r.NPrompt+r.NGen) / float64(ns)
		}
	}
	return out
}

func meanStd(xs []float64) (float64, float64) {
	if len(xs) == 0 {
		return 0, 0
	}
	var s float64
	for _, x := range xs {
		s += x
	}
	m := s / float64(len(xs))
	if len(xs) < 2 {
		return m, 0
	}
	var v float64
	for _, x := range xs {
		v += (x - m) * (x - m)
	}
	return m, math.Sqrt(v / float64(len(xs)-1))
}

// fieldKind is how a field is typed in JSON and SQL (llama-bench's
// get_field_type).
type fieldKind int

const (
	kString fieldKind = iota
	kBool
	kInt
	kFloat
)

type benchField struct {
	name string
	kind fieldKind
	get  func(r *benchRow) string
}

func itoa(v int) string     { return strconv.Itoa(v) }
func utoa(v uint64) string  { return strconv.FormatUint(v, 10) }
func ftoa(v float64) string { return strconv.FormatFloat(v, 'f', 6, 64) }
func constant(v string) func(*benchRow) string {
	return func(*benchRow) string { return v }
}

// llamaBenchFields are llama-bench's fields at the pinned commit, in its
// order. pplug runs llama.cpp's defaults for the options it does not expose
// (KV cache f16, layer split, mmap, default threadpool), and reports them.
var llamaBenchFields = []benchField{
	{"build_commit", kString, constant(buildinfo.LlamaCppCommit)},
	{"build_number", kInt, constant(itoa(llamaCppBuildNumber))},
	{"cpu_info", kString, func(r *benchRow) string { return r.CPUInfo }},
	{"gpu_info", kString, func(r *benchRow) string { return r.GPUInfo }},
	{"backends", kString, func(r *benchRow) string { return r.Backends }},
	{"model_filename", kString, func(r *benchRow) string { return r.Model }},
	{"model_type", kString, func(r *benchRow) string { return r.ModelType }},
	{"model_size", kInt, func(r *benchRow) string { return utoa(r.ModelSize) }},
	{"model_n_params", kInt, func(r *benchRow) string { return utoa(r.ModelParams) }},
	{"n_batch", kInt, func(r *benchRow) string { return itoa(r.Batch) }},
	{"n_ubatch", kInt, func(r *benchRow) string { return itoa(r.UBatch) }},
	{"n_threads", kInt, func(r *benchRow) string { return itoa(r.Threads) }},
	{"cpu_mask", kString, constant("0x0")},
	{"cpu_strict", kBool, constant("0")},
	{"poll", kInt, func(r *benchRow) string { return itoa(r.Poll) }},
	{"type_k", kString, constant("f16")},
	{"type_v", kString, constant("f16")},
	{"n_gpu_layers", kInt, func(r *benchRow) string { return itoa(r.GPULayers) }},
	{"n_cpu_moe", kInt, constant("0")},
	{"split_mode", kString, func(r *benchRow) string { return r.SplitMode }},
	{"main_gpu", kInt, func(r *benchRow) string { return itoa(r.MainGPU) }},
	{"no_kv_offload", kBool, constant("0")},
	{"flash_attn", kInt, func(r *benchRow) string { return itoa(r.FlashAttn) }},
	{"devices", kString, func(r *benchRow) string { return r.Devices }},
	{"tensor_split", kString, constant("0.00")},
	{"tensor_buft_overrides", kString, constant("none")},
	{"use_mmap", kBool, constant("1")},
	{"embeddings", kBool, constant("0")},
	{"no_op_offload", kInt, constant("0")},
	{"no_host", kBool, constant("0")},
	{"n_prompt", kInt, func(r *benchRow) string { return itoa(r.NPrompt) }},
	{"n_gen", kInt, func(r *benchRow) string { return itoa(r.NGen) }},
	{"n_depth", kInt, func(r *benchRow) string { return itoa(r.NDepth) }},
	{"test_time", kString, func(r *benchRow) string { return r.Time }},
	{"avg_ns", kInt, func(r *benchRow) string { return utoa(r.avgNs()) }},
	{"stddev_ns", kInt, func(r *benchRow) string { return utoa(r.stddevNs()) }},
	{"avg_ts", kFloat, func(r *benchRow) string { m, _ := meanStd(r.samplesTs()); return ftoa(m) }},
	{"stddev_ts", kFloat, func(r *benchRow) string { _, s := meanStd(r.samplesTs()); return ftoa(s) }},
}

// pplugFields follow llama-bench's in every format.
var pplugFields = []benchField{
	{"test", kString, func(r *benchRow) string { return r.Test }},
	{"unit", kString, func(r *benchRow) string { return r.Unit }},
	{"avg", kFloat, func(r *benchRow) string { m, _ := meanStd(r.Values); return ftoa(m) }},
	{"stddev", kFloat, func(r *benchRow) string { _, s := meanStd(r.Values); return ftoa(s) }},
	{"note", kString, func(r *benchRow) string { return r.Note }},
	{"n_ctx", kInt, func(r *benchRow) string { return itoa(r.Ctx) }},
	{"pplug_version", kString, constant(buildinfo.Version)},
}

func allBenchFields() []benchField {
	return append(append([]benchField(nil), llamaBenchFields...), pplugFields...)
}

func cpuInfo() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				return strings.TrimSpace(v)
			}
		}
	}
	return fmt.Sprintf("%s/%s (%d CPUs)", runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
}

// benchSystem fills cpu_info, gpu_info and backends the way llama-bench
// does: device descriptions by kind, and the non-CPU backends (else "CPU").
func benchSystem() (cpu, gpu, backends string) {
	var cpus, gpus, names []string
	seen := map[string]bool{}
	for _, d := range llama.Devices() {
		if d.GPU {
			gpus = append(gpus, d.Description)
		} else {
			cpus = append(cpus, d.Description)
		}
		if d.Backend != "" && d.Backend != "CPU" && !seen[d.Backend] {
			seen[d.Backend] = true
			names = append(names, d.Backend)
		}
	}
	if len(cpus) == 0 {
		cpus = []string{cpuInfo()}
	}
	if len(names) == 0 {
		names = []string{"CPU"}
	}
	return strings.Join(cpus, ", "), strings.Join(gpus, ", "), strings.Join(names, ",")
}

// benchInst is one test: llama-bench's cmd_params_instance.
type benchInst struct {
	model                              string
	ngl, nb, nub, threads, depth, nctx int
	poll                               int // llama-bench's --poll
	fa                                 llama.FlashAttn
	dev                                string // -dev: auto, none or DEV0/DEV1
	sm                                 llama.SplitMode
	np, ng                             int
	cloop                              bool // the tg test through the plain C loop
}

func (in benchInst) name() string {
	var s string
	switch {
	case in.ng == 0:
		s = fmt.Sprintf("pp%d", in.np)
	case in.np == 0:
		s = fmt.Sprintf("tg%d", in.ng)
	default:
		s = fmt.Sprintf("pp%d+tg%d", in.np, in.ng)
	}
	if in.depth > 0 {
		s += fmt.Sprintf(" @ d%d", in.depth)
	}
	if in.cloop {
		s += " (C loop)"
	}
	return s
}

// need is the context the test fills: depth, prompt, the start token of a
// generation and the generated tokens.
func (in benchInst) need() int {
	n := in.depth + in.np + in.ng
	if in.np == 0 {
		n++ // generation starts from one token
	}
	return max(n, 16)
}

type benchRun struct {
	p        Params
	stderr   io.Writer
	bar      *progress.Bar
	showProg bool
	prio     int // llama-bench's --prio, for every test's context
	reps     int
	warmup   bool
	rng      *rand.Rand
	out      benchPrinter
	nrows    int
	step     int
	steps    int
	idx      int   // test number for --progress
	aggItems []int // --agg-items
	ntests   int
	started  time.Time
	sys      [3]string
}

// note reports progress: llama-bench's --progress lines, or the bar.
func (b *benchRun) note(what string) {
	b.step++
	if b.showProg {
		fmt.Fprintf(b.stderr, "pplug bench: benchmark %d/%d: %s\n", b.idx, b.ntests, what)
		return
	}
	if b.bar == nil {
		b.bar = progress.New(b.stderr, "bench", float64(b.steps))
	}
	b.bar.Set(float64(b.step-1), fmt.Sprintf("[%d/%d] %s", b.idx, b.ntests, what))
}

// starting announces a test with --progress.
func (b *benchRun) starting(name string) {
	if b.showProg {
		fmt.Fprintf(b.stderr, "pplug bench: benchmark %d/%d: %s: starting\n", b.idx, b.ntests, name)
	}
}

// emit fills the row's values from its samples (value turns a duration into
// the row's unit) and prints it.
func (b *benchRun) emit(r benchRow, ds []time.Duration, value func(time.Duration) float64) {
	r.SamplesNs = make([]uint64, len(ds))
	r.Values = make([]float64, len(ds))
	for i, d := range ds {
		r.SamplesNs[i] = uint64(max(d, 0))
		r.Values[i] = value(d)
	}
	b.nrows++
	b.out.row(&r)
}

// repeat runs a warm-up (unless disabled) and reps timed runs of f; a
// cancelled ctx stops it before the next run (f itself checks ctx between
// tokens and batches).
func (b *benchRun) repeat(ctx context.Context, label string, warm, f func() (time.Duration, error)) ([]time.Duration, error) {
	if b.warmup {
		b.note(label + ": warmup run")
		if warm == nil {
			warm = f
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if _, err := warm(); err != nil {
			return nil, err
		}
	}
	var ds []time.Duration
	for i := range b.reps {
		b.note(fmt.Sprintf("%s: run %d/%d", label, i+1, b.reps))
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		d, err := f()
		if err != nil {
			return nil, err
		}
		ds = append(ds, d)
	}
	return ds, nil
}

func (b *benchRun) randomTokens(m *llama.Model, n int) []llama.Token {
	t := make([]llama.Token, n)
	nv := m.NVocab()
	for i := range t {
		t[i] = llama.Token(b.rng.IntN(nv))
	}
	if m.AddBOS() && m.BOS() >= 0 && n > 0 {
		t[0] = m.BOS()
	}
	return t
}

// pollOption maps llama-bench's --poll to ContextOptions.Poll, where 0
// means ggml's default and -1 no spinning.
func pollOption(poll int) int {
	if poll == 0 {
		return -1
	}
	return poll
}

// instances are the tests in llama-bench's order (which loads each model
// once), one group per model: for every combination of the other lists, a
// pp test per -p, a tg test (and its C-loop twin) per -n, a pg test per
// -pg.
func (bp Params) instances(cloop bool) (groups [][]benchInst, ntests int, err error) {
	groups = make([][]benchInst, len(bp.Models))
	for i, m := range bp.Models {
		for _, dev := range bp.Devices {
			for _, sm := range bp.SplitModes {
				for _, ngl := range bp.GPULayers {
					for _, nb := range bp.Batch {
						for _, nub := range bp.UBatch {
							for _, fa := range bp.FlashAttn {
								for _, t := range bp.Threads {
									for _, poll := range bp.Poll {
										for _, d := range bp.NDepth {
											for _, nctx := range bp.Ctx {
												base := benchInst{model: m, ngl: ngl, dev: dev, sm: sm, nb: nb, nub: nub, fa: fa, threads: t, poll: poll, depth: d, nctx: nctx}
												add, err := bp.tests(base, cloop)
												if err != nil {
													return nil, 0, err
												}
												groups[i] = append(groups[i], add...)
												ntests += len(add)
											}
										}
									}
								}
							}
						}
					}
				}
			}
		}
	}
	return groups, ntests, nil
}

// tests are the pp, tg and pg tests of one combination.
func (bp Params) tests(base benchInst, cloop bool) ([]benchInst, error) {
	var add []benchInst
	for _, np := range bp.NPrompt {
		if np > 0 {
			in := base
			in.np = np
			add = append(add, in)
		}
	}
	for _, ng := range bp.NGen {
		if ng > 0 {
			in := base
			in.ng = ng
			add = append(add, in)
			if cloop {
				in.cloop = true
				add = append(add, in)
			}
		}
	}
	for _, pg := range bp.PG {
		in := base
		in.np, in.ng = pg.Prompt, pg.Gen
		add = append(add, in)
	}
	for _, in := range add {
		if in.need() > MaxPositions {
			return nil, paramErrorf("test %s needs %d positions, more than %d: shorten -p, -n, -pg or -d", in.name(), in.need(), MaxPositions)
		}
		if in.nctx != 0 && in.nctx < in.need() {
			return nil, paramErrorf("--ctx-size %d is smaller than test %s needs (%d positions)", in.nctx, in.name(), in.need())
		}
	}
	return add, nil
}

func (b *benchRun) runAll(ctx context.Context, groups [][]benchInst, models []string, personaInst benchInst, profile bool) error {
	var m *llama.Model
	var cur benchInst
	defer func() {
		if m != nil {
			m.Close()
		}
	}()
	load := func(in benchInst) error {
		if m != nil && cur.model == in.model && cur.ngl == in.ngl && cur.dev == in.dev && cur.sm == in.sm {
			return nil
		}
		if m != nil {
			m.Close()
			m = nil
		}
		var err error
		m, err = llama.LoadModel(ctx, in.model, b.modelOptions(in))
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		cur = in
		return nil
	}
	for i, path := range models {
		for _, in := range groups[i] {
			if err := load(in); err != nil {
				return err
			}
			b.idx++
			if err := b.throughput(ctx, m, in); err != nil {
				return err
			}
		}
		if profile {
			in := personaInst
			in.model = path
			if err := load(in); err != nil {
				return err
			}
			if err := b.personaTests(ctx, m, b.baseRow(m, in), in); err != nil {
				return err
			}
		}
	}
	return nil
}

// baseRow is a row with the model and the options of the test.
func (b *benchRun) baseRow(m *llama.Model, in benchInst) benchRow {
	info := m.Info()
	return benchRow{
		CPUInfo: b.sys[0], GPUInfo: b.sys[1], Backends: b.sys[2],
		Model: in.model, ModelType: info.Description, ModelSize: info.Size, ModelParams: info.Params,
		Batch: in.nb, UBatch: in.nub, Threads: in.threads, Poll: in.poll, GPULayers: in.ngl, FlashAttn: faInt(in.fa),
		Devices: in.dev, SplitMode: in.sm.String(), MainGPU: b.p.MainGPU,
		NDepth: in.depth, Time: time.Now().UTC().Format("2006-01-02T15:04:05Z"),
	}
}

// throughput runs one pp, tg or pp+tg test (at a depth) like llama-bench:
// a fresh context of n_prompt + n_gen + n_depth positions; each repetition
// clears it, fills the depth (not timed), then times the test. tg runs
// through the Go API (greedy sampling and a decode per token) or, for the
// baseline rows, the plain C loop over the same context.
func (b *benchRun) throughput(ctx context.Context, m *llama.Model, in benchInst) error {
	nctx := in.nctx
	if nctx == 0 {
		nctx = in.need()
	}
	// n_batch and n_ubatch are reported as asked (llama.cpp caps them to the
	// context internally, as in llama-bench).
	lc, err := m.NewContext(llama.ContextOptions{NCtx: nctx, NBatch: in.nb, NUBatch: in.nub, Threads: in.threads, ThreadsBatch: in.threads,
		Poll: pollOption(in.poll), Prio: b.prio, FlashAttn: in.fa})
	if err != nil {
		return fmt.Errorf("bench %s: %w", in.name(), err)
	}
	defer lc.Close()
	row := b.baseRow(m, in)
	row.Test, row.NPrompt, row.NGen, row.Ctx, row.Unit = in.name(), in.np, in.ng, lc.NCtx(), "t/s"
	b.starting(in.name())

	depth := b.randomTokens(m, in.depth)
	prompt := b.randomTokens(m, in.np)
	start := b.randomTokens(m, 1)
	if in.depth > 0 {
		start[0] = llama.Token(b.rng.IntN(m.NVocab()))
	}
	fill := func() error {
		if err := lc.ClearMemory(); err != nil {
			return err
		}
		if in.depth == 0 {
			return nil
		}
		_, err := lc.DecodeInputs(ctx, []llama.Input{llama.TokenInput(depth...)}, llama.DecodeOptions{Output: llama.OutputLast})
		return err
	}
	smp, err := llama.NewSampler(llama.SamplerOptions{Temp: 0, RepeatPenalty: 1})
	if err != nil {
		return err
	}
	defer smp.Close()
	gen := func(first []llama.Token, pos llama.Pos, n int) (llama.Stats, error) {
		smp.Reset()
		res, err := lc.Generate(ctx, smp, []llama.Input{llama.TokenInput(first...)}, pos, llama.GenerateOptions{MaxTokens: n, IgnoreEOG: true})
		if err == nil && res.Stats.GenTokens != n {
			err = fmt.Errorf("generated %d tokens of %d (%s)", res.Stats.GenTokens, n, res.Stop)
		}
		return res.Stats, err
	}

	var run, warm func() (time.Duration, error)
	switch {
	case in.cloop:
		row.Note = "plain C loop over the same llama.cpp: the binding's baseline"
		cprompt := append(append([]llama.Token(nil), depth...), start...)
		cl := func(n int) (time.Duration, error) {
			_, us, err := lc.BenchCLoop(ctx, cprompt, n)
			return time.Duration(us) * time.Microsecond, err
		}
		run, warm = func() (time.Duration, error) { return cl(in.ng) }, func() (time.Duration, error) { return cl(1) }
	case in.ng == 0:
		run = func() (time.Duration, error) {
			if err := fill(); err != nil {
				return 0, err
			}
			t0 := time.Now()
			_, err := lc.DecodeInputs(ctx, []llama.Input{llama.TokenInput(prompt...)}, llama.DecodeOptions{Pos: llama.Pos(in.depth), Output: llama.OutputLast})
			return time.Since(t0), err
		}
	case in.np == 0:
		row.Note = "Go API: greedy sampling + decode per token"
		tg := func(n int) (time.Duration, error) {
			if err := lc.ClearMemory(); err != nil {
				return 0, err
			}
			// The depth and the start token go in untimed; GenTime covers
			// the n sampled and decoded tokens.
			st, err := gen(append(append([]llama.Token(nil), depth...), start...), 0, n)
			return st.GenTime, err
		}
		run, warm = func() (time.Duration, error) { return tg(in.ng) }, func() (time.Duration, error) { return tg(1) }
	default:
		row.Note = "Go API: the prompt, then greedy sampling + decode per token"
		pg := func(n int) (time.Duration, error) {
			if err := fill(); err != nil {
				return 0, err
			}
			st, err := gen(prompt, llama.Pos(in.depth), n)
			return st.PromptTime + st.GenTime, err
		}
		run, warm = func() (time.Duration, error) { return pg(in.ng) }, func() (time.Duration, error) { return pg(1) }
	}
	ds, err := b.repeat(ctx, in.name(), warm, run)
	if err != nil {
		return fmt.Errorf("bench %s: %w", in.name(), err)
	}
	n := float64(in.np + in.ng)
	b.emit(row, ds, func(d time.Duration) float64 {
		if d <= 0 {
			return 0
		}
		return n / d.Seconds()
	})
	return nil
}

// ---- output: llama-bench's printers ----------------------------------------

// benchPrinter writes results as they come (llama-bench's printer).
type benchPrinter interface {
	header()
	row(r *benchRow)
	footer()
}

// benchLayout is what the markdown table needs to pick its columns.
type benchLayout struct {
	ngls, threads, polls, batches, ubatches []int
	devs                                    []string
	sms                                     []llama.SplitMode
	fas                                     []llama.FlashAttn
	backends                                string
	personaOnly                             bool // no throughput test: no llama-bench table
}

var benchPrinters = map[string]func(io.Writer, benchLayout) benchPrinter{
	"md":    func(w io.Writer, l benchLayout) benchPrinter { return &mdPrinter{w: w, l: l} },
	"csv":   func(w io.Writer, _ benchLayout) benchPrinter { return &csvPrinter{w: w} },
	"json":  func(w io.Writer, _ benchLayout) benchPrinter { return &jsonPrinter{w: w} },
	"jsonl": func(w io.Writer, _ benchLayout) benchPrinter { return &jsonPrinter{w: w, lines: true} },
	"sql":   func(w io.Writer, _ benchLayout) benchPrinter { return &sqlPrinter{w: w} },
}

type csvPrinter struct{ w io.Writer }

func csvQuote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func (p *csvPrinter) header() {
	var names []string
	for _, f := range allBenchFields() {
		names = append(names, f.name)
	}
	fmt.Fprintln(p.w, strings.Join(names, ","))
}

func (p *csvPrinter) row(r *benchRow) {
	var vals []string
	for _, f := range allBenchFields() {
		vals = append(vals, csvQuote(f.get(r)))
	}
	fmt.Fprintln(p.w, strings.Join(vals, ","))
}

func (p *csvPrinter) footer() {}

// jsonString quotes s as JSON without HTML escaping.
func jsonString(s string) string {
	var sb strings.Builder
	sb.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			sb.WriteString(`\"`)
		case r == '\\':
			sb.WriteString(`\\`)
		case r < 0x20:
			fmt.Fprintf(&sb, `\u%04x`, r)
		default:
			sb.WriteRune(r)
		}
	}
	sb.WriteByte('"')
	return sb.String()
}

func jsonValue(f benchField, v string) string {
	switch f.kind {
	case kString:
		return jsonString(v)
	case kBool:
		if v == "0" {
			return "false"
		}
		return "true"
	}
	return v
}

type jsonPrinter struct {
	w     io.Writer
	lines bool // jsonl: one object per line
	n     int
}

func (p *jsonPrinter) header() {
	if !p.lines {
		fmt.Fprint(p.w, "[\n")
	}
}

func (p *jsonPrinter) row(r *benchRow) {
	type kv struct{ k, v string }
	var kvs []kv
	for _, f := range llamaBenchFields {
		kvs = append(kvs, kv{f.name, jsonValue(f, f.get(r))})
	}
	ns := make([]string, len(r.SamplesNs))
	for i, x := range r.SamplesNs {
		ns[i] = utoa(x)
	}
	floats := func(xs []float64) string {
		s := make([]string, len(xs))
		for i, x := range xs {
			s[i] = ftoa(x)
		}
		return "[ " + strings.Join(s, ", ") + " ]"
	}
	kvs = append(kvs, kv{"samples_ns", "[ " + strings.Join(ns, ", ") + " ]"}, kv{"samples_ts", floats(r.samplesTs())})
	for _, f := range pplugFields {
		kvs = append(kvs, kv{f.name, jsonValue(f, f.get(r))})
		if f.name == "stddev" {
			kvs = append(kvs, kv{"samples", floats(r.Values)})
		}
	}
	if p.lines {
		parts := make([]string, len(kvs))
		for i, e := range kvs {
			parts[i] = jsonString(e.k) + ": " + e.v
		}
		fmt.Fprintf(p.w, "{%s}\n", strings.Join(parts, ", "))
		return
	}
	if p.n > 0 {
		fmt.Fprint(p.w, ",\n")
	}
	p.n++
	fmt.Fprint(p.w, "  {\n")
	for i, e := range kvs {
		sep := ","
		if i == len(kvs)-1 {
			sep = ""
		}
		fmt.Fprintf(p.w, "    %s: %s%s\n", jsonString(e.k), e.v, sep)
	}
	fmt.Fprint(p.w, "  }")
}

func (p *jsonPrinter) footer() {
	if !p.lines {
		fmt.Fprint(p.w, "\n]\n")
	}
}

type sqlPrinter struct{ w io.Writer }

func (p *sqlPrinter) header() {
	fields := allBenchFields()
	fmt.Fprintln(p.w, "CREATE TABLE IF NOT EXISTS llama_bench (")
	for i, f := range fields {
		typ := map[fieldKind]string{kString: "TEXT", kBool: "INTEGER", kInt: "INTEGER", kFloat: "REAL"}[f.kind]
		sep := ","
		if i == len(fields)-1 {
			sep = ""
		}
		fmt.Fprintf(p.w, "  %s %s%s\n", f.name, typ, sep)
	}
	fmt.Fprint(p.w, ");\n\n")
}

func (p *sqlPrinter) row(r *benchRow) {
	var names, vals []string
	for _, f := range allBenchFields() {
		names = append(names, f.name)
		vals = append(vals, "'"+strings.ReplaceAll(f.get(r), "'", "''")+"'")
	}
	fmt.Fprintf(p.w, "INSERT INTO llama_bench (%s) VALUES (%s);\n", strings.Join(names, ", "), strings.Join(vals, ", "))
}

func (p *sqlPrinter) footer() {}

// mdPrinter is llama-bench's markdown table (columns for the options that
// differ from the defaults) for the throughput tests, then a table of the
// persona tests.
type mdPrinter struct {
	w       io.Writer
	l       benchLayout
	cols    []string
	persona []*benchRow
}

func isDefault[T comparable](vals []T, def T) bool { return len(vals) == 1 && vals[0] == def }

func mdWidth(col string) int {
	switch col {
	case "model":
		return -30
	case "size", "params":
		return 10
	case "backend":
		return -10
	case "ngl", "fa":
		return 3
	case "threads", "n_batch":
		return 7
	case "n_ubatch":
		return 8
	case "test":
		return 15
	case "t/s":
		return 20
	}
	return 10
}

func (p *mdPrinter) header() {
	l := p.l
	if l.personaOnly {
		return
	}
	cpu := strings.Contains(l.backends, "CPU") || strings.Contains(l.backends, "BLAS")
	p.cols = []string{"model", "size", "params", "backend"}
	if !cpu || !isDefault(l.ngls, 99) {
		p.cols = append(p.cols, "ngl")
	}
	if !isDefault(l.sms, llama.SplitLayer) {
		p.cols = append(p.cols, "sm")
	}
	if !isDefault(l.devs, "auto") {
		p.cols = append(p.cols, "dev")
	}
	if cpu || !isDefault(l.threads, llama.DefaultThreads()) {
		p.cols = append(p.cols, "threads")
	}
	if !isDefault(l.polls, 50) {
		p.cols = append(p.cols, "poll")
	}
	if !isDefault(l.batches, 2048) {
		p.cols = append(p.cols, "n_batch")
	}
	if !isDefault(l.ubatches, 512) {
		p.cols = append(p.cols, "n_ubatch")
	}
	if !isDefault(l.fas, llama.FlashAttnAuto) {
		p.cols = append(p.cols, "fa")
	}
	p.cols = append(p.cols, "test", "t/s")
	fmt.Fprint(p.w, "|")
	for _, c := range p.cols {
		fmt.Fprintf(p.w, " %*s |", mdWidth(c), c)
	}
	fmt.Fprint(p.w, "\n|")
	for _, c := range p.cols {
		w := mdWidth(c)
		end := "-"
		if w > 0 {
			end = ":"
		}
		fmt.Fprintf(p.w, " %s%s |", strings.Repeat("-", max(w, -w)-1), end)
	}
	fmt.Fprintln(p.w)
}

func mdSize(n uint64) string {
	if n < 1<<30 {
		return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
}

func mdParams(n uint64) string {
	if n < 1e9 {
		return fmt.Sprintf("%.2f M", float64(n)/1e6)
	}
	return fmt.Sprintf("%.2f B", float64(n)/1e9)
}

func (p *mdPrinter) row(r *benchRow) {
	if strings.HasPrefix(r.Test, "persona") {
		p.persona = append(p.persona, r)
		return
	}
	fmt.Fprint(p.w, "|")
	for _, c := range p.cols {
		var v string
		w := mdWidth(c)
		switch c {
		case "model":
			v = r.ModelType
		case "size":
			v = mdSize(r.ModelSize)
		case "params":
			v = mdParams(r.ModelParams)
		case "backend":
			v = r.Backends
		case "ngl":
			v = itoa(r.GPULayers)
		case "sm":
			v = r.SplitMode
		case "dev":
			v = r.Devices
		case "threads":
			v = itoa(r.Threads)
		case "poll":
			v = itoa(r.Poll)
		case "n_batch":
			v = itoa(r.Batch)
		case "n_ubatch":
			v = itoa(r.UBatch)
		case "fa":
			v = itoa(r.FlashAttn)
		case "test":
			v = r.Test
		case "t/s":
			m, s := meanStd(r.samplesTs())
			v = fmt.Sprintf("%.2f ± %.2f", m, s)
			w++ // "±" is two bytes
		}
		fmt.Fprintf(p.w, " %*s |", w, v)
	}
	fmt.Fprintln(p.w)
}

func (p *mdPrinter) footer() {
	if len(p.persona) > 0 {
		if !p.l.personaOnly {
			fmt.Fprintln(p.w)
		}
		fmt.Fprintln(p.w, "| model | persona test | value | unit | note |")
		fmt.Fprintln(p.w, "| --- | --- | ---: | --- | --- |")
		for _, r := range p.persona {
			m, s := meanStd(r.Values)
			fmt.Fprintf(p.w, "| %s | %s | %.2f ± %.2f | %s | %s |\n", filepath.Base(r.Model), r.Test, m, s, r.Unit, r.Note)
		}
	}
	fmt.Fprintf(p.w, "\nbuild: %s (%d), pplug %s\n", buildinfo.LlamaCppCommit, llamaCppBuildNumber, buildinfo.Version)
}

// modelOptions are the load options of a test.
func (b *benchRun) modelOptions(in benchInst) llama.ModelOptions {
	o := llama.ModelOptions{GPULayers: in.ngl, SplitMode: in.sm, MainGPU: b.p.MainGPU}
	if in.dev != "auto" {
		o.Devices = strings.Split(in.dev, "/")
	}
	return o
}
