package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pplug/pplug/eval"
	"github.com/pplug/pplug/eval/synthusers"
	"github.com/pplug/pplug/internal/progress"
	"github.com/pplug/pplug/lamp"
	"github.com/pplug/pplug/persona"
	"github.com/pplug/pplug/persona/profile"
)

// evalPersonaFlags are the persona flags that make sense for a whole
// questions file: not --profile, --question-id (every question brings its
// own profile), --retrieve-k (eval has -k) nor --method (eval has
// --methods).
func evalPersonaFlags() []cli.Flag {
	var out []cli.Flag
	for _, f := range personaFlags() {
		switch f.Names()[0] {
		case "profile", "question-id", "retrieve-k", "method":
			continue
		}
		out = append(out, f)
	}
	return out
}

func evalCommand() *cli.Command {
	flags := []cli.Flag{
		verboseFlag(),
		&cli.StringFlag{Name: "questions", Aliases: []string{"q"}, Usage: "LaMP questions `FILE` ({split}_questions.json)"},
		&cli.StringFlag{Name: "golds", Usage: "LaMP outputs `FILE` with the gold answers; scores the predictions"},
		&cli.StringFlag{Name: "methods", Usage: "comma-separated methods: none, bm25, recent, pplug, pplug+bm25 or all (default: none,bm25,recent, plus pplug,pplug+bm25 with --plug)"},
		&cli.IntFlag{Name: "k", Value: persona.DefaultTopK, Usage: "history items in the prompt for bm25 and recent"},
		&cli.IntFlag{Name: "limit", Usage: "evaluate only the first N questions (0: all)"},
		&cli.IntFlag{Name: "max-new-tokens", Aliases: []string{"n"}, Usage: "tokens to generate per answer (0: 128, 10 for LaMP-3, as the paper)"},
		&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "output `DIR` for <method>_outputs.json and results.json/md (default: eval-<task>)"},
		&cli.BoolFlag{Name: "chat", Usage: "wrap each prompt in the model's chat template (one user message)"},
		labelsFlag(),
		&cli.BoolFlag{Name: "no-nll", Usage: "do not score the golds' likelihood under each method (with --golds)"},
	}
	flags = append(flags, modelFlags()...)
	flags = append(flags, contextFlags()...)
	flags = append(flags, evalPersonaFlags()...)
	return &cli.Command{
		Name:  "eval",
		Usage: "evaluate personalisation methods on LaMP data: predictions, official scores, persona NLL",
		UsageText: "pplug eval --task LaMP_N|generic --questions Q.json [--golds O.json] -m MODEL [--plug P] [--methods none,bm25,recent,pplug,pplug+bm25] [-k 4] [--limit N] [-n MAX_NEW] [--out DIR]\n" +
			"   pplug eval score --task LaMP_N --golds OUTPUTS.json --preds PREDS.json [--only-predicted] [--json]\n" +
			"   pplug eval nll --task LaMP_N --questions Q.json --golds O.json -m MODEL --plug P [--limit N] [--json]\n" +
			"   pplug eval show --task LaMP_N --questions Q.json [--golds O.json] -m MODEL [--plug P] [--users 3 | --ids A,B]\n" +
			"   pplug eval synth-users -o DIR [--users 40] [--items 12] [--seed 1] [--split 0.75] [--templates default|alt]",
		Flags:  flags,
		Action: runEval,
		Subcommands: []*cli.Command{
			evalScoreCommand(),
			evalNLLCommand(),
			evalShowCommand(),
			evalSynthUsersCommand(),
		},
	}
}

