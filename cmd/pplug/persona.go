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
		pluginDeviceFlag(),
		&cli.StringFlag{Name: "cache-dir", Usage: "embedding cache folder (default $PPLUG_CACHE_DIR or the user cache dir)", EnvVars: []string{"PPLUG_CACHE_DIR"}},
		&cli.BoolFlag{Name: "no-cache", Usage: "do not read or write the embedding cache"},
		&cli.IntFlag{Name: "retrieve-k", Value: persona.DefaultTopK, Usage: "history items put into the prompt by --method bm25 and recent (pplug+bm25 takes the plug's trained number)"},
		methodFlag(),
	)
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

// setupPersona prepares what the persona options ask for.
func setupPersona(ctx context.Context, o personaOptions, llm *llama.Model, stderr io.Writer) (*personaState, error) {
	method, err := o.method()
	if err != nil {
		return nil, err
	}
	st := &personaState{pz: &persona.Personalizer{Method: method, LLM: llm, K: o.RetrieveK}}
	if method == persona.MethodNone {
		if o.QuestionPrompt {
			// No persona, but the question's input is the prompt.
			prof, _, err := o.Profile.load(ctx)
			if err != nil {
				return nil, err
			}
			st.prof = prof
		}
		return st, nil
	}
	prof, task, err := o.Profile.load(ctx)
	if err != nil {
		return nil, err
	}
	st.prof, st.key, st.path = prof, o.Profile.key(), o.Profile.Path
	if task.Valid() {
		st.pz.Query = task.QueryPart
	}
	if method.NeedsPlug() {
		if err := st.openPlug(ctx, o, llm); err != nil {
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

// openPlug opens the plug, the encoder and the kernels backend into the
// Personalizer.
func (st *personaState) openPlug(ctx context.Context, o personaOptions, llm *llama.Model) error {
	rt, closeRT, err := openRuntime(ctx, o, llm)
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

// openRuntime opens what PPlug needs for any number of users: --plug, the
// encoder and the kernels backend, checked against the LLM, in a
// Personalizer of method pplug. The returned function closes them in
// reverse order.
func openRuntime(ctx context.Context, o personaOptions, llm *llama.Model) (*persona.Personalizer, func() error, error) {
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
	plug, err := persona.ReadPlug(o.Plug)
	if err != nil {
		return fail(err)
	}
	enc, err := o.Encoder.open(ctx, llm, o.Threads)
	if err != nil {
		return fail(err)
	}
	closers = append(closers, enc)
	if err := plug.CheckModel(llm.NEmbd(), enc.Dim()); err != nil {
		return fail(fmt.Errorf("plug %s: %w", o.Plug, err))
	}
	if plug.Encoder != "" && plug.Encoder != enc.ID() {
		slog.Warn("the plug was made with another encoder", "plug_encoder", plug.Encoder, "encoder", enc.ID())
	}
	if id, err := persona.ModelID(llm); err == nil && plug.LLM != "" && plug.LLM != id {
		slog.Warn("the plug was made for another LLM", "plug_llm", plug.LLM, "llm", id)
	}
	backend, err := persona.OpenBackend(llm, persona.BackendOptions{PluginDevice: o.PluginDevice, Threads: o.Threads})
	if err != nil {
		return fail(err)
	}
	closers = append(closers, backend)
	pz := &persona.Personalizer{Method: persona.MethodPPlug, LLM: llm, Plug: plug, Encoder: enc, Backend: backend, Cache: o.Cache.cache()}
	return pz, closeAll, nil
}

// turn builds the prompt's decode-ready turn (persona.Builder) for a
// context window of window positions: in the layout the plug was trained
// on (a plug trained with --layout chat reads the prompt as one user
// message in the chat template).
func (st *personaState) turn(ctx context.Context, prompt string, window int) (*persona.Turn, error) {
	b := persona.Builder{LLM: st.pz.LLM, Window: window}
	if st.pz.Plug.Chat() && st.pz.Method.NeedsPlug() {
		t, _ := persona.ChooseTemplate(st.pz.LLM, "") // no override: no error
		b.Template = &t
	}
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
