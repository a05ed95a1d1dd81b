package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/pplug/pplug/internal/progress"
	"github.com/pplug/pplug/llama"
)

// Flag names follow llama.cpp's tools.

func verboseFlag() cli.Flag {
	return &cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "log progress and llama.cpp messages to stderr"}
}

func modelFlags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "model", Aliases: []string{"m"}, Usage: "GGUF model `FILE`", EnvVars: []string{"PPLUG_MODEL"}},
		&cli.BoolFlag{Name: "no-mmap", Usage: "read the model into memory instead of mapping it"},
	}, deviceFlags()...)
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
		&cli.Float64Flag{Name: "frequency-penalty", Value: 0, Usage: "penalty growing with how often a token appeared (0: off; -2..2)"},
		&cli.Float64Flag{Name: "presence-penalty", Value: 0, Usage: "penalty for any token that appeared (0: off; -2..2)"},
		&cli.StringSliceFlag{Name: "stop", Aliases: []string{"r"}, Usage: "stop when `TEXT` appears (repeatable; the text is not printed; llama.cpp's --reverse-prompt)"},
		// llama.cpp's name, hidden: a third alias would widen every line of
		// the help (urfave/cli repeats a list flag's names).
		&cli.StringSliceFlag{Name: "reverse-prompt", Hidden: true},
		&cli.StringFlag{Name: "grammar", Usage: "constrain the output to a GBNF `GRAMMAR` (llama.cpp's grammar format)"},
		&cli.StringFlag{Name: "grammar-file", Usage: "read the GBNF grammar from `FILE`"},
		&cli.StringFlag{Name: "json-schema", Aliases: []string{"j"}, Usage: "constrain the output to JSON matching `SCHEMA` (a JSON Schema, or @FILE)"},
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
	o.FrequencyPenalty = float32(c.Float64("frequency-penalty"))
	o.PresencePenalty = float32(c.Float64("presence-penalty"))
	if math.IsInf(float64(o.RepeatPenalty), 0) {
		return o, usagef("--repeat-penalty %v is out of range", c.Float64("repeat-penalty"))
	}
	g, err := grammarOption(c)
	if err != nil {
		return o, err
	}
	o.Grammar = g
	if err := o.Validate(); err != nil {
		return o, usageError{err}
	}
	return o, nil
}

// stopStrings returns the --stop strings; an empty one is a usage error
// (it would stop before the first token).
func stopStrings(c *cli.Context) ([]string, error) {
	stops := append(c.StringSlice("stop"), c.StringSlice("reverse-prompt")...)
	for _, s := range stops {
		if s == "" {
			return nil, usagef("--stop: an empty stop string would end every answer at once")
		}
	}
	return stops, nil
}

// grammarOption reads --grammar, --grammar-file or --json-schema (at most
// one) into a GBNF grammar; a grammar llama.cpp cannot use is a usage
// error that names the flag, the rule and the position.
func grammarOption(c *cli.Context) (string, error) {
	g, flag, err := readGrammarOption(c)
	if err != nil || g == "" {
		return g, err
	}
	if err := llama.ValidateGrammar(g, ""); err != nil {
		return "", usagef("%s: %w", flag, err)
	}
	return g, nil
}

// readGrammarOption is grammarOption before the check; flag names the
// option the grammar came from.
func readGrammarOption(c *cli.Context) (g, flag string, err error) {
	g, err = readGrammarFlag(c)
	for _, f := range []string{"grammar", "grammar-file", "json-schema"} {
		if c.IsSet(f) {
			flag = "--" + f
			if f == "grammar-file" {
				flag += " " + c.String(f)
			}
		}
	}
	return g, flag, err
}

