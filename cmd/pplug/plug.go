package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pplug/pplug/internal/progress"
	"github.com/pplug/pplug/llama"
	"github.com/pplug/pplug/persona"
	"github.com/pplug/pplug/persona/profile"
	"github.com/pplug/pplug/train"
)

func plugCommand() *cli.Command {
	initFlags := append([]cli.Flag{
		verboseFlag(),
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Required: true, Usage: "plug `FILE` to write"},
		&cli.IntFlag{Name: "threads", Aliases: []string{"t"}},
		&cli.StringFlag{Name: "task", Usage: "LaMP task the plug is for (information only)"},
	}, freshPlugFlags()...)
	initFlags = append(initFlags, modelFlags()...)
	return &cli.Command{
		Name:  "plug",
		Usage: "make and inspect Persona-Plug plug-in files",
		Subcommands: []*cli.Command{
			{
				Name:      "init",
				Usage:     "write a freshly initialised plug for an LLM and encoder pair (to be trained)",
				UsageText: "pplug plug init -m MODEL [--encoder ENCODER] -o PLUG.gguf",
				Flags:     initFlags,
				Action:    runPlugInit,
			},
			{
				Name:      "info",
				Usage:     "print a plug's metadata",
				UsageText: "pplug plug info [--json] PLUG.gguf",
				ArgsUsage: "PLUG.gguf",
				Flags:     []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}},
				Action:    runPlugInfo,
			},
		},
	}
}

func runPlugInit(c *cli.Context) error {
	if c.Bool("verbose") {
		setupLogging(true, c.App.ErrWriter)
	}
	o, err := plugInitOptionsFrom(c)
	if err != nil {
		return err
	}
	return o.run(c.Context, c.App.ErrWriter)
}

// plugInitOptions are plug init's flags, read and checked once.
type plugInitOptions struct {
	Model   modelConfig
	Encoder encoderOptions
	Plug    persona.PlugOptions
	Threads int
	Output  string
}

func plugInitOptionsFrom(c *cli.Context) (*plugInitOptions, error) {
	o := &plugInitOptions{Plug: freshPlugOptionsFrom(c), Threads: c.Int("threads"), Output: c.String("output")}
	// persona.ReadPlug reads at most 1<<16 instruction rows.
	if n := o.Plug.NInstr; n < 1 || n > 1<<16 {
		return nil, usagef("--n-instruction %d: give 1 to %d instruction rows", n, 1<<16)
	}
	if n := o.Plug.NPersona; n < 1 || n > persona.MaxPersonaRows {
		return nil, usagef("--n-persona %d: give 1 to %d persona rows", n, persona.MaxPersonaRows)
	}
	if n := c.Int("encoder-max-tokens"); n < 1 {
		return nil, usagef("--encoder-max-tokens %d: give 1 or more", n)
	}
	if n := o.Threads; n < 0 || n > ggmlMaxThreads {
		return nil, usagef("--threads %d: give 1 to %d (0: physical cores)", n, ggmlMaxThreads)
	}
	var err error
	if o.Model, err = modelConfigFrom(c); err != nil {
		return nil, err
	}
	// A plug for a model the training graph cannot build could never be
	// trained: refuse it before the model loads.
	if err := train.CheckModel(o.Model.Path); err != nil {
		return nil, err
	}
	if o.Encoder, err = encoderOptionsFrom(c); err != nil {
		return nil, err
	}
	return o, nil
}

// run writes an untrained plug for the model and encoder.
func (o *plugInitOptions) run(ctx context.Context, stderr io.Writer) error {
	m, err := o.Model.load(ctx, stderr)
	if err != nil {
		return err
	}
	defer m.Close()
	enc, err := o.Encoder.open(ctx, m, o.Threads)
	if err != nil {
		return err
	}
	defer enc.Close()
	plug, err := newPlug(o.Plug, m, enc)
	if err != nil {
		return err
	}
	plug.Meta["trained"] = "false"
	if err := plug.WriteFile(o.Output); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote %s: d_enc %d -> d_llm %d, %d instruction row(s), scale %.4g (untrained)\n",
		o.Output, plug.DEnc, plug.DLLM, plug.NInstr, plug.Scale)
	return nil
}

