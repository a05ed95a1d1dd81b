package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/pplug/pplug/bench"
	"github.com/pplug/pplug/llama"
	"github.com/pplug/pplug/persona"
)

// pplug bench follows llama-bench (llama.cpp tools/llama-bench at the pinned
// commit): the same options, tests (pp, tg, pp+tg, at a depth), field names
// and output formats, so that scripts written for llama-bench read its
// results. pplug adds rows (the plain C loop baseline, the persona tests) and
// fields after llama-bench's (test, unit, avg, stddev, samples, note, n_ctx,
// pplug_version).

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure tokens/s like llama-bench, plus the persona's costs (time to first token with PPlug vs retrieval, encoding, aggregation)",
		UsageText: "pplug bench -m MODEL [-m MODEL2] [-p 512] [-n 128] [-pg 512,128] [-d 0] [-r 5] [-t 1,2] [-b 2048] [-ub 512] [-fa auto] [--poll 50] [--prio 0] [-ngl 99] [-dev auto] [-sm layer] [-o md|csv|json|jsonl|sql] [--progress]\n" +
			"   pplug bench -m MODEL --profile HISTORY.json [--plug PLUG.gguf] [--encoder BGE.gguf]   (adds the persona tests)\n\n" +
			"Numeric options take several values as a comma list, by repeating the option, or as ranges\n" +
			"first-last, first-last+step, first-last*mult (llama-bench's syntax); every combination runs.",
		Flags: []cli.Flag{
			verboseFlag(),
			listFlag("model", "m", "", "GGUF model `FILE`s (comma list or repeated)", "PPLUG_MODEL"),
			listFlag("n-prompt", "p", "512", "prompt lengths: pp tests (0 skips)", ""),
			listFlag("n-gen", "n", "128", "generation lengths: tg tests (0 skips)", ""),
			listFlag("pg", "", "", "`PP,TG`: a prompt then a generation, timed together (repeat for more pairs)", ""),
			listFlag("n-depth", "d", "0", "tokens already in the KV cache before each test", ""),
			&cli.IntFlag{Name: "repetitions", Aliases: []string{"r"}, Value: 5, Usage: "repetitions of each test (after one warm-up run)"},
			listFlag("threads", "t", strconv.Itoa(llama.DefaultThreads()), "thread counts", ""),
			listFlag("poll", "", "50", "how long idle CPU workers spin before they sleep: 0 (at once) to 100 (ggml's threadpools; an OpenMP build, the default, leaves it to OpenMP, as llama-bench's does)", ""),
			&cli.IntFlag{Name: "prio", Value: 0, Usage: "CPU workers' priority: -1 low, 0 normal, 1 medium, 2 high, 3 realtime"},
			listFlag("batch-size", "b", "2048", "logical batch sizes", ""),
			listFlag("ubatch-size", "ub", "512", "physical batch sizes", ""),
			listFlag("flash-attn", "fa", "auto", "flash attention: on, off or auto (1, 0, -1)", ""),
			listFlag("ctx-size", "c", "0", "context sizes (0: what each test needs, n_prompt + n_gen + n_depth + 1)", ""),
			listFlag("n-gpu-layers", "ngl", "99", "most layers to store in VRAM: numbers, auto or all", ""),
			listFlag("device", "dev", "auto", "device lists to offload to, `DEV0/DEV1` (auto: every GPU; none), one test per list", ""),
			listFlag("split-mode", "sm", "layer", "split modes: none, layer or row", ""),
			&cli.IntFlag{Name: "main-gpu", Aliases: []string{"mg"}, Value: 0, Usage: "the GPU that holds the model with -sm none"},
			&cli.BoolFlag{Name: "list-devices", Usage: "print the available devices and exit"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "md", Usage: "output format: md, csv, json, jsonl or sql"},
			&cli.BoolFlag{Name: "progress", Usage: "print each test's progress on stderr (llama-bench's --progress)"},
			&cli.BoolFlag{Name: "no-c-loop", Usage: "skip the plain C loop baseline rows of the tg tests"},
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
			&cli.StringFlag{Name: "cache-dir", Usage: "embedding cache `DIR`: adds the test of a persona prepared from it (as generate does for a profile it has seen)", EnvVars: []string{"PPLUG_CACHE_DIR"}},
			pluginDeviceFlag(),
			&cli.IntFlag{Name: "retrieve-k", Value: 4, Usage: "history items in the retrieval baseline's prompt"},
			&cli.StringFlag{Name: "query", Usage: "the prompt of the time-to-first-token tests (default: the profile's LaMP input, else a fixed request)"},
			&cli.StringFlag{Name: "agg-items", Value: "32,128,512", Usage: "history sizes of the aggregation latency test"},
		},
		Action: runBench,
	}
}

