package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/pplug/pplug/internal/progress"
	"github.com/pplug/pplug/kernels"
	"github.com/pplug/pplug/lamp"
	"github.com/pplug/pplug/llama"
	"github.com/pplug/pplug/persona"
	"github.com/pplug/pplug/persona/profile"
)

func profileFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "profile", Usage: "user profile `FILE`: JSON array or JSONL of history items, or a LaMP question (file)"},
		&cli.StringFlag{Name: "question-id", Usage: "the question (user) to take from a LaMP questions file"},
		&cli.StringFlag{Name: "task", Usage: "LaMP task (lamp1..lamp7, LaMP_time_N) or generic: selects the history text fields and the query part of the input (generic: the text field, the whole input)"},
		&cli.StringFlag{Name: "fields", Usage: "comma-separated history fields to use as text (overrides --task's)"},
		&cli.IntFlag{Name: "max-items", Value: profile.DefaultMaxItems, Usage: "keep the most recent N history items"},
	}
}

func personaFlags() []cli.Flag {
	flags := profileFlags()
	return append(flags,
		&cli.StringFlag{Name: "plug", Usage: "Persona-Plug plug-in `FILE` (pplug plug init / pplug train); without it a profile personalises by retrieval"},
		&cli.StringFlag{Name: "encoder", Usage: "history encoder GGUF `FILE` (BERT/BGE family); default: the LLM itself, mean-pooled"},
		&cli.StringFlag{Name: "pooling", Value: "default", Usage: "encoder pooling: default (the model's own, else mean), cls, mean or last"},
		&cli.IntFlag{Name: "encoder-max-tokens", Value: 512, Usage: "truncate each history item to this many tokens"},
		&cli.StringFlag{Name: "device", Value: "auto", Usage: "where the plug-in's pooling runs: auto, cpu, cuda or metal"},
		&cli.StringFlag{Name: "cache-dir", Usage: "embedding cache folder (default $PPLUG_CACHE_DIR or the user cache dir)", EnvVars: []string{"PPLUG_CACHE_DIR"}},
		&cli.BoolFlag{Name: "no-cache", Usage: "do not read or write the embedding cache"},
		&cli.IntFlag{Name: "retrieve-k", Value: persona.DefaultTopK, Usage: "history items put into the prompt by --method bm25 and recent (pplug+bm25 takes the plug's trained number)"},
		methodFlag(),
	)
}

// loadProfile reads --profile with the task and field options.
func loadProfile(c *cli.Context) (*profile.Profile, lamp.Task, error) {
	var task lamp.Task
	if s := c.String("task"); s != "" {
		t, err := lamp.ParseTask(s)
		if err != nil {
			return nil, task, usageError{err}
		}
		task = t
	}
	opts := profile.Options{Task: task, MaxItems: c.Int("max-items"), QuestionID: c.String("question-id")}
	if f := c.String("fields"); f != "" {
		opts.Fields = profile.SplitFields(f)
	}
	if opts.MaxItems <= 0 {
		return nil, task, usagef("--max-items must be positive")
	}
	// The profile package's errors name the profile and its file already
	// (profile.LoadError).
	prof, err := profile.LoadContext(c.Context, c.String("profile"), opts)
	if err != nil {
		return nil, task, fieldsHint(c, err)
	}
	reportProfile(prof, c.Int("max-items"))
	return prof, task, nil
}

// fieldsHint names the flag that chose the text fields when no item is
// usable.
func fieldsHint(c *cli.Context, err error) error {
	switch {
	case !errors.Is(err, profile.ErrNoUsableItems):
		return err
	case c.String("fields") != "":
		return fmt.Errorf("--fields %s: %w", c.String("fields"), err)
	case c.String("task") != "":
		return fmt.Errorf("--task %s: %w", c.String("task"), err)
	}
	return err
}

// reportProfile says on stderr what loading left out and why: one line per
// reason (counts and the first items) and the items --max-items dropped.
func reportProfile(prof *profile.Profile, maxItems int) {
	for _, line := range profile.Summarize(prof.Warnings) {
		slog.Warn("profile", "warning", line)
	}
	if kept := prof.Kept(); kept != "" {
		slog.Warn("profile", "warning", fmt.Sprintf("%s (--max-items %d; pass a larger --max-items to keep more)", kept, maxItems))
	}
}