// evalTask reads --task; the golds file may name it instead.
func evalTask(c *cli.Context, golds *lamp.Outputs) (lamp.Task, error) {
	if s := c.String("task"); s != "" {
		t, err := lamp.ParseTask(s)
		if err != nil {
			return t, usageError{err}
		}
		if golds != nil && golds.Task != "" && !t.IsGeneric() {
			if gt, err := golds.ParsedTask(); err == nil && !gt.SameAs(t) {
				return t, fmt.Errorf("%s holds %s golds, not %s", c.String("golds"), golds.Task, t)
			}
		}
		return t, nil
	}
	if golds != nil {
		t, err := golds.ParsedTask()
		if err != nil {
			return t, fmt.Errorf("%s: %w (give --task)", c.String("golds"), err)
		}
		return t, nil
	}
	// Nothing names a LaMP task: any task, the input used as given.
	return lamp.Generic, nil
}

// readGolds reads --golds when given.
func readGolds(c *cli.Context) (*lamp.Outputs, error) {
	path := c.String("golds")
	if path == "" {
		return nil, nil
	}
	o, err := lamp.ReadOutputs(path)
	if err != nil {
		return nil, fmt.Errorf("golds: %w", err)
	}
	return &o, nil
}

// evalProfileOptions are the profile options of --fields and --max-items.
func evalProfileOptions(c *cli.Context) (profile.Options, error) {
	o := profile.Options{MaxItems: c.Int("max-items")}
	if o.MaxItems <= 0 {
		return o, usagef("--max-items must be positive")
	}
	if f := c.String("fields"); f != "" {
		o.Fields = profile.SplitFields(f)
	}
	return o, nil
}

func runEval(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef("unexpected argument %q (subcommands: score, nll, show, synth-users)", c.Args().First())
	}
	if c.Bool("verbose") {
		setupLogging(true, c.App.ErrWriter)
	}
	stdout, stderr := c.App.Writer, c.App.ErrWriter
	qpath := c.String("questions")
	if qpath == "" {
		return usagef("no questions given: pass --questions FILE (a LaMP {split}_questions.json)")
	}
	golds, err := readGolds(c)
	if err != nil {
		return err
	}
	task, err := evalTask(c, golds)
	if err != nil {
		return err
	}
	methods, err := evalMethods(c)
	if err != nil {
		return err
	}
	popts, err := evalProfileOptions(c)
	if err != nil {
		return err
	}
	copts, err := contextOptions(c)
	if err != nil {
		return err
	}
	// Check the questions (and golds) before loading anything.
	ids, err := eval.QuestionIDs(qpath, c.Int("limit"))
	if err != nil {
		return err
	}
	if golds != nil {
		if _, err := eval.GoldsFor(golds.Golds, ids); err != nil {
			return fmt.Errorf("%s: %w", c.String("golds"), err)
		}
	}
	out := c.String("out")
	if out == "" {
		out = "eval-" + task.Name()
	}

	ctx := c.Context
	m, err := loadModel(ctx, c, stderr)
	if err != nil {
		return err
	}
	defer m.Close()
	if c.Bool("chat") && m.Info().ChatTemplate == "" {
		return usagef("--chat: the model has no chat template")
	}
	var pz *persona.Personalizer
	if c.String("plug") != "" {
		var closeRT func() error
		if pz, closeRT, err = openRuntime(ctx, c, m); err != nil {
			return err
		}
		defer closeRT()
	}
	applyThreadDefault(c, m, &copts)
	lctx, err := m.NewContext(copts)
	if err != nil {
		return err
	}
	defer lctx.Close()

	p := &eval.Predictor{
		LLM: m, Ctx: lctx, Personalizer: pz, Task: task, K: c.Int("k"), MaxNew: c.Int("max-new-tokens"),
		Chat: c.Bool("chat"), Profile: popts,
	}
	defer p.Close()
	pr := &evalProgress{stderr: stderr, out: out}
	o := eval.RunOptions{
		Methods: methods, QuestionsFile: qpath, GoldsFile: c.String("golds"), Limit: c.Int("limit"), OutDir: out, NoNLL: c.Bool("no-nll"),
		Report:   eval.Report{Model: c.String("model"), Plug: c.String("plug"), Encoder: c.String("encoder")},
		Progress: pr.progress, MethodDone: pr.done, Labels: labelsOf(c),
	}
	if golds != nil {
		o.Golds = golds.Golds
		if len(o.Labels) == 0 {
			o.Labels = golds.Labels
		}
	}
	rep, err := eval.Run(ctx, p, o)
	if len(rep.Results) > 0 {
		fmt.Fprint(stdout, rep.Markdown())
		fmt.Fprintf(stderr, "results: %s, %s\n", filepath.Join(out, "results.json"), filepath.Join(out, "results.md"))
	}
	if err != nil && errors.Is(err, context.Canceled) && len(rep.Results) > 0 {
		fmt.Fprintf(stderr, "pplug: interrupted: the %d completed method(s) are kept in %s\n", len(rep.Results), out)
	}
	return err
}