// listFlag is an option that takes several values, as a comma list or by
// repeating it (llama-bench accepts both "-p 64,128" and "-p 64 -p 128").
func listFlag(name, alias, def, usage, env string) cli.Flag {
	f := &cli.StringSliceFlag{Name: name, Usage: usage}
	if def != "" {
		f.Value = cli.NewStringSlice(def)
	}
	if alias != "" {
		f.Aliases = []string{alias}
	}
	if env != "" {
		f.EnvVars = []string{env}
	}
	return f
}

// listStrings returns the values of a list option.
func listStrings(c *cli.Context, name string) []string {
	var out []string
	for _, v := range c.StringSlice(name) {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				out = append(out, f)
			}
		}
	}
	return out
}

// parseRange reads llama-bench's "first[-last[+step|*mult]]". The first
// value may be negative (-ngl -1); what a list accepts is checked by its
// caller, so that -p -1 is told its range, not that it is no number.
func parseRange(s string) ([]int, error) {
	first, rest, err := rangeNumber(s, true)
	if err != nil {
		return nil, err
	}
	if rest == "" {
		return []int{first}, nil
	}
	if rest[0] != '-' {
		return nil, errors.New("not a number or a range first-last[+step|*mult]")
	}
	last, rest, err := rangeNumber(rest[1:], false)
	if err != nil {
		return nil, fmt.Errorf("a range needs a last value: %w", err)
	}
	op, step := byte('+'), 1
	if rest != "" {
		op = rest[0]
		if op != '+' && op != '*' {
			return nil, errors.New("the step of a range is +N or *N")
		}
		if step, rest, err = rangeNumber(rest[1:], false); err != nil || rest != "" {
			return nil, errors.New("the step of a range is +N or *N")
		}
	}
	return expandRange(first, last, op, step)
}

// rangeNumber reads the whole number that starts s (with a sign when
// signed) and returns the rest of s.
func rangeNumber(s string, signed bool) (int, string, error) {
	i := 0
	if signed && strings.HasPrefix(s, "-") {
		i = 1
	}
	j := i
	for j < len(s) && s[j] >= '0' && s[j] <= '9' {
		j++
	}
	if j == i {
		return 0, s, errors.New("not a number")
	}
	v, err := strconv.Atoi(s[:j])
	if err != nil {
		return 0, s, fmt.Errorf("%s is too large", s[:j])
	}
	return v, s[j:], nil
}

// expandRange lists first, first op step, ... up to last.
func expandRange(first, last int, op byte, step int) ([]int, error) {
	var out []int
	for i := first; i <= last; {
		out = append(out, i)
		prev := i
		if op == '+' {
			i += step
		} else {
			i *= step
		}
		if i <= prev {
			return nil, errors.New("the range does not advance")
		}
		if len(out) > 10000 {
			return nil, errors.New("the range has more than 10000 values")
		}
	}
	return out, nil
}

// benchLimit is what a numeric list of bench accepts.
type benchLimit struct {
	min, max int
	what     string
}

// benchLimits bound every numeric list, so that no value is found wrong
// after models were loaded and tests ran: lengths and sizes fit a context
// (bench.MaxPositions), threads ggml's limit.
var benchLimits = map[string]benchLimit{
	"n-prompt":     {0, bench.MaxPositions, fmt.Sprintf("0 (no pp test) up to %d tokens", bench.MaxPositions)},
	"n-gen":        {0, bench.MaxPositions, fmt.Sprintf("0 (no tg test) up to %d tokens", bench.MaxPositions)},
	"pg":           {0, bench.MaxPositions, fmt.Sprintf("0 up to %d tokens each", bench.MaxPositions)},
	"n-depth":      {0, bench.MaxPositions, fmt.Sprintf("0 up to %d tokens", bench.MaxPositions)},
	"threads":      {1, ggmlMaxThreads, fmt.Sprintf("1 up to %d (ggml's limit)", ggmlMaxThreads)},
	"batch-size":   {1, bench.MaxPositions, fmt.Sprintf("1 up to %d", bench.MaxPositions)},
	"ubatch-size":  {1, bench.MaxPositions, fmt.Sprintf("1 up to %d", bench.MaxPositions)},
	"ctx-size":     {0, bench.MaxPositions, fmt.Sprintf("0 (what each test needs) up to %d", bench.MaxPositions)},
	"n-gpu-layers": {-1, math.MaxInt32, "a number of layers (0: none), auto or all"},
	"poll":         {0, 100, "0 (workers sleep at once) to 100"},
}

