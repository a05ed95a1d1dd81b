package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pplug/pplug/eval"
	"github.com/pplug/pplug/internal/atomicfile"
	"github.com/pplug/pplug/internal/progress"
	"github.com/pplug/pplug/kernels"
	"github.com/pplug/pplug/lamp"
	"github.com/pplug/pplug/llama"
	"github.com/pplug/pplug/persona"
	"github.com/pplug/pplug/train"
)

func trainCommand() *cli.Command {
	return &cli.Command{
		Name:  "train",
		Usage: "train a Persona-Plug plug-in on LaMP-format data with the LLM and encoder frozen",
		UsageText: "pplug train -m MODEL --task LaMP_N --questions train_questions.json --outputs train_outputs.json \\\n" +
			"      [--dev-questions dev_questions.json --dev-outputs dev_outputs.json] [--encoder BGE.gguf] -o PLUG.gguf",
		Flags: append([]cli.Flag{
			verboseFlag(),
			&cli.StringFlag{Name: "model", Aliases: []string{"m"}, Usage: "GGUF model `FILE` (llama, qwen2, qwen3, gemma2, gemma3 or phi3)", EnvVars: []string{"PPLUG_MODEL"}},
			&cli.StringFlag{Name: "task", Usage: "LaMP_N or generic (default: the outputs file's; generic when it names no LaMP task)"},
			&cli.StringFlag{Name: "questions", Usage: "training questions `FILE`"},
			&cli.StringFlag{Name: "outputs", Usage: "training gold outputs `FILE`"},
			&cli.StringFlag{Name: "dev-questions", Usage: "dev questions (loss each epoch, persona NLL check at the end)"},
			&cli.StringFlag{Name: "dev-outputs", Usage: "dev gold outputs"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "plug `FILE` to write"},
			&cli.StringFlag{Name: "plug", Usage: "start from this plug (default: a fresh one, as pplug plug init makes)"},
			&cli.StringFlag{Name: "resume", Usage: "continue from a checkpoint plug (with its .opt optimizer state)"},
			&cli.StringFlag{Name: "checkpoint-dir", Usage: "write a checkpoint after every epoch here"},
			&cli.BoolFlag{Name: "train-tau", Usage: "learn the temperature too"},
			&cli.BoolFlag{Name: "eos-bias", Usage: "learn a bias on the LLM's EOS logit (a length prior for LLMs that never end a short text by themselves)"},
			&cli.IntFlag{Name: "retrieve-k", Usage: "also train every question with its top K BM25 history items before the rows (the pplug+bm25 layout; generate and eval use the same K; 2 measured best for pplug+bm25, see docs/text-quality.md)"},
			&cli.BoolFlag{Name: "retrieve-only", Usage: "with --retrieve-k: train only the layout with retrieved items"},
			&cli.StringFlag{Name: "layout", Value: persona.LayoutPrompt, Usage: "input layout to train: prompt (the input alone, as generate and eval read it) or chat (a conversation in the model's chat template, the rows opening it, with up to --chat-turns earlier questions of the same user: as chat and serve read it); recorded in the plug"},
			&cli.IntFlag{Name: "chat-turns", Value: train.DefaultChatTurns, Usage: "with --layout chat: earlier questions of the same user (with their gold answers) before each question"},
			&cli.IntFlag{Name: "epochs", Value: 2, Usage: fmt.Sprintf("passes over the training data (1 to %d)", maxTrainEpochs)},
			&cli.IntFlag{Name: "batch", Value: 8, Usage: "examples per step"},
			&cli.Float64Flag{Name: "lr", Value: 1e-4, Usage: "peak learning rate (AdamW)"},
			&cli.Float64Flag{Name: "weight-decay", Value: 1e-4, Usage: "AdamW weight decay (0 or -1: none)"},
			&cli.Float64Flag{Name: "warmup", Value: 0.05, Usage: "fraction of steps of linear warm-up, at most 1 (0 or -1: none)"},
			&cli.Float64Flag{Name: "max-grad-norm", Value: 1, Usage: "gradient clipping (-1: off)"},
			&cli.IntFlag{Name: "augment", Value: 10, Usage: fmt.Sprintf("history-dropout copies per example, at most %d (0 or -1: none)", train.MaxAugment)},
			&cli.IntFlag{Name: "max-items", Value: 512, Usage: "most recent history items per user"},
			&cli.IntFlag{Name: "max-input", Value: 256, Usage: "prompt tokens kept"},
			&cli.IntFlag{Name: "max-target", Value: 128, Usage: "target tokens kept"},
			&cli.IntFlag{Name: "limit", Usage: "use only the first N training questions (0: all)"},
			&cli.IntFlag{Name: "threads", Aliases: []string{"t"}, Usage: fmt.Sprintf("threads, at most %d (default: physical cores)", maxThreads)},
			&cli.StringFlag{Name: "cache-dir", Usage: "embedding cache folder", EnvVars: []string{"PPLUG_CACHE_DIR"}},
			&cli.BoolFlag{Name: "no-cache", Usage: "do not use the embedding cache"},
			&cli.StringFlag{Name: "report", Usage: "write a JSON report of the run to `FILE`"},
		}, append(deviceFlags(), freshPlugFlags()...)...),
		Action: runTrain,
	}
}