// evalMethods reads --methods (default: none, bm25, recent, and with
// --plug pplug and pplug+bm25) and checks eval's numeric flags.
func evalMethods(c *cli.Context) ([]eval.Method, error) {
	var methods []eval.Method
	if s := c.String("methods"); c.IsSet("methods") {
		var err error
		if methods, err = eval.ParseMethods(s); err != nil {
			return nil, usageError{err}
		}
	} else {
		methods = persona.EvalMethods(c.String("plug") != "")
	}
	for _, m := range methods {
		if m.NeedsPlug() && c.String("plug") == "" {
			return nil, usagef("method %s needs a Persona-Plug plug-in: pass --plug FILE (pplug plug init / pplug train), or leave %s out of --methods", m, m)
		}
	}
	switch {
	case c.Int("k") <= 0:
		return nil, usagef("-k must be positive")
	case c.Int("limit") < 0:
		return nil, usagef("--limit must not be negative")
	case c.Int("max-new-tokens") < 0:
		return nil, usagef("--max-new-tokens must not be negative")
	}
	return methods, nil
}

// evalProgress shows eval's progress: a bar per method, a line when one is
// done.
type evalProgress struct {
	stderr io.Writer
	out    string
	bar    *progress.Bar
	method eval.Method
}

func (e *evalProgress) progress(method eval.Method, done, total int, elapsed time.Duration) {
	if e.bar == nil || e.method != method {
		e.bar, e.method = progress.New(e.stderr, "eval "+string(method), float64(total)), method
	}
	e.bar.Set(float64(done), fmt.Sprintf("%d/%d questions, %.2f questions/s", done, total, float64(done)/max(elapsed.Seconds(), 1e-9)))
}

func (e *evalProgress) done(r eval.Result) {
	if e.bar != nil {
		e.bar.Finish(fmt.Sprintf("%d questions, %.2f questions/s", r.Questions, 1/max(r.SecondsPerQuestion, 1e-9)))
		e.bar = nil
	}
	var scores []string
	if r.Scores != nil {
		for _, mt := range r.Scores.Metrics() {
			scores = append(scores, fmt.Sprintf("%s %.4f", mt, r.Scores.Values[mt]))
		}
		for _, w := range r.Scores.Warnings {
			slog.Warn("score", "method", r.Method, "warning", w)
		}
	}
	fmt.Fprintf(e.stderr, "%s: %d questions in %.1f s (%.3f s/question) -> %s %s\n", r.Method, r.Questions, r.Seconds,
		r.SecondsPerQuestion, filepath.Join(e.out, r.Predictions), strings.Join(scores, ", "))
	if r.Truncated > 0 {
		slog.Warn("prompts cut to fit the context window (raise -c/--ctx-size)", "method", r.Method, "questions", r.Truncated)
	}
	if r.NoProfile > 0 {
		slog.Warn("questions without a usable history answered from the input alone", "method", r.Method, "questions", r.NoProfile)
	}
}

// ---- eval score ------------------------------------------------------------

// labelsFlag is --labels of eval and eval score.
func labelsFlag() cli.Flag {
	return &cli.StringFlag{Name: "labels", Usage: "comma-separated answers of a generic classification task: scored by exact match (default: the golds file's \"labels\")"}
}

