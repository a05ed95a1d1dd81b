package main

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/pplug/pplug/kernels"
	"github.com/pplug/pplug/llama"
	"github.com/pplug/pplug/persona"
)

// defaultBenchQuery is the request of the time-to-first-token tests when the
// profile carries no LaMP input.
const defaultBenchQuery = "Write a short story for me about a day in the park, in my own style."

// personaTests measures what PPlug adds and saves: history encoding, the
// per-query aggregation, the prompt with persona rows, and the time to the
// first token of PPlug against the retrieval baseline (top-k BM25 items in
// the prompt) and no personalisation, for the same profile and query.
func (b *benchRun) personaTests(ctx context.Context, m *llama.Model, row benchRow, in benchInst) error {
	c := b.c
	prof, task, err := loadProfile(c)
	if err != nil {
		return err
	}
	if len(prof.Items) == 0 {
		return errNoItems
	}
	enc, err := openEncoder(ctx, c, m, in.threads)
	if err != nil {
		return err
	}
	defer enc.Close()

	var plug *persona.Plug
	if p := c.String("plug"); p != "" {
		if plug, err = persona.ReadPlug(p); err != nil {
			return err
		}
		if err := plug.CheckModel(m.NEmbd(), enc.Dim()); err != nil {
			return err
		}
	} else {
		scale, err := persona.TokenEmbeddingScale(m)
		if err != nil {
			return err
		}
		prefix := ""
		if c.String("encoder") != "" {
			prefix = persona.DefaultQueryPrefix
		}
		if plug, err = persona.NewPlug(enc.Dim(), m.NEmbd(), scale, persona.PlugOptions{QueryPrefix: prefix}); err != nil {
			return err
		}
	}
	backend, err := kernels.Open(c.String("device"), kernels.Options{Threads: in.threads, Logger: slog.Default()})
	if err != nil {
		return err
	}
	defer backend.Close()

	// 1. Encoding the history, batched.
	texts := prof.Texts()
	var vecs [][]float32
	b.personaStart("persona encode")
	ds, err := b.repeat("persona encode", nil, func() (time.Duration, error) {
		t0 := time.Now()
		v, err := enc.Encode(ctx, texts, "", nil)
		if err != nil {
			return 0, err
		}
		vecs = v
		return time.Since(t0), nil
	})
	if err != nil {
		return err
	}
	r := row
	r.Test, r.Unit = "persona encode", "items/s"
	r.Note = fmt.Sprintf("%d history items, batched, encoder %s (%s pooling)", len(texts), shortID(enc.ID()), enc.PoolingName())
	b.emit(r, ds, perSecond(len(texts)))

	user, err := plug.NewUser(backend, prof.Items, vecs)
	if err != nil {
		return err
	}
	defer user.Close()

	query := c.String("query")
	if query == "" && prof.Query != "" {
		query = prof.Query
	}
	if query == "" {
		query = defaultBenchQuery
	}
	qpart := query
	if task.Valid() {
		qpart = task.QueryPart(query)
	}
	retr := persona.NewRetrieval(prof.Items)
	k := c.Int("retrieve-k")
	ragPrompt := persona.RetrievalPrompt(prof.Items, retr.Top(qpart, k), query)
	ragToks, err := m.Tokenize(ragPrompt, true, true)
	if err != nil {
		return err
	}
	plainToks, err := m.Tokenize(query, true, true)
	if err != nil {
		return err
	}
	nctx := len(ragToks) + plug.NRows() + 64
	lc, err := m.NewContext(llama.ContextOptions{NCtx: nctx, NBatch: row.Batch, NUBatch: row.UBatch, Threads: in.threads, ThreadsBatch: in.threads, FlashAttn: in.fa})
	if err != nil {
		return err
	}
	defer lc.Close()
	row.Ctx = lc.NCtx()
	smp, err := llama.NewSampler(llama.SamplerOptions{Temp: 0, RepeatPenalty: 1})
	if err != nil {
		return err
	}
	defer smp.Close()

	// first decodes an input and samples the first token.
	first := func(in []llama.Input) error {
		if err := lc.ClearMemory(); err != nil {
			return err
		}
		if _, err := lc.DecodeInputs(ctx, in, llama.DecodeOptions{}); err != nil {
			return err
		}
		_, err := smp.Sample(lc, -1)
		return err
	}
	ttft := []struct {
		name, note string
		n          int // prompt positions
		run        func() error
	}{
		{"persona ttft none", fmt.Sprintf("no personalisation: %d prompt tokens", len(plainToks)), len(plainToks), func() error {
			toks, err := m.Tokenize(query, true, true)
			if err != nil {
				return err
			}
			return first([]llama.Input{llama.TokenInput(toks...)})
		}},
		{"persona ttft pplug", fmt.Sprintf("PPlug: encode the query, aggregate %d items, %d rows + %d prompt tokens", user.Len(), plug.NRows(), len(plainToks)), plug.NRows() + len(plainToks), func() error {
			rows, _, err := (&persona.Runtime{Plug: plug, Encoder: enc}).QueryRows(ctx, user, qpart)
			if err != nil {
				return err
			}
			toks, err := m.Tokenize(query, true, true)
			if err != nil {
				return err
			}
			return first(persona.Inputs(m, rows, toks))
		}},
		{"persona ttft rag", fmt.Sprintf("retrieval: BM25 top-%d of %d items in the prompt, %d prompt tokens", k, len(prof.Items), len(ragToks)), len(ragToks), func() error {
			p := persona.RetrievalPrompt(prof.Items, retr.Top(qpart, k), query)
			toks, err := m.Tokenize(p, true, true)
			if err != nil {
				return err
			}
			return first([]llama.Input{llama.TokenInput(toks...)})
		}},
	}
	for _, t := range ttft {
		b.personaStart(t.name)
		ds, err := b.repeat(t.name, nil, func() (time.Duration, error) {
			t0 := time.Now()
			if err := t.run(); err != nil {
				return 0, err
			}
			return time.Since(t0), nil
		})
		if err != nil {
			return err
		}
		r := row
		// n_prompt: the positions decoded, so avg_ts is the prompt rate
		// including the personalisation's own work.
		r.Test, r.Unit, r.Note, r.NPrompt = t.name, "ms", t.note, t.n
		b.emit(r, ds, func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 })
	}

	// 2. Prompt speed with and without the persona rows (same prompt).
	rows, _, err := user.Rows(mustQuery(ctx, enc, plug, qpart))
	if err != nil {
		return err
	}
	for _, withRows := range []bool{false, true} {
		name := "persona pp plain"
		inputs := []llama.Input{llama.TokenInput(plainToks...)}
		if withRows {
			name = "persona pp +rows"
			inputs = persona.Inputs(m, rows, plainToks)
		}
		n := llama.InputsLen(inputs, m.NEmbd())
		b.personaStart(name)
		ds, err := b.repeat(name, nil, func() (time.Duration, error) {
			if err := lc.ClearMemory(); err != nil {
				return 0, err
			}
			t0 := time.Now()
			if _, err := lc.DecodeInputs(ctx, inputs, llama.DecodeOptions{}); err != nil {
				return 0, err
			}
			return time.Since(t0), nil
		})
		if err != nil {
			return err
		}
		r := row
		r.Test, r.Unit, r.NPrompt = name, "t/s", n
		r.Note = fmt.Sprintf("%d positions", n)
		b.emit(r, ds, perSecond(n))
	}

	// 3. Aggregation latency per query for several history sizes.
	q := mustQuery(ctx, enc, plug, qpart)
	for _, f := range strings.Split(c.String("agg-items"), ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return usagef("--agg-items: %q is not a positive number", f)
		}
		keys := make([][]float32, n)
		for i := range keys {
			keys[i] = vecs[i%len(vecs)]
		}
		u, err := plug.NewUser(backend, nil, keys)
		if err != nil {
			return err
		}
		const iters = 200
		name := fmt.Sprintf("persona aggregate N=%d", n)
		b.personaStart(name)
		ds, err := b.repeat(name, nil, func() (time.Duration, error) {
			t0 := time.Now()
			for range iters {
				if _, _, err := u.Rows(q); err != nil {
					return 0, err
				}
			}
			// samples_ns: one query
			return time.Since(t0) / iters, nil
		})
		u.Close()
		if err != nil {
			return err
		}
		r := row
		r.Test, r.Unit = name, "us/query"
		r.Note = fmt.Sprintf("softmax attention over %d projected items (d_enc %d, d_llm %d) on %s", n, plug.DEnc, plug.DLLM, backend.Device())
		b.emit(r, ds, func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 })
	}
	return nil
}

// personaStart counts and announces one persona test.
func (b *benchRun) personaStart(name string) {
	b.idx++
	b.starting(name)
}

// perSecond turns a duration into n per second.
func perSecond(n int) func(time.Duration) float64 {
	return func(d time.Duration) float64 {
		if d <= 0 {
			return 0
		}
		return float64(n) / d.Seconds()
	}
}

func mustQuery(ctx context.Context, enc *persona.Encoder, plug *persona.Plug, q string) []float32 {
	v, err := enc.EncodeOne(ctx, q, plug.QueryPrefix)
	if err != nil {
		// An encoder that handled the history handles the query; keep the
		// benchmark running with a zero query (uniform weights).
		return make([]float32, enc.Dim())
	}
	return v
}

func shortID(id string) string {
	if i := strings.Index(id, "|"); i > 0 {
		return id[:i]
	}
	return id
}
