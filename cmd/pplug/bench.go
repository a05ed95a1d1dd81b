package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pplug/pplug/internal/buildinfo"
	"github.com/pplug/pplug/internal/progress"
	"github.com/pplug/pplug/llama"
)

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure tokens/s like llama-bench, plus the persona's costs (time to first token with PPlug vs retrieval, encoding, aggregation)",
		UsageText: "pplug bench -m MODEL [-p 512] [-n 128] [-r 5] [-t 1,2] [-b 2048] [-ub 512] [-ngl 0] [-o md|json|csv|jsonl]\n" +
			"   pplug bench -m MODEL --profile HISTORY.json [--plug PLUG.gguf] [--encoder BGE.gguf]   (adds the persona tests)",
		Flags: []cli.Flag{
			verboseFlag(),
			&cli.StringFlag{Name: "model", Aliases: []string{"m"}, Usage: "GGUF model `FILE`", EnvVars: []string{"PPLUG_MODEL"}},
			&cli.StringFlag{Name: "n-prompt", Aliases: []string{"p"}, Value: "512", Usage: "prompt lengths to test (comma list; 0 skips)"},
			&cli.StringFlag{Name: "n-gen", Aliases: []string{"n"}, Value: "128", Usage: "generation lengths to test (comma list; 0 skips)"},
			&cli.IntFlag{Name: "repetitions", Aliases: []string{"r"}, Value: 5, Usage: "repetitions of each test (after one warm-up run)"},
			&cli.StringFlag{Name: "threads", Aliases: []string{"t"}, Value: strconv.Itoa(llama.DefaultThreads()), Usage: "thread counts (comma list)"},
			&cli.StringFlag{Name: "batch-size", Aliases: []string{"b"}, Value: "2048", Usage: "logical batch sizes (comma list)"},
			&cli.StringFlag{Name: "ubatch-size", Aliases: []string{"ub"}, Value: "512", Usage: "physical batch sizes (comma list)"},
			&cli.StringFlag{Name: "ctx-size", Aliases: []string{"c"}, Value: "0", Usage: "context sizes (comma list; 0: what the tests need)"},
			&cli.StringFlag{Name: "n-gpu-layers", Aliases: []string{"ngl"}, Value: "0", Usage: "GPU layers (comma list)"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "md", Usage: "output format: md, json, csv or jsonl"},
			&cli.BoolFlag{Name: "no-c-loop", Usage: "skip the plain C loop baseline row for generation"},
			&cli.BoolFlag{Name: "no-warmup", Usage: "skip the warm-up run"},
			&cli.Uint64Flag{Name: "seed", Value: 42, Usage: "seed of the random prompt tokens"},
			// persona tests
			&cli.StringFlag{Name: "profile", Usage: "user profile `FILE`: adds the persona tests"},
			&cli.StringFlag{Name: "question-id", Usage: "the question to take from a LaMP questions file"},
			&cli.StringFlag{Name: "task", Usage: "LaMP task of the profile"},
			&cli.StringFlag{Name: "fields", Usage: "history fields to use as text"},
			&cli.IntFlag{Name: "max-items", Value: 512, Usage: "history items kept"},
			&cli.StringFlag{Name: "plug", Usage: "plug `FILE` (default: a freshly initialised one: timings do not depend on training)"},
			&cli.StringFlag{Name: "encoder", Usage: "history encoder GGUF (default: the LLM itself)"},
			&cli.StringFlag{Name: "pooling", Value: "default", Usage: "encoder pooling"},
			&cli.IntFlag{Name: "encoder-max-tokens", Value: 512, Usage: "history item truncation"},
			&cli.StringFlag{Name: "device", Value: "auto", Usage: "plug-in kernels: auto, cpu, cuda or metal"},
			&cli.IntFlag{Name: "retrieve-k", Value: 4, Usage: "history items in the retrieval baseline's prompt"},
			&cli.StringFlag{Name: "query", Usage: "the prompt of the time-to-first-token tests (default: the profile's LaMP input, else a fixed request)"},
			&cli.StringFlag{Name: "agg-items", Value: "32,128,512", Usage: "history sizes of the aggregation latency test"},
		},
		Action: runBench,
	}
}