// labelsOf reads --labels.
func labelsOf(c *cli.Context) []string {
	var out []string
	for _, l := range strings.Split(c.String("labels"), ",") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func evalScoreCommand() *cli.Command {
	return &cli.Command{
		Name:      "score",
		Usage:     "score a predictions file against golds like the official LaMP scorer",
		UsageText: "pplug eval score [--task LaMP_N|generic] --golds OUTPUTS.json --preds PREDS.json [--only-predicted] [--labels a,b] [--json]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "task", Usage: "LaMP_N or generic (default: the golds file's; generic when it names no LaMP task)"},
			&cli.StringFlag{Name: "golds", Usage: "LaMP outputs `FILE` with the gold answers"},
			&cli.StringFlag{Name: "preds", Usage: "predictions `FILE` (outputs format)"},
			&cli.BoolFlag{Name: "only-predicted", Usage: "score only the golds that have a prediction (a run with --limit), instead of refusing the rest"},
			labelsFlag(),
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
		},
		Action: runEvalScore,
	}
}

func runEvalScore(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef("unexpected argument %q", c.Args().First())
	}
	if c.String("golds") == "" || c.String("preds") == "" {
		return usagef("pass both --golds FILE and --preds FILE")
	}
	var task lamp.Task
	if s := c.String("task"); s != "" {
		t, err := lamp.ParseTask(s)
		if err != nil {
			return usageError{err}
		}
		task = t
	}
	s, err := lamp.ScoreFilesWith(task, c.String("golds"), c.String("preds"), lamp.ScoreOptions{
		Labels: labelsOf(c), OnlyPredicted: c.Bool("only-predicted")})
	if err != nil {
		return err
	}
	for _, w := range s.Warnings {
		fmt.Fprintf(c.App.ErrWriter, "pplug: warning: %s\n", w)
	}
	w := c.App.Writer
	if c.Bool("json") {
		b, err := json.MarshalIndent(s, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	fmt.Fprintln(w, s.MarkdownHeader())
	fmt.Fprintln(w, s.MarkdownRow())
	fmt.Fprintf(w, "\n%d predictions scored", s.N)
	if s.Skipped > 0 {
		fmt.Fprintf(w, " (%d golds without a prediction left out)", s.Skipped)
	}
	if s.Invalid > 0 {
		fmt.Fprintf(w, ", %d not valid answers", s.Invalid)
	}
	if s.Extra > 0 {
		fmt.Fprintf(w, ", %d without a gold (ignored)", s.Extra)
	}
	fmt.Fprintln(w)
	return nil
}

// ---- eval nll --------------------------------------------------------------

func evalNLLCommand() *cli.Command {
	flags := []cli.Flag{
		verboseFlag(),
		&cli.StringFlag{Name: "questions", Aliases: []string{"q"}, Usage: "LaMP questions `FILE`"},
		&cli.StringFlag{Name: "golds", Usage: "LaMP outputs `FILE` with the gold answers"},
		&cli.IntFlag{Name: "limit", Usage: "use only the first N questions (0: all)"},
		&cli.BoolFlag{Name: "json", Usage: "print JSON"},
	}
	flags = append(flags, modelFlags()...)
	flags = append(flags, contextFlags()...)
	flags = append(flags, evalPersonaFlags()...)
	return &cli.Command{
		Name:  "nll",
		Usage: "personalisation check: gold-output NLL with the user's own persona, none, and another user's",
		UsageText: "pplug eval nll --task LaMP_N --questions Q.json --golds O.json -m MODEL --plug P [--encoder E] [--limit N] [--json]\n\n" +
			"For every question, the mean negative log-likelihood per token of its gold output (and EOS) after the input,\n" +
			"with the plug's rows for the user's own history, with no rows, and with the rows of the next question's\n" +
			"user (a different history, cyclically). Means are token-weighted, in nats.",
		Flags:  flags,
		Action: runEvalNLL,
	}
}

func runEvalNLL(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef("unexpected argument %q", c.Args().First())
	}
	if c.Bool("verbose") {
		setupLogging(true, c.App.ErrWriter)
	}
	stdout, stderr := c.App.Writer, c.App.ErrWriter
	qpath := c.String("questions")
	switch {
	case qpath == "":
		return usagef("no questions given: pass --questions FILE")
	case c.String("golds") == "":
		return usagef("no golds given: pass --golds FILE (the gold outputs are what is scored)")
	case c.String("plug") == "":
		return usagef("no plug given: pass --plug FILE (the persona rows come from it)")
	case c.Int("limit") < 0:
		return usagef("--limit must not be negative")
	}
	golds, err := readGolds(c)
	if err != nil {
		return err
	}
	task, err := evalTask(c, golds)
	if err != nil {
		return err
	}
	popts, err := evalProfileOptions(c)
	if err != nil {
		return err
	}
	copts, err := contextOptions(c)
	if err != nil {
		return err
	}
	qs, gmap, err := nllQuestions(c, qpath, golds)
	if err != nil {
		return err
	}

	ctx := c.Context
	m, err := loadModel(ctx, c, stderr)
	if err != nil {
		return err
	}
	defer m.Close()
	pz, closeRT, err := openRuntime(ctx, c, m)
	if err != nil {
		return err
	}
	defer closeRT()
	applyThreadDefault(c, m, &copts)
	lctx, err := m.NewContext(copts)
	if err != nil {
		return err
	}
	defer lctx.Close()
	bar := progress.New(stderr, "persona nll", float64(len(qs)))
	t0 := time.Now()
	rep, err := eval.PersonaNLL(ctx, pz, lctx, task, qs, gmap, eval.NLLOptions{
		Profile: popts,
		Progress: func(done, total int) {
			bar.Set(float64(done), fmt.Sprintf("%d/%d questions, %.2f questions/s", done, total, float64(done)/max(time.Since(t0).Seconds(), 1e-9)))
		},
	})
	if err != nil {
		return err
	}
	bar.Finish("")
	if rep.Truncated > 0 {
		slog.Warn("prompts cut to fit the context window (raise -c/--ctx-size)", "questions", rep.Truncated)
	}
	return printNLL(stdout, rep, c.Bool("json"))
}

// nllQuestions reads the first --limit questions and their golds.
func nllQuestions(c *cli.Context, qpath string, golds *lamp.Outputs) ([]lamp.Question, map[string]string, error) {
	var qs []lamp.Question
	limit := c.Int("limit")
	stop := errors.New("stop")
	err := lamp.ScanQuestions(qpath, func(q lamp.Question) error {
		if limit > 0 && len(qs) == limit {
			return stop
		}
		qs = append(qs, q)
		return nil
	})
	if err != nil && err != stop {
		return nil, nil, err
	}
	if len(qs) == 0 {
		return nil, nil, fmt.Errorf("%s holds no questions", qpath)
	}
	if dups := lamp.DuplicateIDs(qs); len(dups) > 0 {
		slog.Warn(fmt.Sprintf("%s: question ids occur more than once (each is scored against the same gold): %q", qpath, dups))
	}
	ids := make([]string, len(qs))
	for i, q := range qs {
		ids[i] = q.ID
	}
	gl, err := eval.GoldsFor(golds.Golds, ids)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", c.String("golds"), err)
	}
	gmap := make(map[string]string, len(gl))
	for _, g := range gl {
		gmap[g.ID] = g.Output
	}
	return qs, gmap, nil
}