func runTrain(c *cli.Context) error {
	if c.Bool("verbose") {
		setupLogging(true, c.App.ErrWriter)
	}
	ctx := c.Context
	stderr := c.App.ErrWriter
	tc, err := trainConfigFrom(c)
	if err != nil {
		return err
	}
	topts, task, threads := tc.Options, tc.Task, tc.Options.Threads
	m, err := tc.Model.load(ctx, stderr)
	if err != nil {
		return err
	}
	defer m.Close()
	enc, err := tc.Encoder.open(ctx, m, threads)
	if err != nil {
		return err
	}
	defer enc.Close()
	plug, err := tc.plug(m, enc)
	if err != nil {
		return err
	}
	cache := tc.Cache.cache()
	trainEx, devEx, err := tc.data(ctx, stderr, m, enc, cache, plug)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "training on %d examples (%d dev) of %s, encoder %s, %d threads\n", len(trainEx), len(devEx), task, shortID(enc.ID()), threads)

	var bar *progress.Bar
	topts.Progress = func(p train.Progress) {
		if bar == nil {
			bar = progress.New(stderr, "training", float64(p.Steps))
		}
		bar.Set(float64(p.Step), fmt.Sprintf("epoch %d/%d step %d/%d loss %.4f (avg %.4f) lr %.2g %.0f pos/s",
			p.Epoch, p.Epochs, p.Step, p.Steps, p.Loss, p.AvgLoss, p.LR, p.TokensPerSec))
	}
	topts.Log = func(line string) { fmt.Fprintln(stderr, line) }
	res, err := train.Train(ctx, tc.Model.Path, m, plug, trainEx, devEx, topts)
	if bar != nil {
		bar.Finish("")
	}
	if errors.Is(err, ctx.Err()) && res.Interrupted {
		fmt.Fprintf(stderr, "interrupted after %d steps: saved %s (resume with --resume %s)\n", res.Steps, res.Output, res.Output)
		return err
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "trained %d steps in %s (%s per step, graph %d x %d positions); wrote %s\n",
		res.Steps, res.Duration.Round(time.Millisecond), res.MeanStep.Round(time.Microsecond), res.Shape.Batch, res.Shape.Tokens, res.Output)
	return tc.report(ctx, stderr, m, enc, plug, cache, res)
}

// trainConfig is everything train's flags say, read and checked once.
type trainConfig struct {
	Options train.Options
	Task    lamp.Task
	Model   modelConfig
	Encoder encoderOptions
	Cache   cacheOptions
	// The data: training and dev questions and golds, and how examples
	// are built from them (Task, Layout and RetrieveK come from the plug).
	Questions, Outputs, DevQuestions, DevOutputs string
	Data                                         train.DataOptions
	Report                                       string
	// The plug: --resume's, --plug's or a new one (Fresh).
	Resume, Plug string
	Fresh        persona.PlugOptions
	// RetrieveK and Layout, when set (or the plug has none), override the
	// plug's.
	RetrieveK               int
	Layout                  string
	retrieveKSet, layoutSet bool
}