// freshPlugFlags are the options of a new plug (plug init, and train
// without --plug): its encoder and shape, and the seed of its weights.
func freshPlugFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "encoder", Usage: "history encoder GGUF `FILE` (default: the LLM itself, mean-pooled)"},
		&cli.StringFlag{Name: "pooling", Value: "default", Usage: "encoder pooling: default, cls, mean or last"},
		&cli.IntFlag{Name: "encoder-max-tokens", Value: 512, Usage: "history item truncation the plug is made for"},
		&cli.IntFlag{Name: "n-instruction", Value: 1, Usage: "instruction rows of a new plug"},
		&cli.IntFlag{Name: "n-persona", Value: 1, Usage: fmt.Sprintf("persona rows of a new plug, 1 to %d (each with its own projector output layer)", persona.MaxPersonaRows)},
		&cli.Float64Flag{Name: "tau", Value: 1, Usage: "aggregator temperature of a new plug"},
		&cli.StringFlag{Name: "query-prefix", Usage: "instruction prefix of the query encoder (default: BGE's with --encoder, none for the LLM)"},
		&cli.BoolFlag{Name: "adapter", Usage: "give a new plug a trainable query adapter"},
		&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed of the initial weights (and, in train, of shuffling and history dropout)"},
	}
}

// freshPlugOptionsFrom reads the flags of a new plug (freshPlugFlags).
func freshPlugOptionsFrom(c *cli.Context) persona.PlugOptions {
	return persona.PlugOptions{
		NInstr: c.Int("n-instruction"), NPersona: c.Int("n-persona"), Tau: float32(c.Float64("tau")), Seed: c.Uint64("seed"),
		QueryPrefix: c.String("query-prefix"), DefaultPrefix: !c.IsSet("query-prefix"),
		Task: c.String("task"), Adapter: c.Bool("adapter"),
	}
}

// newPlug is a new plug for the model and encoder, stamped with its
// creation time.
func newPlug(o persona.PlugOptions, m *llama.Model, enc *persona.Encoder) (*persona.Plug, error) {
	p, err := persona.NewPlugFor(m, enc, o)
	if err != nil {
		return nil, usageError{err}
	}
	p.Meta["created"] = time.Now().UTC().Format(time.RFC3339)
	return p, nil
}

func runPlugInfo(c *cli.Context) error {
	file, asJSON, err := plugInfoArgs(c)
	if err != nil {
		return err
	}
	return printPlugInfo(c.App.Writer, file, asJSON)
}

// plugInfoArgs is plug info's file and --json. urfave/cli stops at the
// first argument; --json after the file counts too.
func plugInfoArgs(c *cli.Context) (file string, asJSON bool, err error) {
	var files []string
	asJSON = c.Bool("json")
	for _, a := range c.Args().Slice() {
		if a == "--json" || a == "-json" {
			asJSON = true
			continue
		}
		files = append(files, a)
	}
	if len(files) != 1 {
		return "", false, usagef("give one plug file: pplug plug info [--json] PLUG.gguf")
	}
	return files[0], asJSON, nil
}

// printPlugInfo prints a plug's shape and metadata, as a table or JSON.
func printPlugInfo(w io.Writer, file string, asJSON bool) error {
	p, err := persona.ReadPlug(file)
	if err != nil {
		return err
	}
	info := map[string]any{
		"format_version": persona.PlugFormatVersion,
		"d_enc":          p.DEnc,
		"d_llm":          p.DLLM,
		"n_instruction":  p.NInstr,
		"n_persona":      p.PersonaRows(),
		"tau":            p.Tau,
		"scale":          p.Scale,
		"pooling":        p.Pooling,
		"query_prefix":   p.QueryPrefix,
		"encoder":        p.Encoder,
		"llm":            p.LLM,
		"task":           p.Task,
		"query_adapter":  p.AdapterW != nil,
		"eos_bias":       p.EOSBias,
		"retrieve_k":     p.RetrieveK,
		"params":         len(p.W1) + len(p.B1) + len(p.W2) + len(p.B2) + len(p.Instr) + len(p.AdapterW) + len(p.AdapterB),
		"meta":           p.Meta,
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(info)
	}
	keys := make([]string, 0, len(info))
	for k := range info {
		if k != "meta" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%v\n", k, info[k])
	}
	mk := make([]string, 0, len(p.Meta))
	for k := range p.Meta {
		mk = append(mk, k)
	}
	sort.Strings(mk)
	for _, k := range mk {
		fmt.Fprintf(tw, "meta.%s\t%s\n", k, p.Meta[k])
	}
	return tw.Flush()
}