// benchRow is one result, in llama-bench's spirit.
type benchRow struct {
	BuildVersion   string    `json:"build_version"`
	LlamaCppCommit string    `json:"llama_cpp_commit"`
	CPUInfo        string    `json:"cpu_info"`
	Backend        string    `json:"backend"`
	Model          string    `json:"model_filename"`
	ModelType      string    `json:"model_type"`
	ModelSize      uint64    `json:"model_size"`
	ModelParams    uint64    `json:"model_n_params"`
	Threads        int       `json:"n_threads"`
	Batch          int       `json:"n_batch"`
	UBatch         int       `json:"n_ubatch"`
	Ctx            int       `json:"n_ctx"`
	GPULayers      int       `json:"n_gpu_layers"`
	Test           string    `json:"test"`
	NPrompt        int       `json:"n_prompt"`
	NGen           int       `json:"n_gen"`
	Unit           string    `json:"unit"`
	Avg            float64   `json:"avg"`
	Stddev         float64   `json:"stddev"`
	Samples        []float64 `json:"samples"`
	Note           string    `json:"note,omitempty"`
	Time           string    `json:"test_time"`
}

// AvgTS and StddevTS mirror llama-bench's names for throughput rows.
func (r benchRow) MarshalJSON() ([]byte, error) {
	type plain benchRow
	v := struct {
		plain
		AvgTS    *float64 `json:"avg_ts,omitempty"`
		StddevTS *float64 `json:"stddev_ts,omitempty"`
	}{plain: plain(r)}
	if r.Unit == "t/s" {
		v.AvgTS, v.StddevTS = &r.Avg, &r.Stddev
	}
	return json.Marshal(v)
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

func parseIntList(c *cli.Context, name string, minVal int) ([]int, error) {
	var out []int
	for _, f := range strings.Split(c.String(name), ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		v, err := strconv.Atoi(f)
		if err != nil || v < minVal {
			return nil, usagef("--%s: %q is not a whole number >= %d", name, f, minVal)
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, usagef("--%s: empty list", name)
	}
	return out, nil
}

func cpuInfo() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				return fmt.Sprintf("%s (%d CPUs)", strings.TrimSpace(v), runtime.NumCPU())
			}
		}
	}
	return fmt.Sprintf("%s/%s (%d CPUs)", runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
}

type benchRun struct {
	c       *cli.Context
	stderr  io.Writer
	bar     *progress.Bar
	reps    int
	warmup  bool
	rng     *rand.Rand
	base    benchRow
	rows    []benchRow
	step    int
	steps   int
	started time.Time
}

// progress reports the step about to run on stderr.
func (b *benchRun) progress(what string) {
	b.step++
	if b.bar == nil {
		b.bar = progress.New(b.stderr, "bench", float64(b.steps))
	}
	b.bar.Set(float64(b.step-1), fmt.Sprintf("[%d/%d] %s", b.step, b.steps, what))
}

func (b *benchRun) add(r benchRow, samples []float64) {
	r.Samples = samples
	r.Avg, r.Stddev = meanStd(samples)
	r.Time = time.Now().UTC().Format(time.RFC3339)
	b.rows = append(b.rows, r)
}