func trainConfigFrom(c *cli.Context) (*trainConfig, error) {
	topts, task, err := trainSetup(c)
	if err != nil {
		return nil, err
	}
	tc := &trainConfig{Options: topts, Task: task, Cache: cacheOptionsFrom(c),
		Questions: c.String("questions"), Outputs: c.String("outputs"), DevQuestions: c.String("dev-questions"), DevOutputs: c.String("dev-outputs"),
		Report: c.String("report"), Resume: c.String("resume"), Plug: c.String("plug"), Fresh: freshPlugOptionsFrom(c),
		RetrieveK: c.Int("retrieve-k"), retrieveKSet: c.IsSet("retrieve-k"), layoutSet: c.IsSet("layout")}
	tc.Layout, _ = persona.ParseLayout(c.String("layout")) // checked in trainOptionsFromFlags
	tc.Data = train.DataOptions{Task: task, MaxItems: c.Int("max-items"), MaxInput: c.Int("max-input"), MaxTarget: c.Int("max-target"),
		Limit: c.Int("limit"), RetrieveOnly: c.Bool("retrieve-only"), ChatTurns: c.Int("chat-turns")}
	if tc.Model, err = modelConfigFrom(c); err != nil {
		return nil, err
	}
	if tc.Encoder, err = encoderOptionsFrom(c); err != nil {
		return nil, err
	}
	return tc, nil
}

// trainSetup checks train's flags and every output path before the model
// loads and the data is encoded (a bad path must not cost a training
// run), and finds the task.
func trainSetup(c *cli.Context) (train.Options, lamp.Task, error) {
	var task lamp.Task
	for _, f := range []string{"model", "questions", "outputs", "output"} {
		if c.String(f) == "" {
			return train.Options{}, task, usagef("--%s is required (see pplug train --help)", f)
		}
	}
	if err := train.CheckModel(c.String("model")); err != nil {
		return train.Options{}, task, err
	}
	if (c.String("dev-questions") == "") != (c.String("dev-outputs") == "") {
		return train.Options{}, task, usagef("give both --dev-questions and --dev-outputs, or neither")
	}
	topts, err := trainOptionsFromFlags(c)
	if err != nil {
		return topts, task, err
	}
	if err := train.CheckOutputs(topts); err != nil {
		return topts, task, usageError{err}
	}
	if p := c.String("report"); p != "" {
		if err := train.CheckOutputFile(p); err != nil {
			return topts, task, usagef("--report: %w", err)
		}
	}
	if s := c.String("task"); s != "" {
		if task, err = lamp.ParseTask(s); err != nil {
			return topts, task, usageError{err}
		}
	} else {
		outs, err := lamp.ReadOutputs(c.String("outputs"))
		if err != nil {
			return topts, task, err
		}
		if task, err = outs.ParsedTask(); err != nil {
			return topts, task, fmt.Errorf("%s: %w (give --task)", c.String("outputs"), err)
		}
	}
	if topts.Threads == 0 {
		topts.Threads = llama.DefaultThreads()
	}
	return topts, task, nil
}

// plug is the plug to train: --resume's, --plug's or a new one. A plug
// trained with retrieval keeps its layout when training goes on without
// --retrieve-k.
func (tc *trainConfig) plug(m *llama.Model, enc *persona.Encoder) (*persona.Plug, error) {
	var plug *persona.Plug
	var err error
	switch {
	case tc.Resume != "":
		plug, err = persona.ReadPlug(tc.Resume)
	case tc.Plug != "":
		plug, err = persona.ReadPlug(tc.Plug)
	default:
		plug, err = newPlug(tc.Fresh, m, enc)
	}
	if err != nil {
		return nil, err
	}
	if err := plug.CheckModel(m.NEmbd(), enc.Dim()); err != nil {
		return nil, err
	}
	if tc.retrieveKSet || plug.RetrieveK == 0 {
		plug.RetrieveK = tc.RetrieveK
	}
	if tc.layoutSet || plug.Layout == "" {
		plug.Layout = tc.Layout
	}
	return plug, nil
}

// data encodes the training and dev examples (with a progress bar).
func (tc *trainConfig) data(ctx context.Context, stderr io.Writer, m *llama.Model, enc *persona.Encoder, cache *persona.Cache, plug *persona.Plug) (trainEx, devEx []train.Example, err error) {
	load := func(q, o, label string, limit int) ([]train.Example, error) {
		bar := progress.New(stderr, "encoding "+label, 1)
		do := tc.Data
		do.Limit, do.RetrieveK, do.Layout = limit, plug.RetrieveK, plug.Layout
		do.EncodeProgress = func(done, total int) {
			bar.Set(float64(done)/float64(total), fmt.Sprintf("%d/%d new texts", done, total))
		}
		do.Progress = func(done, total int) {
			bar.Set(float64(done)/float64(total), fmt.Sprintf("%d/%d questions", done, total))
		}
		ex, err := train.LoadExamples(ctx, m, enc, cache, plug, q, o, do)
		bar.Finish("")
		return ex, err
	}
	if trainEx, err = load(tc.Questions, tc.Outputs, "training data", tc.Data.Limit); err != nil {
		return nil, nil, err
	}
	if tc.DevQuestions != "" {
		if devEx, err = load(tc.DevQuestions, tc.DevOutputs, "dev data", 0); err != nil {
			return nil, nil, err
		}
	}
	return trainEx, devEx, nil
}

