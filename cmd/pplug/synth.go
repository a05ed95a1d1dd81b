package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pplug/pplug/internal/progress"
	"github.com/pplug/pplug/llama/synth"
)

func synthCommand() *cli.Command {
	return &cli.Command{
		Name:  "synth",
		Usage: "write a random-weight GGUF model of a real shape (for benchmarks and tests)",
		UsageText: "pplug synth --preset qwen2-0.5b --type q8_0 --vocab VOCAB.gguf -o model.gguf\n" +
			"   pplug synth --arch llama --n-embd 256 --n-layer 4 --n-head 8 --n-ff 688 --vocab VOCAB.gguf -o small.gguf",
		Description: "Presets: " + strings.Join(synth.PresetNames(), ", ") + ". Dimension flags override the preset.\n" +
			"The tokenizer is copied from --vocab (a GGUF with tokenizer.* keys, e.g. ../shared/assets/llama-vocab/ggml-vocab-phi-3.gguf);\n" +
			"presets pad it to the real model's vocabulary size so the output layer is realistic.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Required: true, Usage: "output `FILE`"},
			&cli.StringFlag{Name: "vocab", Required: true, Usage: "vocabulary GGUF `FILE`"},
			&cli.StringFlag{Name: "preset", Usage: "shape preset"},
			&cli.StringFlag{Name: "arch", Usage: strings.Join(synth.Archs, ", ") + " (default: the preset's, else llama)"},
			&cli.StringFlag{Name: "pooling", Usage: "pooling_type to write: mean, cls, last or none (encoders' default: the preset's; on a decoder it makes a decoder embedder)"},
			&cli.StringFlag{Name: "type", Value: "f16", Usage: "weight type: f32, f16, q8_0 or q4_0"},
			&cli.IntFlag{Name: "n-embd"}, &cli.IntFlag{Name: "n-layer"}, &cli.IntFlag{Name: "n-head"},
			&cli.IntFlag{Name: "n-head-kv"}, &cli.IntFlag{Name: "n-ff"}, &cli.IntFlag{Name: "n-ctx"},
			&cli.IntFlag{Name: "head-dim", Usage: "attention head width (qwen3, gemma; default n-embd/n-head)"},
			&cli.IntFlag{Name: "sliding-window", Usage: "gemma: the sliding window of the local layers"},
			&cli.BoolFlag{Name: "rope-freqs", Usage: "llama: write Llama 3.1's rope_freqs (llama3 rope scaling)"},
			&cli.IntFlag{Name: "n-vocab", Value: -1, Usage: "vocabulary size (0: the vocab file's; -1: the preset's)"},
			&cli.BoolFlag{Name: "untied", Usage: "write a separate output.weight"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "random seed of the weights"},
			&cli.BoolFlag{Name: "force", Usage: "write the model even when it looks larger than the free disk space"},
		},
		Action: runSynth,
	}
}

func runSynth(c *cli.Context) error {
	o, err := synthOptionsFrom(c)
	if err != nil {
		return err
	}
	return o.run(c.App.ErrWriter)
}

// synthOptions are synth's flags, read and checked once.
type synthOptions struct {
	Spec     synth.Spec
	Output   string
	Vocab    string
	TypeName string // --type as given, for the summary line
	Force    bool
}

func synthOptionsFrom(c *cli.Context) (*synthOptions, error) {
	o := &synthOptions{Output: c.String("output"), Vocab: c.String("vocab"), TypeName: c.String("type"), Force: c.Bool("force")}
	s, err := synthBase(c.String("preset"), c.String("arch"), c.String("pooling"), o.TypeName)
	if err != nil {
		return nil, err
	}
	set := func(name string, dst *int) {
		if c.IsSet(name) {
			*dst = c.Int(name)
		}
	}
	set("n-embd", &s.NEmbd)
	set("n-layer", &s.NLayer)
	set("n-head", &s.NHead)
	set("n-head-kv", &s.NHeadKV)
	set("n-ff", &s.NFF)
	set("n-ctx", &s.NCtx)
	set("head-dim", &s.HeadDim)
	set("sliding-window", &s.SlidingWindow)
	if c.IsSet("rope-freqs") {
		s.RopeFreqs = c.Bool("rope-freqs")
	}
	switch v := c.Int("n-vocab"); {
	case v < -1:
		return nil, usagef("--n-vocab %d: want -1 (the preset's), 0 (the vocab file's) or a size", v)
	case v >= 0:
		s.NVocab = v
	}
	if c.Bool("untied") {
		s.Tied = false
	}
	s.Seed = c.Uint64("seed")
	if s.NEmbd == 0 || s.NLayer == 0 || s.NHead == 0 || s.NFF == 0 {
		return nil, usagef("give --preset or all of --n-embd, --n-layer, --n-head, --n-ff")
	}
	if err := s.Validate(); err != nil {
		return nil, usageError{err}
	}
	o.Spec = s
	return o, nil
}

// synthBase is the spec of --preset (or a bare llama) with --arch,
// --pooling and --type applied.
func synthBase(preset, arch, pooling, typ string) (synth.Spec, error) {
	s := synth.Spec{Arch: "llama", NVocab: 0}
	if preset != "" {
		var ok bool
		if s, ok = synth.Presets[preset]; !ok {
			return s, usagef("unknown preset %q (have %s)", preset, strings.Join(synth.PresetNames(), ", "))
		}
		s.Name = "pplug-synth-" + preset
	}
	if arch != "" {
		s.Arch = arch
	}
	if pooling != "" {
		pool, err := synth.ParsePooling(pooling)
		if err != nil {
			return s, usagef("--pooling: %v", err)
		}
		s.Pooling = pool
	}
	t, err := synth.ParseType(typ)
	if err != nil {
		return s, usageError{err}
	}
	s.Type = t
	return s, nil
}

// run writes the model, with a progress bar on stderr.
func (o *synthOptions) run(stderr io.Writer) error {
	start := time.Now()
	bar := progress.New(stderr, "writing "+o.Output, 1)
	opts := synth.Options{Progress: func(f float64) { bar.Set(f, "") }, Force: o.Force}
	if err := synth.WriteWith(o.Output, o.Vocab, o.Spec, opts); err != nil {
		if errors.Is(err, synth.ErrNoSpace) {
			return fmt.Errorf("synth: %w (free some space, pick another folder with -o, or pass --force)", err)
		}
		return fmt.Errorf("synth: %w", err)
	}
	bar.Finish("")
	fmt.Fprintf(stderr, "wrote %s (%s, %s weights) in %s\n", o.Output, o.Spec.Arch, o.TypeName, time.Since(start).Round(time.Millisecond))
	return nil
}