func profileCommand() *cli.Command {
	flags := []cli.Flag{verboseFlag()}
	flags = append(flags, modelFlags()...)
	flags = append(flags, personaFlags()...)
	flags = append(flags, &cli.IntFlag{Name: "threads", Aliases: []string{"t"}})
	return &cli.Command{
		Name:  "profile",
		Usage: "work with user profiles",
		Subcommands: []*cli.Command{{
			Name:      "encode",
			Usage:     "encode a profile's history into the embedding cache (with a progress bar)",
			UsageText: "pplug profile encode --profile HISTORY.json (--encoder BGE.gguf | -m LLM.gguf)",
			Flags:     flags,
			Action:    runProfileEncode,
		}, profileImportCommand()},
	}
}

func runProfileEncode(c *cli.Context) error {
	if c.Bool("verbose") {
		setupLogging(true, c.App.ErrWriter)
	}
	o, err := profileEncodeOptionsFrom(c)
	if err != nil {
		return err
	}
	return o.run(c.Context, c.App.ErrWriter)
}

// profileEncodeOptions are profile encode's flags, read once.
type profileEncodeOptions struct {
	Persona personaOptions
	// Model is the LLM that encodes when no --encoder is given (Path ""
	// when none).
	Model modelConfig
}

func profileEncodeOptionsFrom(c *cli.Context) (*profileEncodeOptions, error) {
	if c.String("profile") == "" {
		return nil, usagef("give the profile with --profile FILE")
	}
	o := &profileEncodeOptions{}
	var err error
	if o.Persona, err = personaOptionsFrom(c); err != nil {
		return nil, err
	}
	if o.Persona.Encoder.Path == "" && c.String("model") != "" {
		if o.Model, err = modelConfigFrom(c); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// run encodes the profile's items that the cache lacks.
func (o *profileEncodeOptions) run(ctx context.Context, stderr io.Writer) error {
	po := o.Persona
	prof, _, err := po.Profile.load(ctx)
	if err != nil {
		return err
	}
	var m *llama.Model
	if o.Model.Path != "" {
		if m, err = o.Model.load(ctx, stderr); err != nil {
			return err
		}
		defer m.Close()
	}
	enc, err := po.Encoder.open(ctx, m, po.Threads)
	if err != nil {
		return err
	}
	defer enc.Close()
	cache := po.Cache.cache()
	if cache == nil {
		return usagef("profile encode fills the embedding cache: drop --no-cache")
	}
	return encodeProfile(ctx, enc, cache, prof, stderr)
}

// encodeProfile fills the cache with prof's embeddings, with a progress
// bar, and prints what it did.
func encodeProfile(ctx context.Context, enc *persona.Encoder, cache *persona.Cache, prof *profile.Profile, stderr io.Writer) error {
	bar := progress.New(stderr, "encoding profile", float64(len(prof.Items)))
	start := time.Now()
	_, st, err := persona.EncodeCached(ctx, enc, cache, prof.Texts(), func(done, total int) {
		bar.Set(float64(st0(done, total, len(prof.Items))), fmt.Sprintf("%d/%d new items", done, total))
	})
	if err != nil {
		return err
	}
	bar.Finish("")
	el := time.Since(start)
	rate := 0.0
	if st.Encoded > 0 {
		rate = float64(st.Encoded) / el.Seconds()
	}
	fmt.Fprintf(stderr, "profile: %d items (%d distinct texts), %d from the cache, %d encoded in %s (%.1f items/s)%s\n  cache: %s\n",
		st.Items, st.Distinct, st.Cached, st.Encoded, el.Round(time.Millisecond), rate, map[bool]string{true: ", damaged cache files rebuilt"}[st.Rebuilt > 0],
		cache.EncoderDir(enc.ID()))
	return nil
}

// st0 maps progress over the new items onto the whole profile.
func st0(done, total, items int) float64 {
	if total == 0 {
		return float64(items)
	}
	return float64(items-total) + float64(done)
}