// report runs the dev persona check and writes --report.
func (tc *trainConfig) report(ctx context.Context, stderr io.Writer, m *llama.Model, enc *persona.Encoder, plug *persona.Plug, cache *persona.Cache, res train.Result) error {
	report := map[string]any{"task": tc.Task.String(), "train": res, "plug": res.Output}
	if tc.DevQuestions != "" {
		nll, err := tc.devNLL(ctx, m, enc, plug, cache)
		if err != nil {
			return err
		}
		report["dev_nll"] = nll
		fmt.Fprintf(stderr, "dev persona check (%d questions, %d target tokens): NLL/token own %.4f, none %.4f", nll.Questions, nll.Tokens, nll.Own, nll.None)
		if nll.HasOther {
			fmt.Fprintf(stderr, ", other user's %.4f", nll.Other)
		}
		fmt.Fprintln(stderr)
	}
	if p := tc.Report; p != "" {
		b, _ := json.MarshalIndent(report, "", "  ")
		if err := atomicfile.Write(p, func(w io.Writer) error { _, err := w.Write(append(b, '\n')); return err }); err != nil {
			return fmt.Errorf("write the report %s: %w (the plug %s is saved)", p, err, res.Output)
		}
	}
	return nil
}

// maxTrainEpochs bounds --epochs: a run of more passes than this is a
// mistake in the command line, not a plan.
const maxTrainEpochs = 1_000_000

// maxThreads is ggml's thread limit (GGML_MAX_N_THREADS).
const maxThreads = 512

// maxInstructionRows is the most instruction rows a plug file may declare
// (persona.ReadPlug refuses more).
const maxInstructionRows = 1 << 16