// printNLL prints the persona check as JSON or a table.
func printNLL(stdout io.Writer, rep eval.NLLReport, asJSON bool) error {
	if asJSON {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", b)
		return err
	}
	fmt.Fprintf(stdout, "%s: %d questions, %d target tokens; mean NLL per token (nats)\n", rep.Task, rep.Questions, rep.Tokens)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "own persona\t%.4f\n", rep.Own)
	fmt.Fprintf(tw, "no persona\t%.4f\n", rep.None)
	if rep.HasOther {
		fmt.Fprintf(tw, "other user's persona\t%.4f\n", rep.Other)
	} else {
		fmt.Fprintf(tw, "other user's persona\t- (one user only)\n")
	}
	fmt.Fprintf(tw, "own < none\t%.1f%% of questions\n", 100*rep.OwnBeatsNone)
	if rep.HasOther {
		fmt.Fprintf(tw, "own < other\t%.1f%% of questions\n", 100*rep.OwnBeatsOther)
		fmt.Fprintf(tw, "own < both\t%.1f%% of questions\n", 100*rep.OwnBeatsBoth)
	}
	if rep.Skipped > 0 {
		fmt.Fprintf(tw, "skipped (no usable history)\t%d questions\n", rep.Skipped)
	}
	return tw.Flush()
}

