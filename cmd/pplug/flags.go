package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/pplug/pplug/internal/progress"
	"github.com/pplug/pplug/llama"
)

// Flag names follow llama.cpp's tools.

func verboseFlag() cli.Flag {
	return &cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "log progress and llama.cpp messages to stderr"}
}

func modelFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "model", Aliases: []string{"m"}, Usage: "GGUF model `FILE`", EnvVars: []string{"PPLUG_MODEL"}},
		&cli.IntFlag{Name: "n-gpu-layers", Aliases: []string{"ngl"}, Value: 0, Usage: "layers to offload to the GPU (-1: all)"},
		&cli.BoolFlag{Name: "no-mmap", Usage: "read the model into memory instead of mapping it"},
	}
}

func contextFlags() []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "ctx-size", Aliases: []string{"c"}, Value: 0, Usage: "context window (0: 4096, capped at the model's training context)"},
		&cli.IntFlag{Name: "threads", Aliases: []string{"t"}, Value: 0, DefaultText: fmt.Sprint(llama.DefaultThreads()), Usage: "generation threads (default: physical cores)"},
		&cli.IntFlag{Name: "threads-batch", Aliases: []string{"tb"}, Value: 0, Usage: "prompt-processing threads (default: --threads)"},
		&cli.IntFlag{Name: "batch-size", Aliases: []string{"b"}, Value: 2048, Usage: "logical batch size"},
		&cli.IntFlag{Name: "ubatch-size", Aliases: []string{"ub"}, Value: 512, Usage: "physical batch size"},
		&cli.StringFlag{Name: "flash-attn", Aliases: []string{"fa"}, Value: "auto", Usage: "flash attention: on, off or auto"},
	}
}

func samplingFlags() []cli.Flag {
	d := llama.DefaultSamplerOptions()
	return []cli.Flag{
		&cli.Float64Flag{Name: "temp", Value: float64(d.Temp), Usage: "temperature (0: greedy)"},
		&cli.IntFlag{Name: "top-k", Value: d.TopK, Usage: "top-k sampling (0: off)"},
		&cli.Float64Flag{Name: "top-p", Value: float64(d.TopP), Usage: "top-p sampling (1: off)"},
		&cli.Float64Flag{Name: "min-p", Value: float64(d.MinP), Usage: "min-p sampling (0: off)"},
		&cli.Float64Flag{Name: "repeat-penalty", Value: float64(d.RepeatPenalty), Usage: "penalty for repeated tokens (1: off)"},
		&cli.IntFlag{Name: "repeat-last-n", Value: d.RepeatLastN, Usage: "tokens the repeat penalty looks back (-1: context)"},
		&cli.Int64Flag{Name: "seed", Aliases: []string{"s"}, Value: -1, Usage: "random seed (-1: random)"},
	}
}

func samplerOptions(c *cli.Context) (llama.SamplerOptions, error) {
	o := llama.SamplerOptions{
		Temp:          float32(c.Float64("temp")),
		TopK:          c.Int("top-k"),
		TopP:          float32(c.Float64("top-p")),
		MinP:          float32(c.Float64("min-p")),
		RepeatPenalty: float32(c.Float64("repeat-penalty")),
		RepeatLastN:   c.Int("repeat-last-n"),
		Seed:          llama.SeedRandom,
	}
	if s := c.Int64("seed"); s >= 0 {
		if s >= math.MaxUint32 {
			return o, usagef("--seed %d is too large (max %d)", s, uint32(math.MaxUint32-1))
		}
		o.Seed = uint32(s)
	}
	if err := o.Validate(); err != nil {
		return o, usageError{err}
	}
	return o, nil
}

func flashAttn(s string) (llama.FlashAttn, error) {
	switch s {
	case "auto", "":
		return llama.FlashAttnAuto, nil
	case "on", "1", "true":
		return llama.FlashAttnOn, nil
	case "off", "0", "false":
		return llama.FlashAttnOff, nil
	}
	return 0, usagef("--flash-attn %q: want on, off or auto", s)
}

func contextOptions(c *cli.Context) (llama.ContextOptions, error) {
	fa, err := flashAttn(c.String("flash-attn"))
	if err != nil {
		return llama.ContextOptions{}, err
	}
	o := llama.ContextOptions{
		NCtx:         c.Int("ctx-size"),
		NBatch:       c.Int("batch-size"),
		NUBatch:      c.Int("ubatch-size"),
		Threads:      c.Int("threads"),
		ThreadsBatch: c.Int("threads-batch"),
		FlashAttn:    fa,
	}
	switch {
	case o.NCtx < 0:
		return o, usagef("--ctx-size must not be negative")
	case o.Threads < 0 || o.ThreadsBatch < 0:
		return o, usagef("--threads must not be negative")
	case o.NBatch <= 0 || o.NUBatch <= 0:
		return o, usagef("--batch-size and --ubatch-size must be positive")
	}
	return o, nil
}

// tinyModelBytes: below this much weight data one generation thread beats
// several. Measured on a 2-core machine with stories260K (1.1 MiB): 1
// thread ~2200 tokens/s, 2 threads anywhere from ~230 to ~2500 (ggml's
// workers spin for work too small to share); with a 500 MiB model 2
// threads give 43 tokens/s against 30.
const tinyModelBytes = 16 << 20

// applyThreadDefault picks the generation threads when -t was not given:
// physical cores, or one for a tiny model.
func applyThreadDefault(c *cli.Context, m *llama.Model, o *llama.ContextOptions) {
	if c.IsSet("threads") || o.Threads > 0 {
		return
	}
	if m.Info().Size < tinyModelBytes {
		o.Threads = 1
		if o.ThreadsBatch == 0 {
			o.ThreadsBatch = llama.DefaultThreads()
		}
		slog.Debug("tiny model: one generation thread (set -t to override)", "weights_bytes", m.Info().Size)
	}
}

// loadModel loads -m with a progress bar on a terminal.
func loadModel(ctx context.Context, c *cli.Context, stderr io.Writer) (*llama.Model, error) {
	path := c.String("model")
	if path == "" {
		return nil, usagef("no model given: pass -m FILE (a GGUF model)")
	}
	loaded := llama.LoadBackends()
	opts := llama.ModelOptions{GPULayers: c.Int("n-gpu-layers"), NoMmap: c.Bool("no-mmap")}
	if opts.GPULayers != 0 && len(loaded) == 0 {
		slog.Warn("-ngl asks for GPU layers but no GPU backend is loaded (build one with `make gpu`; searched " + strings.Join(llama.BackendDirs(), ", ") + "): running on the CPU")
	}
	bar := progress.New(stderr, "loading model", 1)
	if bar.IsTerminal() {
		opts.Progress = func(f float32) { bar.Set(float64(f), "") }
	}
	m, err := llama.LoadModel(ctx, path, opts)
	if err != nil {
		return nil, err
	}
	if bar.IsTerminal() {
		bar.Finish("")
	}
	info := m.Info()
	slog.Debug("model loaded", "path", path, "desc", info.Description, "params", info.Params, "n_embd", info.NEmbd, "n_ctx_train", info.NCtxTrain)
	return m, nil
}
