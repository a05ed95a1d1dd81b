package main

import (
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/pplug/pplug/eval"
	"github.com/pplug/pplug/lamp"
	"github.com/pplug/pplug/persona"
)

// evalShowCommand is `pplug eval show`: a few users' answers with and
// without their persona next to the gold, for a reader (make demo).
func evalShowCommand() *cli.Command {
	flags := []cli.Flag{
		verboseFlag(),
		&cli.StringFlag{Name: "questions", Aliases: []string{"q"}, Usage: "LaMP questions `FILE` ({split}_questions.json)"},
		&cli.StringFlag{Name: "golds", Usage: "LaMP outputs `FILE`: the gold answers are shown under the methods'"},
		&cli.StringFlag{Name: "methods", Usage: "comma-separated methods (default: none and, with --plug, the plug's own: pplug+bm25 for a plug trained with --retrieve-k, else pplug)"},
		&cli.IntFlag{Name: "users", Value: 3, Usage: "show the first question of each of the first N users (users told apart by their history)"},
		&cli.StringFlag{Name: "ids", Usage: "comma-separated question ids to show instead of --users"},
		&cli.IntFlag{Name: "k", Value: persona.DefaultTopK, Usage: "history items in the prompt for bm25 and recent"},
		&cli.IntFlag{Name: "max-new-tokens", Aliases: []string{"n"}, Usage: "tokens to generate per answer (0: 128, 10 for LaMP-3)"},
	}
	flags = append(flags, modelFlags()...)
	flags = append(flags, contextFlags()...)
	flags = append(flags, evalPersonaFlags()...)
	return &cli.Command{
		Name:      "show",
		Usage:     "answer a few users' questions with each method, side by side with the gold answer (greedy, as eval)",
		UsageText: "pplug eval show --task LaMP_N|generic --questions Q.json [--golds O.json] -m MODEL [--plug P] [--users 3 | --ids A,B] [--methods none,pplug]",
		Flags:     flags,
		Action:    runEvalShow,
	}
}

func runEvalShow(c *cli.Context) error {
	if c.Bool("verbose") {
		setupLogging(true, c.App.ErrWriter)
	}
	if c.String("questions") == "" {
		return usagef("no questions given: pass --questions FILE (a LaMP {split}_questions.json)")
	}
	if c.Int("users") < 1 || c.Int("k") < 1 || c.Int("max-new-tokens") < 0 {
		return usagef("--users and -k must be positive, -n not negative")
	}
	golds, err := readGolds(c)
	if err != nil {
		return err
	}
	task, err := evalTask(c, golds)
	if err != nil {
		return err
	}
	qs, err := showQuestions(c, task)
	if err != nil {
		return err
	}
	methods, err := showMethods(c)
	if err != nil {
		return err
	}
	copts, err := contextOptions(c)
	if err != nil {
		return err
	}
	ctx := c.Context
	m, err := loadModel(ctx, c, c.App.ErrWriter)
	if err != nil {
		return err
	}
	defer m.Close()
	p := &eval.Predictor{LLM: m, Task: task, K: c.Int("k"), MaxNew: c.Int("max-new-tokens")}
	if c.String("plug") != "" {
		pz, closeRT, err := openRuntime(ctx, c, m)
		if err != nil {
			return err
		}
		defer closeRT()
		p.Personalizer = pz
	}
	if methods == nil {
		methods = defaultShowMethods(p.Personalizer)
	}
	applyThreadDefault(c, m, &copts)
	if p.Ctx, err = m.NewContext(copts); err != nil {
		return err
	}
	defer p.Ctx.Close()
	defer p.Close()
	return eval.Show(ctx, c.App.Writer, p, qs, methods, goldMap(golds))
}

// showQuestions are the questions --ids names, or the first of each of
// the first --users users.
func showQuestions(c *cli.Context, task lamp.Task) ([]lamp.Question, error) {
	all, err := lamp.ReadQuestions(c.String("questions"))
	if err != nil {
		return nil, err
	}
	popts, err := evalProfileOptions(c)
	if err != nil {
		return nil, err
	}
	if c.String("ids") == "" {
		return eval.FirstPerUser(all, c.Int("users"), task, popts)
	}
	byID := make(map[string]lamp.Question, len(all))
	for _, q := range all {
		byID[q.ID] = q
	}
	var qs []lamp.Question
	for _, id := range strings.Split(c.String("ids"), ",") {
		q, ok := byID[strings.TrimSpace(id)]
		if !ok {
			return nil, usagef("--ids: %s has no question %q", c.String("questions"), strings.TrimSpace(id))
		}
		qs = append(qs, q)
	}
	return qs, nil
}

// showMethods is --methods, checked; nil when not given.
func showMethods(c *cli.Context) ([]eval.Method, error) {
	if !c.IsSet("methods") {
		return nil, nil
	}
	methods, err := eval.ParseMethods(c.String("methods"))
	if err != nil {
		return nil, usageError{err}
	}
	for _, m := range methods {
		if m.NeedsPlug() && c.String("plug") == "" {
			return nil, usagef("method %s needs a Persona-Plug plug-in: pass --plug FILE, or leave %s out of --methods", m, m)
		}
	}
	return methods, nil
}

// defaultShowMethods are none and the plug's own method (bm25 without a
// plug).
func defaultShowMethods(pz *persona.Personalizer) []eval.Method {
	if pz == nil {
		return []eval.Method{eval.None, eval.BM25}
	}
	return []eval.Method{eval.None, pz.Plug.Method()}
}

// goldMap is the golds by question id (nil without --golds).
func goldMap(golds *lamp.Outputs) map[string]string {
	if golds == nil {
		return nil
	}
	out := make(map[string]string, len(golds.Golds))
	for _, g := range golds.Golds {
		out[g.ID] = g.Output
	}
	return out
}