// benchInts reads a numeric list option within its benchLimits.
func benchInts(c *cli.Context, name string) ([]int, error) {
	var out []int
	for _, f := range listStrings(c, name) {
		if name == "n-gpu-layers" && (f == "auto" || f == "all") {
			f = "-1"
		}
		vs, err := parseRange(f)
		if err != nil && name == "n-gpu-layers" {
			return nil, usagef("--%s: %q: want %s", name, f, benchLimits[name].what)
		}
		if err != nil {
			return nil, usagef("--%s %s: %v", name, f, err)
		}
		if err := checkBenchValues(name, vs); err != nil {
			return nil, err
		}
		out = append(out, vs...)
	}
	if len(out) == 0 {
		return nil, usagef("--%s: empty list", name)
	}
	return out, nil
}

// checkBenchValues checks values of the list name against its limits.
func checkBenchValues(name string, vs []int) error {
	l := benchLimits[name]
	for _, v := range vs {
		if v < l.min || v > l.max {
			if name == "n-gpu-layers" {
				return usagef("--%s: \"%d\": want %s", name, v, l.what)
			}
			return usagef("--%s %d: want %s", name, v, l.what)
		}
	}
	return nil
}

// benchFA reads -fa values; llama-bench reports them as llama_flash_attn_type
// (-1 auto, 0 off, 1 on).
func benchFA(c *cli.Context) ([]llama.FlashAttn, error) {
	var out []llama.FlashAttn
	for _, f := range listStrings(c, "flash-attn") {
		if f == "-1" {
			f = "auto"
		}
		fa, err := flashAttn(f)
		if err != nil {
			return nil, err
		}
		out = append(out, fa)
	}
	if len(out) == 0 {
		return nil, usagef("--flash-attn: empty list")
	}
	return out, nil
}

// benchPG reads -pg PP,TG options: the values come as a flat list, two per
// option.
func benchPG(c *cli.Context) ([]bench.PG, error) {
	vals := listStrings(c, "pg")
	if len(vals)%2 != 0 {
		return nil, usagef("-pg %s: want PP,TG pairs (two whole numbers each, e.g. -pg 512,128)", strings.Join(vals, ","))
	}
	var out []bench.PG
	for i := 0; i < len(vals); i += 2 {
		p, err1 := strconv.Atoi(vals[i])
		g, err2 := strconv.Atoi(vals[i+1])
		if err1 != nil || err2 != nil {
			return nil, usagef("-pg %s,%s: want two whole numbers (e.g. -pg 512,128)", vals[i], vals[i+1])
		}
		if err := checkBenchValues("pg", []int{p, g}); err != nil {
			return nil, err
		}
		if p == 0 && g == 0 {
			continue
		}
		out = append(out, bench.PG{Prompt: p, Gen: g})
	}
	return out, nil
}

func runBench(c *cli.Context) error {
	if c.Bool("verbose") {
		setupLogging(true, c.App.ErrWriter)
	}
	bp, err := benchParamsFromFlags(c)
	if err != nil {
		return err
	}
	if c.String("profile") != "" {
		if bp.Persona, err = benchPersona(c); err != nil {
			return err
		}
	}
	if err := bp.Check(); err != nil {
		return benchUsage(err)
	}
	for _, m := range bp.Models {
		if err := checkModelFile(m); err != nil {
			return err
		}
	}
	return benchUsage(bench.Run(c.Context, bp, c.App.Writer, c.App.ErrWriter))
}

// benchUsage makes a bench.ParamError a usage error (exit 2).
func benchUsage(err error) error {
	var pe *bench.ParamError
	if errors.As(err, &pe) {
		return usageError{pe.Err}
	}
	return err
}

// benchPersona reads the persona tests' flags: the profile is loaded here,
// once, before any model.
func benchPersona(c *cli.Context) (*bench.PersonaParams, error) {
	po, err := personaOptionsFrom(c)
	if err != nil {
		return nil, err
	}
	prof, task, err := po.Profile.load(c.Context)
	if err != nil {
		return nil, err
	}
	pp := &bench.PersonaParams{Profile: prof, Task: task, PlugPath: c.String("plug"), RetrieveK: c.Int("retrieve-k"),
		Query: c.String("query"), CacheDir: c.String("cache-dir")}
	pp.Encoder = func(ctx context.Context, m *llama.Model, threads int) (*persona.Encoder, error) {
		return po.Encoder.open(ctx, m, threads)
	}
	pp.PluginDevice = c.String("plugin-device")
	return pp, nil
}