func readGrammarFlag(c *cli.Context) (string, error) {
	n := 0
	for _, f := range []string{"grammar", "grammar-file", "json-schema"} {
		if c.IsSet(f) {
			n++
		}
	}
	if n > 1 {
		return "", usagef("give one of --grammar, --grammar-file and --json-schema")
	}
	switch {
	case c.IsSet("grammar"):
		if strings.TrimSpace(c.String("grammar")) == "" {
			return "", usagef("--grammar is empty")
		}
		return c.String("grammar"), nil
	case c.IsSet("grammar-file"):
		b, err := os.ReadFile(c.String("grammar-file"))
		if err != nil {
			return "", fmt.Errorf("read --grammar-file: %w", err)
		}
		if !utf8.Valid(b) || strings.TrimSpace(string(b)) == "" {
			return "", fmt.Errorf("--grammar-file %s: empty or not UTF-8 text", c.String("grammar-file"))
		}
		return string(b), nil
	case c.IsSet("json-schema"):
		schema := []byte(c.String("json-schema"))
		if name, ok := strings.CutPrefix(string(schema), "@"); ok {
			b, err := os.ReadFile(name)
			if err != nil {
				return "", fmt.Errorf("read --json-schema file: %w", err)
			}
			schema = b
		}
		g, err := llama.JSONSchemaGrammar(schema)
		if err != nil {
			return "", usagef("--json-schema: %v", err)
		}
		return g, nil
	}
	return "", nil
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
	case o.NCtx < 0 || o.NCtx > maxCtxSize:
		return o, usagef("--ctx-size %d: want 0 (the default) up to %d", o.NCtx, maxCtxSize)
	case o.Threads < 0 || o.ThreadsBatch < 0 || o.Threads > ggmlMaxThreads || o.ThreadsBatch > ggmlMaxThreads:
		return o, usagef("--threads and --threads-batch: want 0 (the default) up to %d", ggmlMaxThreads)
	case o.NBatch <= 0 || o.NUBatch <= 0:
		return o, usagef("--batch-size and --ubatch-size must be positive")
	}
	return o, nil
}

// Limits of the context flags: llama.cpp keeps n_ctx in 32 bits, and no
// model is trained on more than a few million positions; ggml runs at most
// GGML_MAX_N_THREADS (512) threads.
const (
	maxCtxSize     = 1 << 24
	ggmlMaxThreads = 512
)

// tinyModelBytes: below this much weight data one generation thread beats
// several. Measured on a 2-core machine with stories260K (1.1 MiB): 1
// thread ~2200 tokens/s, 2 threads anywhere from ~230 to ~2500 (ggml's
// workers spin for work too small to share); with a 500 MiB model 2
// threads give 43 tokens/s against 30.
const tinyModelBytes = 16 << 20

// threadDefault picks the generation threads when -t was not given
// (threadsSet): physical cores, or one for a tiny model.
func threadDefault(threadsSet bool, m *llama.Model, o *llama.ContextOptions) {
	if threadsSet || o.Threads > 0 {
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

// modelConfig is what the model flags ask for, parsed once.
type modelConfig struct {
	Path    string
	Options llama.ModelOptions
}

// modelConfigFrom reads -m, --no-mmap and the device flags.
func modelConfigFrom(c *cli.Context) (modelConfig, error) {
	mc := modelConfig{Path: c.String("model")}
	if mc.Path == "" {
		return mc, usagef("no model given: pass -m FILE (a GGUF model)")
	}
	o, err := deviceOptions(c)
	if err != nil {
		return mc, err
	}
	o.NoMmap = c.Bool("no-mmap")
	mc.Options = o
	return mc, nil
}

// load loads the model with a progress bar on a terminal.
func (mc modelConfig) load(ctx context.Context, stderr io.Writer) (*llama.Model, error) {
	opts := mc.Options
	if opts.GPULayers != 0 && len(modelDevices(opts)) == 0 && !(len(opts.Devices) == 1 && opts.Devices[0] == llama.DeviceNone) {
		slog.Warn("-ngl asks for GPU layers but no GPU device is available (build a backend with `make gpu` or `make vulkan`; searched " + strings.Join(llama.BackendDirs(), ", ") + "): running on the CPU")
	}
	bar := progress.New(stderr, "loading model", 1)
	if bar.IsTerminal() {
		opts.Progress = func(f float32) { bar.Set(float64(f), "") }
	}
	m, err := llama.LoadModel(ctx, mc.Path, opts)
	if err != nil {
		return nil, err
	}
	if bar.IsTerminal() {
		bar.Finish("")
	}
	info := m.Info()
	slog.Debug("model loaded", "path", mc.Path, "desc", info.Description, "params", info.Params, "n_embd", info.NEmbd, "n_ctx_train", info.NCtxTrain,
		"n_gpu_layers", opts.GPULayers, "devices", deviceNames(modelDevices(opts), opts.GPULayers))
	return m, nil
}

// deviceNames names the devices holding layers, for logs.
func deviceNames(devs []llama.Device, ngl int) string {
	if ngl == 0 || len(devs) == 0 {
		return "CPU"
	}
	var names []string
	for _, d := range devs {
		names = append(names, d.Name)
	}
	return strings.Join(names, ",")
}