// repeat runs f once to warm up (unless disabled) and reps times for the
// samples.
func (b *benchRun) repeat(label string, f func() (float64, error)) ([]float64, error) {
	if b.warmup {
		b.progress(label + " warm-up")
		if _, err := f(); err != nil {
			return nil, err
		}
	}
	var xs []float64
	for i := range b.reps {
		b.progress(fmt.Sprintf("%s rep %d/%d", label, i+1, b.reps))
		x, err := f()
		if err != nil {
			return nil, err
		}
		xs = append(xs, x)
	}
	return xs, nil
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

func runBench(c *cli.Context) error {
	if c.Bool("verbose") {
		setupLogging(true, c.App.ErrWriter)
	}
	ctx := c.Context
	stdout, stderr := c.App.Writer, c.App.ErrWriter
	format := c.String("output")
	if format != "md" && format != "json" && format != "csv" && format != "jsonl" {
		return usagef("--output %q: want md, json, csv or jsonl", format)
	}
	nps, err := parseIntList(c, "n-prompt", 0)
	if err != nil {
		return err
	}
	ngs, err := parseIntList(c, "n-gen", 0)
	if err != nil {
		return err
	}
	threads, err := parseIntList(c, "threads", 1)
	if err != nil {
		return err
	}
	batches, err := parseIntList(c, "batch-size", 1)
	if err != nil {
		return err
	}
	ubatches, err := parseIntList(c, "ubatch-size", 1)
	if err != nil {
		return err
	}
	ctxs, err := parseIntList(c, "ctx-size", 0)
	if err != nil {
		return err
	}
	ngls, err := parseIntList(c, "n-gpu-layers", -1)
	if err != nil {
		return err
	}
	if c.Int("repetitions") < 1 {
		return usagef("--repetitions must be at least 1")
	}
	if c.String("model") == "" {
		return usagef("no model given: pass -m FILE (a GGUF model)")
	}

	b := &benchRun{c: c, stderr: stderr, reps: c.Int("repetitions"), warmup: !c.Bool("no-warmup"),
		rng: rand.New(rand.NewPCG(c.Uint64("seed"), 7))}
	b.base = benchRow{BuildVersion: buildinfo.Version, LlamaCppCommit: buildinfo.LlamaCppCommit, CPUInfo: cpuInfo()}
	perCombo := 0
	for _, np := range nps {
		if np > 0 {
			perCombo += b.reps + 1
		}
	}
	for _, ng := range ngs {
		if ng > 0 {
			perCombo += 2 * (b.reps + 1)
		}
	}
	b.steps = perCombo * len(threads) * len(batches) * len(ubatches) * len(ctxs) * len(ngls)
	if c.String("profile") != "" {
		b.steps += 6*(b.reps+1) + len(strings.Split(c.String("agg-items"), ","))*(b.reps+1) + 1
	}
	b.started = time.Now()

	llama.LoadBackends()
	var lastModel *llama.Model
	defer func() {
		if lastModel != nil {
			lastModel.Close()
		}
	}()
	for _, ngl := range ngls {
		if lastModel != nil {
			lastModel.Close()
		}
		m, err := llama.LoadModel(ctx, c.String("model"), llama.ModelOptions{GPULayers: ngl})
		if err != nil {
			return err
		}
		lastModel = m
		info := m.Info()
		backend := "CPU"
		if ngl != 0 && llama.SupportsGPUOffload() {
			backend = "GPU"
		}
		for _, t := range threads {
			for _, nb := range batches {
				for _, nub := range ubatches {
					for _, nctx := range ctxs {
						row := b.base
						row.Backend, row.Model, row.ModelType = backend, info.Path, info.Description
						row.ModelSize, row.ModelParams = info.Size, info.Params
						row.Threads, row.Batch, row.UBatch, row.GPULayers = t, nb, nub, ngl
						if err := b.throughput(ctx, m, row, nctx, nps, ngs); err != nil {
							return err
						}
					}
				}
			}
		}
		if c.String("profile") != "" && ngl == ngls[len(ngls)-1] {
			row := b.base
			row.Backend, row.Model, row.ModelType = backend, info.Path, info.Description
			row.ModelSize, row.ModelParams = info.Size, info.Params
			row.Threads, row.Batch, row.UBatch, row.GPULayers = threads[len(threads)-1], batches[0], ubatches[0], ngl
			if err := b.personaTests(ctx, m, row); err != nil {
				return err
			}
		}
	}
	if b.bar != nil {
		b.bar.Finish("")
	}
	fmt.Fprintf(stderr, "bench: %d results in %s\n", len(b.rows), time.Since(b.started).Round(time.Second))
	return writeBench(stdout, format, b.rows)
}

// throughput runs the pp and tg tests for one combination of options.
func (b *benchRun) throughput(ctx context.Context, m *llama.Model, row benchRow, nctx int, nps, ngs []int) error {
	need := 16
	for _, np := range nps {
		need = max(need, np)
	}
	for _, ng := range ngs {
		need = max(need, ng+1)
	}
	if nctx == 0 {
		nctx = need
	}
	if nctx < need {
		return usagef("--ctx-size %d is smaller than the longest test (%d positions)", nctx, need)
	}
	lc, err := m.NewContext(llama.ContextOptions{NCtx: nctx, NBatch: row.Batch, NUBatch: row.UBatch, Threads: row.Threads, ThreadsBatch: row.Threads})
	if err != nil {
		return err
	}
	defer lc.Close()
	row.Ctx = lc.NCtx()
	row.Batch = lc.NBatch()
	label := fmt.Sprintf("t=%d b=%d ub=%d ngl=%d", row.Threads, row.Batch, row.UBatch, row.GPULayers)
	for _, np := range nps {
		if np == 0 {
			continue
		}
		prompt := b.randomTokens(m, np)
		xs, err := b.repeat(fmt.Sprintf("%s pp%d", label, np), func() (float64, error) {
			if err := lc.ClearMemory(); err != nil {
				return 0, err
			}
			t0 := time.Now()
			if _, err := lc.DecodeInputs(ctx, []llama.Input{llama.TokenInput(prompt...)}, llama.DecodeOptions{Output: llama.OutputLast}); err != nil {
				return 0, err
			}
			return float64(np) / time.Since(t0).Seconds(), nil
		})
		if err != nil {
			return err
		}
		r := row
		r.Test, r.NPrompt, r.Unit = fmt.Sprintf("pp%d", np), np, "t/s"
		b.add(r, xs)
	}
	for _, ng := range ngs {
		if ng == 0 {
			continue
		}
		smp, err := llama.NewSampler(llama.SamplerOptions{Temp: 0, RepeatPenalty: 1})
		if err != nil {
			return err
		}
		start := b.randomTokens(m, 1)
		xs, err := b.repeat(fmt.Sprintf("%s tg%d", label, ng), func() (float64, error) {
			if err := lc.ClearMemory(); err != nil {
				return 0, err
			}
			smp.Reset()
			res, err := lc.Generate(ctx, smp, []llama.Input{llama.TokenInput(start...)}, 0, llama.GenerateOptions{MaxTokens: ng, IgnoreEOG: true})
			if err != nil {
				return 0, err
			}
			return res.Stats.GenTPS(), nil
		})
		smp.Close()
		if err != nil {
			return err
		}
		r := row
		r.Test, r.NGen, r.Unit = fmt.Sprintf("tg%d", ng), ng, "t/s"
		r.Note = "Go API: greedy sampling + decode per token"
		b.add(r, xs)
		if b.c.Bool("no-c-loop") {
			b.steps -= b.reps + 1
			continue
		}
		xs, err = b.repeat(fmt.Sprintf("%s tg%d C loop", label, ng), func() (float64, error) {
			_, us, err := lc.BenchCLoop(start, ng)
			if err != nil {
				return 0, err
			}
			return float64(ng) / (float64(us) / 1e6), nil
		})
		if err != nil {
			return err
		}
		r = row
		r.Test, r.NGen, r.Unit = fmt.Sprintf("tg%d (C loop)", ng), ng, "t/s"
		r.Note = "plain C loop over the same llama.cpp: the binding's baseline"
		b.add(r, xs)
	}
	return nil
}

func writeBench(w io.Writer, format string, rows []benchRow) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if rows == nil {
			rows = []benchRow{}
		}
		return enc.Encode(rows)
	case "jsonl":
		enc := json.NewEncoder(w)
		for _, r := range rows {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	case "csv":
		cw := csv.NewWriter(w)
		cw.Write([]string{"build_version", "llama_cpp_commit", "cpu_info", "backend", "model_filename", "model_type", "model_size", "model_n_params",
			"n_threads", "n_batch", "n_ubatch", "n_ctx", "n_gpu_layers", "test", "n_prompt", "n_gen", "unit", "avg", "stddev", "samples", "test_time"})
		for _, r := range rows {
			s := make([]string, len(r.Samples))
			for i, x := range r.Samples {
				s[i] = strconv.FormatFloat(x, 'g', 6, 64)
			}
			cw.Write([]string{r.BuildVersion, r.LlamaCppCommit, r.CPUInfo, r.Backend, r.Model, r.ModelType,
				strconv.FormatUint(r.ModelSize, 10), strconv.FormatUint(r.ModelParams, 10),
				strconv.Itoa(r.Threads), strconv.Itoa(r.Batch), strconv.Itoa(r.UBatch), strconv.Itoa(r.Ctx), strconv.Itoa(r.GPULayers),
				r.Test, strconv.Itoa(r.NPrompt), strconv.Itoa(r.NGen), r.Unit,
				strconv.FormatFloat(r.Avg, 'f', 4, 64), strconv.FormatFloat(r.Stddev, 'f', 4, 64), strings.Join(s, ";"), r.Time})
		}
		cw.Flush()
		return cw.Error()
	}
	// Markdown: llama-bench's table for t/s rows, then the persona tests.
	fmt.Fprintln(w, "| model | size | params | backend | threads | n_batch | n_ubatch | ngl | test | t/s |")
	fmt.Fprintln(w, "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- | ---: |")
	var other []benchRow
	for _, r := range rows {
		if r.Unit != "t/s" || strings.HasPrefix(r.Test, "persona") {
			other = append(other, r)
			continue
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %d | %d | %d | %d | %s | %.2f ± %.2f |\n", r.ModelType, humanBytes(r.ModelSize),
			humanCount(float64(r.ModelParams)), r.Backend, r.Threads, r.Batch, r.UBatch, r.GPULayers, r.Test, r.Avg, r.Stddev)
	}
	if len(other) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| persona test | value | unit | note |")
		fmt.Fprintln(w, "| --- | ---: | --- | --- |")
		for _, r := range other {
			fmt.Fprintf(w, "| %s | %.4g ± %.2g | %s | %s |\n", r.Test, r.Avg, r.Stddev, r.Unit, r.Note)
		}
	}
	fmt.Fprintf(w, "\nbuild: %s, llama.cpp %s, %s\n", firstNonEmpty(rows, func(r benchRow) string { return r.BuildVersion }),
		buildinfo.LlamaCppCommit, cpuInfo())
	return nil
}

func firstNonEmpty(rows []benchRow, f func(benchRow) string) string {
	for _, r := range rows {
		if s := f(r); s != "" {
			return s
		}
	}
	return buildinfo.Version
}

var errNoItems = errors.New("bench: the profile has no items")