// benchParamsFromFlags reads and checks the value lists.
func benchParamsFromFlags(c *cli.Context) (bp bench.Params, err error) {
	if f := c.String("output"); !slices.Contains(bench.Formats(), f) {
		return bp, usagef("--output %q: want md, csv, json, jsonl or sql", f)
	}
	if bp.Models = listStrings(c, "model"); len(bp.Models) == 0 {
		return bp, usagef("no model given: pass -m FILE (a GGUF model; several with -m A,B or -m A -m B)")
	}
	for _, l := range []struct {
		dst  *[]int
		flag string
	}{{&bp.NPrompt, "n-prompt"}, {&bp.NGen, "n-gen"}, {&bp.NDepth, "n-depth"}, {&bp.Threads, "threads"},
		{&bp.Batch, "batch-size"}, {&bp.UBatch, "ubatch-size"}, {&bp.Ctx, "ctx-size"}, {&bp.GPULayers, "n-gpu-layers"}} {
		if *l.dst, err = benchInts(c, l.flag); err != nil {
			return bp, err
		}
	}
	if bp.PG, err = benchPG(c); err != nil {
		return bp, err
	}
	if bp.FlashAttn, err = benchFA(c); err != nil {
		return bp, err
	}
	if err := benchDevices(c, &bp); err != nil {
		return bp, err
	}
	bp.Format, bp.Repetitions, bp.Seed = c.String("output"), c.Int("repetitions"), c.Uint64("seed")
	bp.Warmup, bp.CLoop, bp.Progress = !c.Bool("no-warmup"), !c.Bool("no-c-loop"), c.Bool("progress")
	if bp.AggItems, err = benchAggItems(c); err != nil {
		return bp, err
	}
	return bp, benchPollPrio(c, &bp)
}

// benchPollPrio reads --poll (a list, 0-100) and --prio (-1 to 3), as
// llama-bench takes them.
func benchPollPrio(c *cli.Context, bp *bench.Params) (err error) {
	if bp.Poll, err = benchInts(c, "poll"); err != nil {
		return err
	}
	if bp.Prio = c.Int("prio"); bp.Prio < -1 || bp.Prio > 3 {
		return usagef("--prio %d: want -1 (low), 0 (normal), 1 (medium), 2 (high) or 3 (realtime)", bp.Prio)
	}
	return nil
}

// checkModelFile finds a missing or unreadable model before the tests
// start (llama.LoadModel checks the file's content).
func checkModelFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fmt.Errorf("model %s: %w", path, err)
	}
	if fi.IsDir() {
		return fmt.Errorf("model %s: is a folder, not a GGUF file", path)
	}
	return nil
}

// maxAggItems bounds --agg-items: far more history than a profile keeps.
const maxAggItems = 1 << 20

// benchAggItems reads --agg-items, the history sizes of the aggregation
// test.
func benchAggItems(c *cli.Context) ([]int, error) {
	var out []int
	for _, f := range strings.Split(c.String("agg-items"), ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > maxAggItems {
			return nil, usagef("--agg-items %q: want numbers of items from 1 up to %d (e.g. 32,128,512)", f, maxAggItems)
		}
		out = append(out, n)
	}
	return out, nil
}

// benchDevices reads -dev (lists of devices joined by "/", as llama-bench
// takes them; auto: every GPU), -sm and -mg.
func benchDevices(c *cli.Context, bp *bench.Params) error {
	llama.LoadBackends()
	for _, v := range listStrings(c, "device") {
		if v != "auto" {
			if _, err := llama.ParseDeviceList(strings.ReplaceAll(v, "/", ",")); err != nil {
				return usagef("--device: %w", err)
			}
		}
		bp.Devices = append(bp.Devices, v)
	}
	if len(bp.Devices) == 0 {
		return usagef("--device: empty device list: give device names joined by /, auto or none (several lists: comma-separated)")
	}
	for _, v := range listStrings(c, "split-mode") {
		sm, err := llama.ParseSplitMode(v)
		if err != nil {
			return usagef("--split-mode: %w", err)
		}
		bp.SplitModes = append(bp.SplitModes, sm)
	}
	if len(bp.SplitModes) == 0 {
		return usagef("--split-mode: empty list: give none, layer or row")
	}
	if bp.MainGPU = c.Int("main-gpu"); bp.MainGPU < 0 {
		return usagef("--main-gpu %d: want 0 or more (an index among the model's devices)", bp.MainGPU)
	}
	return nil
}