// personaState is the personalisation of one run: the Personalizer that
// --profile, --plug and --method ask for and the user's prepared persona.
type personaState struct {
	pz      *persona.Personalizer
	prof    *profile.Profile // nil without --profile
	user    *persona.Persona // nil without --profile
	key     string           // the profile's name in the embedding cache
	path    string           // --profile
	closers []io.Closer
}

func (p *personaState) Close() error {
	var errs []error
	errs = append(errs, p.user.Close())
	for i := len(p.closers) - 1; i >= 0; i-- {
		errs = append(errs, p.closers[i].Close())
	}
	return errors.Join(errs...)
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// methodFlag is --method of generate, chat and bench.
func methodFlag() cli.Flag {
	return &cli.StringFlag{Name: "method", Value: "auto", Usage: "personalisation: auto (pplug with --plug, bm25 with a profile alone), none, bm25, recent, pplug or pplug+bm25"}
}

// personaMethod is the method the flags ask for (persona.ChooseMethod,
// its errors named by the flags).
func personaMethod(c *cli.Context) (persona.Method, error) {
	s := "auto"
	if c.IsSet("method") {
		s = c.String("method")
	}
	m, err := persona.ChooseMethod(c.String("plug") != "", c.String("profile") != "", s)
	switch {
	case err == nil:
		return m, nil
	case errors.Is(err, persona.ErrPlugNeedsProfile):
		return "", usagef("--plug needs --profile: a plug-in turns a user's history into persona rows")
	case errors.Is(err, persona.ErrMethodNeedsPlug):
		return "", usagef("--method %s needs --plug", s)
	case errors.Is(err, persona.ErrMethodNeedsProfile):
		return "", usagef("--method %s needs --profile", s)
	case errors.Is(err, persona.ErrMethodUsesNoPlug):
		return "", usagef("--method %s uses no plug; leave out --plug", s)
	}
	return "", usageError{fmt.Errorf("--method: %w", err)}
}

// checkPersonaFlags checks that --profile, --plug and --method go
// together, and returns the method they ask for. Commands call it before
// they load a model; setupPersona calls it again.
func checkPersonaFlags(c *cli.Context) (persona.Method, error) { return personaMethod(c) }

// setupPersona prepares what --profile, --plug and --method ask for.
func setupPersona(ctx context.Context, c *cli.Context, llm *llama.Model, stderr io.Writer) (*personaState, error) {
	method, err := checkPersonaFlags(c)
	if err != nil {
		return nil, err
	}
	st := &personaState{pz: &persona.Personalizer{Method: method, LLM: llm, K: c.Int("retrieve-k")}}
	if method == persona.MethodNone {
		if c.String("question-id") != "" && !promptGiven(c) {
			// No persona, but the question's input is the prompt.
			prof, _, err := loadProfile(c)
			if err != nil {
				return nil, err
			}
			st.prof = prof
		}
		return st, nil
	}
	prof, task, err := loadProfile(c)
	if err != nil {
		return nil, err
	}
	st.prof, st.key, st.path = prof, profileKey(c), c.String("profile")
	if task.Valid() {
		st.pz.Query = task.QueryPart
	}
	if method.NeedsPlug() {
		if err := st.openPlug(ctx, c, llm); err != nil {
			st.Close()
			return nil, err
		}
	}
	if err := st.pz.Check(); err != nil {
		st.Close()
		return nil, err
	}
	if err := st.prepare(ctx, stderr); err != nil {
		st.Close()
		return nil, err
	}
	return st, nil
}

// openPlug opens --plug, the encoder and the kernels backend into the
// Personalizer.
func (st *personaState) openPlug(ctx context.Context, c *cli.Context, llm *llama.Model) error {
	rt, closeRT, err := openRuntime(ctx, c, llm)
	if err != nil {
		return err
	}
	st.closers = append(st.closers, closerFunc(closeRT))
	st.pz.Plug, st.pz.Encoder, st.pz.Backend, st.pz.Cache = rt.Plug, rt.Encoder, rt.Backend, rt.Cache
	optionalCache(rt.Cache)
	return nil
}

// optionalCache lets generate, chat and serve run without the embedding
// cache when it cannot be used, with a warning.
func optionalCache(cache *persona.Cache) {
	if cache == nil {
		return
	}
	cache.Optional = true
	cache.Warn = func(err error) {
		slog.Warn("the embedding cache cannot be used; running without it (--no-cache skips it)", "err", err)
	}
}

// prepare (re)builds the user's persona from st.prof.
func (st *personaState) prepare(ctx context.Context, stderr io.Writer) error {
	var bar *progress.Bar
	var pf func(done, total int)
	if st.pz.Method.NeedsPlug() {
		bar = progress.New(stderr, "encoding profile", float64(len(st.prof.Items)))
		pf = func(done, total int) {
			bar.Set(float64(done)*float64(len(st.prof.Items))/float64(max(total, 1)), "")
		}
	}
	user, us, err := st.pz.Prepare(ctx, st.prof.Items, pf)
	if err != nil {
		return err
	}
	if bar != nil {
		bar.Finish("")
	}
	old := st.user
	st.user = user
	_ = old.Close()
	if us.Rebuilt > 0 {
		slog.Warn("damaged embedding cache files were rebuilt", "files", us.Rebuilt)
	}
	args := []any{"method", st.pz.Method, "profile", st.path}
	if st.prof.QuestionID != "" {
		args = append(args, "question_id", st.prof.QuestionID)
	}
	args = append(args, "items", user.Len())
	if st.pz.Method.NeedsPlug() {
		args = append(args, "encoder", st.pz.Encoder.ID(), "cached", us.Cached, "encoded", us.Encoded, "device", st.pz.Backend.Device())
	}
	if k := st.pz.RetrieveK(); k > 0 {
		args = append(args, "retrieve_k", k)
	}
	slog.Info("personalisation", args...)
	return nil
}

// openEncoder opens --encoder, or wraps the LLM itself, with the --pooling
// and --encoder-max-tokens flags.
func openEncoder(ctx context.Context, c *cli.Context, llm *llama.Model, threads int) (*persona.Encoder, error) {
	pool, err := llama.ParsePooling(c.String("pooling"))
	if err != nil {
		return nil, usageError{err}
	}
	eo := persona.EncoderOptions{Pooling: pool, MaxTokens: c.Int("encoder-max-tokens"), Threads: threads}
	if path := c.String("encoder"); path != "" {
		return persona.OpenEncoder(ctx, path, eo)
	}
	if llm == nil {
		return nil, usagef("give the encoder with --encoder FILE, or the LLM with -m FILE to encode with the LLM itself")
	}
	return persona.NewEncoder(llm, eo)
}

// cacheFromFlags is the embedding cache --cache-dir and --no-cache ask for.
func cacheFromFlags(c *cli.Context) *persona.Cache {
	if c.Bool("no-cache") {
		return nil
	}
	dir := c.String("cache-dir")
	if dir == "" {
		dir = persona.DefaultCacheDir()
	}
	return &persona.Cache{Dir: dir}
}

// openRuntime opens what PPlug needs for any number of users: --plug, the
// encoder and the kernels backend, checked against the LLM, in a
// Personalizer of method pplug. The returned function closes them in
// reverse order.
func openRuntime(ctx context.Context, c *cli.Context, llm *llama.Model) (*persona.Personalizer, func() error, error) {
	var closers []io.Closer
	closeAll := func() error {
		var errs []error
		for i := len(closers) - 1; i >= 0; i-- {
			errs = append(errs, closers[i].Close())
		}
		return errors.Join(errs...)
	}
	fail := func(err error) (*persona.Personalizer, func() error, error) {
		closeAll()
		return nil, nil, err
	}
	plug, err := persona.ReadPlug(c.String("plug"))
	if err != nil {
		return fail(err)
	}
	enc, err := openEncoder(ctx, c, llm, c.Int("threads"))
	if err != nil {
		return fail(err)
	}
	closers = append(closers, enc)
	if err := plug.CheckModel(llm.NEmbd(), enc.Dim()); err != nil {
		return fail(fmt.Errorf("plug %s: %w", c.String("plug"), err))
	}
	if plug.Encoder != "" && plug.Encoder != enc.ID() {
		slog.Warn("the plug was made with another encoder", "plug_encoder", plug.Encoder, "encoder", enc.ID())
	}
	if id, err := persona.ModelID(llm); err == nil && plug.LLM != "" && plug.LLM != id {
		slog.Warn("the plug was made for another LLM", "plug_llm", plug.LLM, "llm", id)
	}
	backend, err := kernels.Open(c.String("device"), kernels.Options{Threads: c.Int("threads"), Logger: slog.Default()})
	if err != nil {
		return fail(err)
	}
	closers = append(closers, backend)
	pz := &persona.Personalizer{Method: persona.MethodPPlug, LLM: llm, Plug: plug, Encoder: enc, Backend: backend, Cache: cacheFromFlags(c)}
	return pz, closeAll, nil
}

// turn builds the prompt's decode-ready turn (persona.Builder) for a
// context window of window positions.
func (st *personaState) turn(ctx context.Context, prompt string, window int) (*persona.Turn, error) {
	b := persona.Builder{LLM: st.pz.LLM, Window: window}
	return b.Build(ctx, st.user, persona.Conversation{Prompt: prompt})
}

// explain prints what personalised a request (a turn's): the k history
// items that weigh most (PPlug) and the items retrieved into the prompt
// with their BM25 scores (retrieval).
func (st *personaState) explain(w io.Writer, t persona.Request, k int) {
	if st.user == nil {
		fmt.Fprintln(w, "persona: none (no --profile)")
		return
	}
	if t.Weights != nil {
		top := st.user.Top(t.Weights, k)
		fmt.Fprintf(w, "persona: the %d history items with the highest weights (of %d):\n", len(top), st.user.Len())
		for _, x := range top {
			fmt.Fprintf(w, "  %.4f  %s\n", x.Weight, itemLine(x.Index, x.Item))
		}
	}
	if t.Method.Retrieves() {
		st.explainRetrieved(w, t)
	}
}

// explainRetrieved lists the items retrieval put into the prompt: those
// that share a word with the input with their BM25 scores, then the most
// recent items it fell back to (persona.TopOrRecent), said as such.
func (st *personaState) explainRetrieved(w io.Writer, req persona.Request) {
	n := st.user.Len()
	if req.Method == persona.MethodRecent {
		fmt.Fprintf(w, "retrieved into the prompt (most recent first), %d of %d items:\n", len(req.Retrieved), n)
		listItems(w, req.Retrieved)
		return
	}
	matched := 0
	for matched < len(req.Retrieved) && req.Retrieved[matched].Score > 0 {
		matched++
	}
	if matched > 0 {
		fmt.Fprintf(w, "retrieved into the prompt (BM25 score), %d of %d items share a word with the input:\n", matched, n)
		for _, r := range req.Retrieved[:matched] {
			fmt.Fprintf(w, "  %.4f  %s\n", r.Score, itemLine(r.Index, r.Item))
		}
	}
	rest := req.Retrieved[matched:]
	switch {
	case len(rest) == 0:
	case matched == 0:
		fmt.Fprintf(w, "retrieved into the prompt: no history item shares a word with the input; retrieval fell back to the %d most recent items (of %d):\n", len(rest), n)
		listItems(w, rest)
	default:
		fmt.Fprintf(w, "then, as no other item shares a word with the input, the %d most recent of the rest:\n", len(rest))
		listItems(w, rest)
	}
}

func listItems(w io.Writer, items []persona.Retrieved) {
	for _, r := range items {
		fmt.Fprintf(w, "  %s\n", itemLine(r.Index, r.Item))
	}
}

// itemLine is an item as --explain lists it: its index, id and the start
// of its text.
func itemLine(i int, it profile.Item) string {
	text := strings.Join(strings.Fields(it.Text), " ")
	if len(text) > 100 {
		text = truncateUTF8(text, 97) + "..."
	}
	s := fmt.Sprintf("#%d", i)
	if it.ID != "" {
		s += fmt.Sprintf(" (id %s)", it.ID)
	}
	return s + "  " + text
}

func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// profileKey names --profile (and --question-id) in logs.
func profileKey(c *cli.Context) string {
	return c.String("profile") + "#" + c.String("question-id")
}
