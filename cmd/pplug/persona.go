package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"

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
		&cli.StringFlag{Name: "task", Usage: "LaMP task (lamp1..lamp7, LaMP_time_N): selects the history text fields and the query part of the input"},
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
		&cli.IntFlag{Name: "retrieve-k", Value: persona.DefaultTopK, Usage: "history items put into the prompt in retrieval mode (no --plug)"},
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
	prof, err := profile.LoadContext(c.Context, c.String("profile"), opts)
	if err != nil {
		return nil, task, fmt.Errorf("profile: %w", err)
	}
	for _, w := range prof.Warnings {
		slog.Warn("profile", "warning", w.String())
	}
	return prof, task, nil
}

// personaState is the personalisation of one run.
type personaState struct {
	mode    string // "pplug", "retrieval" or "" (none)
	prof    *profile.Profile
	task    lamp.Task
	rt      *persona.Runtime
	user    *persona.User
	retr    *persona.Retrieval
	k       int
	closers []io.Closer
}

func (p *personaState) Close() error {
	var errs []error
	for i := len(p.closers) - 1; i >= 0; i-- {
		errs = append(errs, p.closers[i].Close())
	}
	return errors.Join(errs...)
}

// query is the part of an input the persona looks at: the task's query
// part, or the whole text.
func (p *personaState) query(input string) string {
	if p.task.Valid() {
		return p.task.QueryPart(input)
	}
	return input
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// setupPersona prepares what --profile/--plug ask for.
func setupPersona(ctx context.Context, c *cli.Context, llm *llama.Model, stderr io.Writer) (*personaState, error) {
	st := &personaState{k: c.Int("retrieve-k")}
	if c.String("profile") == "" {
		if c.String("plug") != "" {
			return nil, usagef("--plug needs --profile: a plug-in turns a user's history into persona rows")
		}
		return st, nil
	}
	prof, task, err := loadProfile(c)
	if err != nil {
		return nil, err
	}
	st.prof, st.task = prof, task
	if c.String("plug") == "" {
		if st.k <= 0 {
			return nil, usagef("--retrieve-k must be positive")
		}
		st.mode = "retrieval"
		st.retr = persona.NewRetrieval(prof.Items)
		slog.Info("personalisation: retrieval (no --plug)", "profile", c.String("profile"), "items", len(prof.Items), "top_k", st.k)
		return st, nil
	}
	st.mode = "pplug"
	if err := st.openRuntime(ctx, c, llm, stderr); err != nil {
		st.Close()
		return nil, err
	}
	return st, nil
}

func (st *personaState) openRuntime(ctx context.Context, c *cli.Context, llm *llama.Model, stderr io.Writer) error {
	rt, closeRT, err := openRuntime(ctx, c, llm)
	if err != nil {
		return err
	}
	st.rt = rt
	st.closers = append(st.closers, closerFunc(closeRT))
	if rt.Cache != nil {
		// generate and chat run without the cache when it cannot be used.
		rt.Cache.Optional = true
		rt.Cache.Warn = func(err error) {
			slog.Warn("the embedding cache cannot be used; running without it (--no-cache skips it)", "err", err)
		}
	}

	bar := progress.New(stderr, "encoding profile", float64(len(st.prof.Items)))
	user, us, err := st.rt.PrepareUser(ctx, st.prof, profileKey(c), func(done, total int) {
		bar.Set(float64(done)*float64(len(st.prof.Items))/float64(max(total, 1)), "")
	})
	if err != nil {
		return err
	}
	bar.Finish("")
	st.user = user
	st.closers = append(st.closers, closerFunc(user.Close))
	if us.Rebuilt {
		slog.Warn("the embedding cache file was damaged and has been rebuilt")
	}
	slog.Info("personalisation: PPlug", "plug", c.String("plug"), "encoder", rt.Encoder.ID(), "items", user.Len(),
		"cached", us.Cached, "encoded", us.Encoded, "device", rt.Backend.Device())
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
// encoder and the kernels backend, checked against the LLM. The returned
// function closes them in reverse order.
func openRuntime(ctx context.Context, c *cli.Context, llm *llama.Model) (*persona.Runtime, func() error, error) {
	var closers []io.Closer
	closeAll := func() error {
		var errs []error
		for i := len(closers) - 1; i >= 0; i-- {
			errs = append(errs, closers[i].Close())
		}
		return errors.Join(errs...)
	}
	fail := func(err error) (*persona.Runtime, func() error, error) {
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
	return &persona.Runtime{LLM: llm, Plug: plug, Encoder: enc, Backend: backend, Cache: cacheFromFlags(c)}, closeAll, nil
}

// profileKey names a profile in the embedding cache.
func profileKey(c *cli.Context) string {
	p := c.String("profile")
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	return p + "#" + c.String("question-id")
}

// input builds the model input for a prompt: the persona rows (PPlug) or
// the retrieved items (retrieval) around the prompt's tokens. It returns
// the item weights when there are some.
func (st *personaState) input(ctx context.Context, m *llama.Model, prompt string) ([]llama.Input, []float32, error) {
	switch st.mode {
	case "retrieval":
		prompt = persona.RetrievalPrompt(st.prof.Items, st.retr.Top(st.query(prompt), st.k), prompt)
	case "pplug":
		rows, weights, err := st.rt.QueryRows(ctx, st.user, st.query(prompt))
		if err != nil {
			return nil, nil, err
		}
		toks, err := m.Tokenize(prompt, true, true)
		if err != nil {
			return nil, nil, err
		}
		return persona.Inputs(m, rows, toks), weights, nil
	}
	toks, err := m.Tokenize(prompt, true, true)
	if err != nil {
		return nil, nil, err
	}
	return []llama.Input{llama.TokenInput(toks...)}, nil, nil
}

// explain prints the k history items that weigh most.
func (st *personaState) explain(w io.Writer, weights []float32, k int) {
	if st.user == nil || weights == nil {
		return
	}
	fmt.Fprintf(w, "persona: the %d history items with the highest weights (of %d):\n", min(k, st.user.Len()), st.user.Len())
	for _, x := range st.user.Top(weights, k) {
		text := strings.Join(strings.Fields(x.Item.Text), " ")
		if len(text) > 100 {
			text = truncateUTF8(text, 97) + "..."
		}
		fmt.Fprintf(w, "  %.4f  #%d", x.Weight, x.Index)
		if x.Item.ID != "" {
			fmt.Fprintf(w, " (id %s)", x.Item.ID)
		}
		fmt.Fprintf(w, "  %s\n", text)
	}
}

func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