// ---- eval synth-users ------------------------------------------------------

func evalSynthUsersCommand() *cli.Command {
	return &cli.Command{
		Name:  "synth-users",
		Usage: "write a synthetic LaMP-7-format personalisation benchmark in TinyStories style",
		UsageText: "pplug eval synth-users -o DIR [--users 40] [--items 12] [--questions-per-user 4] [--seed 1] [--split 0.75] [--templates default|alt]\n\n" +
			"Each user has a recurring character, pet, toy and place shown in all their history stories and in the gold\n" +
			"continuations of their questions, never in the question inputs. Users are split between train, dev and test;\n" +
			"no dev or test user's name comes with their pet, toy or place in any training user. --templates alt draws\n" +
			"names, pets, toys, places, stories and questions disjoint from the default set's.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o", "out"}, Usage: "output `DIR`"},
			&cli.IntFlag{Name: "users", Value: synthusers.DefaultUsers, Usage: "users in all"},
			&cli.IntFlag{Name: "items", Value: synthusers.DefaultItems, Usage: "history stories per user"},
			&cli.IntFlag{Name: "questions-per-user", Value: synthusers.DefaultQuestionsPerUser, Usage: "questions per user (at most 6)"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "random seed"},
			&cli.Float64Flag{Name: "split", Value: synthusers.DefaultSplit, Usage: "share of users in train; the rest is halved between dev and test"},
			&cli.StringFlag{Name: "templates", Value: synthusers.TemplatesDefault, Usage: "template set: " + strings.Join(synthusers.TemplateSets(), " or ") + " (disjoint names, objects, stories and questions)"},
		},
		Action: runEvalSynthUsers,
	}
}

func runEvalSynthUsers(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef("unexpected argument %q", c.Args().First())
	}
	dir := c.String("output")
	if dir == "" {
		return usagef("no output folder: pass -o DIR")
	}
	o := synthusers.Options{Users: c.Int("users"), Items: c.Int("items"), QuestionsPerUser: c.Int("questions-per-user"), Seed: c.Uint64("seed"),
		Split: c.Float64("split"), Templates: c.String("templates")}
	for _, f := range []string{"users", "items", "questions-per-user"} {
		if c.Int(f) <= 0 {
			return usagef("--%s must be positive", f)
		}
	}
	if c.Float64("split") <= 0 {
		return usagef("--split must be between 0 and 1")
	}
	ds, err := synthusers.Generate(o)
	if err != nil {
		return usageError{err}
	}
	if err := synthusers.Write(dir, ds); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "wrote %s (task %s): ", dir, synthusers.Task.Name())
	for i, sp := range ds.Splits() {
		if i > 0 {
			fmt.Fprint(c.App.Writer, ", ")
		}
		fmt.Fprintf(c.App.Writer, "%s %d users / %d questions", sp.Name, len(sp.Users), len(sp.Questions))
	}
	fmt.Fprintln(c.App.Writer)
	return nil
}