// trainOptionsFromFlags reads and checks train's numeric flags: a value out
// of range is a usage error, never silently replaced by the default. The
// documented "off" values stay: 0 or a negative --weight-decay, --warmup or
// --augment switch those off, a negative --max-grad-norm switches clipping
// off.
func trainOptionsFromFlags(c *cli.Context) (train.Options, error) {
	finite := func(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
	o := train.Options{
		Epochs: c.Int("epochs"), Batch: c.Int("batch"), LR: c.Float64("lr"), WeightDecay: c.Float64("weight-decay"),
		Warmup: c.Float64("warmup"), MaxGradNorm: c.Float64("max-grad-norm"), Augment: c.Int("augment"),
		Seed: c.Uint64("seed"), Threads: c.Int("threads"), TrainTau: c.Bool("train-tau"), EOSBias: c.Bool("eos-bias"),
		Output: c.String("output"), CheckpointDir: c.String("checkpoint-dir"), Resume: c.String("resume"),
	}
	dev, err := deviceOptions(c)
	if err != nil {
		return o, err
	}
	// The devices the model's layers go to, by name (none: the CPU alone),
	// as the training graph takes them.
	o.GPULayers = dev.GPULayers
	if o.GPULayers != 0 {
		for _, d := range modelDevices(dev) {
			o.Devices = append(o.Devices, d.Name)
		}
	}
	switch {
	case o.Epochs < 1 || o.Epochs > maxTrainEpochs:
		return o, usagef("--epochs %d: give 1 to %d passes", o.Epochs, maxTrainEpochs)
	case o.Batch < 1:
		return o, usagef("--batch %d: give 1 or more examples per step", o.Batch)
	case !(o.LR > 0) || !finite(o.LR):
		return o, usagef("--lr %v: give a positive learning rate", o.LR)
	case !finite(o.WeightDecay):
		return o, usagef("--weight-decay %v: give a number (0 or -1: none)", o.WeightDecay)
	case !finite(o.Warmup) || o.Warmup > 1:
		return o, usagef("--warmup %v: give a fraction of the steps, at most 1 (0 or -1: none)", o.Warmup)
	case o.MaxGradNorm == 0 || !finite(o.MaxGradNorm):
		return o, usagef("--max-grad-norm %v: give a positive norm to clip at, or -1 to switch clipping off", o.MaxGradNorm)
	case o.Augment > train.MaxAugment:
		return o, usagef("--augment %d: give at most %d copies per example (0 or -1: none)", o.Augment, train.MaxAugment)
	case o.Threads < 0 || o.Threads > maxThreads:
		return o, usagef("--threads %d: give 1 to %d (0: physical cores)", o.Threads, maxThreads)
	}
	if o.WeightDecay > 0 && o.LR*o.WeightDecay >= 1 {
		return o, usagef("--weight-decay %v with --lr %v: AdamW would scale the weights by 1 - lr x decay = %v each step; give a decay below %v",
			o.WeightDecay, o.LR, 1-o.LR*o.WeightDecay, 1/o.LR)
	}
	for _, f := range []string{"max-items", "max-input", "max-target", "encoder-max-tokens"} {
		if n := c.Int(f); n < 1 {
			return o, usagef("--%s %d: give 1 or more", f, n)
		}
	}
	if n := c.Int("retrieve-k"); n < 0 || n > 64 {
		return o, usagef("--retrieve-k %d: give 0 (no retrieval) to 64 history items", n)
	}
	if c.Bool("retrieve-only") && c.Int("retrieve-k") == 0 {
		return o, usagef("--retrieve-only needs --retrieve-k K")
	}
	if _, err := persona.ParseLayout(c.String("layout")); err != nil {
		return o, usagef("--layout: %v", err)
	}
	if n := c.Int("chat-turns"); n < 0 || n > 16 {
		return o, usagef("--chat-turns %d: give 0 to 16 earlier questions", n)
	}
	if n := c.Int("limit"); n < 0 {
		return o, usagef("--limit %d: give the number of questions to use (0: all)", n)
	}
	if n := c.Int("n-instruction"); n < 1 || n > maxInstructionRows {
		return o, usagef("--n-instruction %d: give 1 to %d instruction rows", n, maxInstructionRows)
	}
	if n := c.Int("n-persona"); n < 1 || n > persona.MaxPersonaRows {
		return o, usagef("--n-persona %d: give 1 to %d persona rows", n, persona.MaxPersonaRows)
	}
	if tau := c.Float64("tau"); !(float32(tau) > 0) || math.IsInf(float64(float32(tau)), 0) {
		return o, usagef("--tau %v: give a positive temperature (within float32 range)", tau)
	}
	// Zero means "none" on the command line, where the defaults are
	// explicit; the library reads zero as its default, negative as none.
	if o.WeightDecay == 0 {
		o.WeightDecay = -1
	}
	if o.Warmup == 0 {
		o.Warmup = -1
	}
	if o.Augment == 0 {
		o.Augment = -1
	}
	if err := o.Validate(); err != nil {
		return o, usageError{err}
	}
	return o, nil
}

// devNLL runs the inference-path persona check on the dev split.
func (tc *trainConfig) devNLL(ctx context.Context, m *llama.Model, enc *persona.Encoder, plug *persona.Plug, cache *persona.Cache) (eval.NLLReport, error) {
	threads := tc.Options.Threads
	qs, err := lamp.ReadQuestions(tc.DevQuestions)
	if err != nil {
		return eval.NLLReport{}, err
	}
	outs, err := lamp.ReadOutputs(tc.DevOutputs)
	if err != nil {
		return eval.NLLReport{}, err
	}
	golds := map[string]string{}
	for _, g := range outs.Golds {
		golds[g.ID] = g.Output
	}
	backend, err := kernels.Open("cpu", kernels.Options{Threads: threads, Logger: slog.Default()})
	if err != nil {
		return eval.NLLReport{}, err
	}
	defer backend.Close()
	// The window holds a prompt and a target, each no longer than the
	// model's training context (flags above it cap nothing more).
	limit := m.Info().NCtxTrain
	if limit <= 0 {
		limit = 4096
	}
	window := min(limit, min(tc.Data.MaxInput, limit)+min(tc.Data.MaxTarget, limit))
	lc, err := m.NewContext(llama.ContextOptions{NCtx: window + plug.NRows() + 8, Threads: threads})
	if err != nil {
		return eval.NLLReport{}, err
	}
	defer lc.Close()
	pz := &persona.Personalizer{Method: persona.MethodPPlug, LLM: m, Plug: plug, Encoder: enc, Backend: backend, Cache: cache}
	return eval.PersonaNLL(ctx, pz, lc, tc.Task, qs, golds, eval.NLLOptions{})
}
