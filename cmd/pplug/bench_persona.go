package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/pplug/pplug/kernels"
	"github.com/pplug/pplug/llama"
	"github.com/pplug/pplug/persona"
	"github.com/pplug/pplug/persona/profile"
)

// defaultBenchQuery is the request of the time-to-first-token tests when the
// profile carries no LaMP input.
const defaultBenchQuery = "Write a short story for me about a day in the park, in my own style."

// personaTests measures what PPlug adds and saves: history encoding, the
// per-query aggregation, the prompt with persona rows, and the time to the
// first token of PPlug against the retrieval baseline (top-k BM25 items in
// the prompt) and no personalisation, for the same profile and query. Each
// method runs through its persona.Personalizer, as generate runs it.
func (b *benchRun) personaTests(ctx context.Context, m *llama.Model, row benchRow, in benchInst) error {
	pb, err := b.newPersonaBench(ctx, m, row, in)
	if err != nil {
		return err
	}
	defer pb.close()
	for _, step := range []func(context.Context) error{pb.encode, pb.prepareCached, pb.timeToFirstToken, pb.promptSpeed, pb.aggregation} {
		if err := step(ctx); err != nil {
			return err
		}
	}
	return nil
}

// personaBench is what the persona tests share.
type personaBench struct {
	b       *benchRun
	row     benchRow
	m       *llama.Model
	prof    *profile.Profile
	query   string
	pplug   *persona.Personalizer
	rag     *persona.Personalizer
	vecs    [][]float32      // the history's embeddings (encode)
	user    *persona.Persona // the PPlug persona (encode)
	lc      *llama.Context
	smp     *llama.Sampler
	closers []func() error
}

func (pb *personaBench) close() {
	for i := len(pb.closers) - 1; i >= 0; i-- {
		pb.closers[i]()
	}
}

// newPersonaBench loads the profile, opens the encoder, the plug (--plug,
// or a new one for the model as pplug plug init makes it) and the kernels
// backend, and makes a context that holds the longest prompt.
func (b *benchRun) newPersonaBench(ctx context.Context, m *llama.Model, row benchRow, in benchInst) (_ *personaBench, err error) {
	c := b.c
	pb := &personaBench{b: b, row: row, m: m}
	defer func() {
		if err != nil {
			pb.close()
		}
	}()
	prof, task, err := loadProfile(c)
	if err != nil {
		return nil, err
	}
	if len(prof.Items) == 0 {
		return nil, errNoItems
	}
	pb.prof = prof
	enc, err := openEncoder(ctx, c, m, in.threads)
	if err != nil {
		return nil, err
	}
	pb.closers = append(pb.closers, enc.Close)
	var plug *persona.Plug
	if p := c.String("plug"); p != "" {
		if plug, err = persona.ReadPlug(p); err != nil {
			return nil, err
		}
	} else if plug, err = persona.NewPlugFor(m, enc, persona.PlugOptions{DefaultPrefix: true}); err != nil {
		return nil, err
	}
	backend, err := kernels.Open(c.String("device"), kernels.Options{Threads: in.threads, Logger: slog.Default()})
	if err != nil {
		return nil, err
	}
	pb.closers = append(pb.closers, backend.Close)
	pb.pplug = &persona.Personalizer{Method: persona.MethodPPlug, LLM: m, Plug: plug, Encoder: enc, Backend: backend}
	pb.rag = &persona.Personalizer{Method: persona.MethodBM25, LLM: m, K: c.Int("retrieve-k")}
	if task.Valid() {
		pb.pplug.Query, pb.rag.Query = task.QueryPart, task.QueryPart
	}
	if err := pb.pplug.Check(); err != nil {
		return nil, err
	}
	pb.query = c.String("query")
	if pb.query == "" {
		pb.query = prof.Query
	}
	if pb.query == "" {
		pb.query = defaultBenchQuery
	}
	// The longest input: the retrieval prompt.
	ragUser, _, err := pb.rag.Prepare(ctx, prof.Items, nil)
	if err != nil {
		return nil, err
	}
	rag, err := (&persona.Builder{LLM: m}).Build(ctx, ragUser, persona.Conversation{Prompt: pb.query})
	if err != nil {
		return nil, err
	}
	nctx := len(rag.Tokens) + plug.NRows() + 64
	pb.lc, err = m.NewContext(llama.ContextOptions{NCtx: nctx, NBatch: row.Batch, NUBatch: row.UBatch, Threads: in.threads, ThreadsBatch: in.threads, FlashAttn: in.fa})
	if err != nil {
		return nil, err
	}
	pb.closers = append(pb.closers, pb.lc.Close)
	pb.row.Ctx = pb.lc.NCtx()
	if pb.smp, err = llama.NewSampler(llama.SamplerOptions{Temp: 0, RepeatPenalty: 1}); err != nil {
		return nil, err
	}
	pb.closers = append(pb.closers, pb.smp.Close)
	return pb, nil
}

// encode times the batched encoding of the history (persona encode) and
// prepares the PPlug persona from it.
func (pb *personaBench) encode(ctx context.Context) error {
	b, enc := pb.b, pb.pplug.Encoder
	texts := pb.prof.Texts()
	b.personaStart("persona encode")
	ds, err := b.repeat(ctx, "persona encode", nil, func() (time.Duration, error) {
		t0 := time.Now()
		v, err := enc.Encode(ctx, texts, "", nil)
		if err != nil {
			return 0, err
		}
		pb.vecs = v
		return time.Since(t0), nil
	})
	if err != nil {
		return err
	}
	r := pb.row
	r.Test, r.Unit = "persona encode", "items/s"
	r.Note = fmt.Sprintf("%d history items, batched, encoder %s (%s pooling)", len(texts), shortID(enc.ID()), enc.PoolingName())
	b.emit(r, ds, perSecond(len(texts)))
	if pb.user, err = pb.pplug.PrepareEncoded(pb.prof.Items, pb.vecs); err != nil {
		return err
	}
	pb.closers = append(pb.closers, pb.user.Close)
	return nil
}

// prepareCached times, with --cache-dir, preparing the PPlug persona from
// the embedding cache there (filled first, untimed): what generate and
// chat pay for a profile they have seen.
func (pb *personaBench) prepareCached(ctx context.Context) error {
	dir := pb.b.c.String("cache-dir")
	if dir == "" {
		return nil
	}
	pz := *pb.pplug
	pz.Cache = &persona.Cache{Dir: dir}
	prepare := func() (persona.EncodeStats, error) {
		u, st, err := pz.Prepare(ctx, pb.prof.Items, nil)
		if err == nil {
			u.Close()
		}
		return st, err
	}
	if _, err := prepare(); err != nil {
		return fmt.Errorf("persona prepare cached: %w", err)
	}
	const name = "persona prepare cached"
	pb.b.personaStart(name)
	var cached int
	ds, err := pb.b.repeat(ctx, name, nil, func() (time.Duration, error) {
		t0 := time.Now()
		st, err := prepare()
		cached = st.Cached
		return time.Since(t0), err
	})
	if err != nil {
		return err
	}
	r := pb.row
	r.Test, r.Unit = name, "items/s"
	r.Note = fmt.Sprintf("%d history items, %d from the embedding cache in %s", len(pb.prof.Items), cached, dir)
	pb.b.emit(r, ds, perSecond(len(pb.prof.Items)))
	return nil
}

// first decodes an input and samples the first token.
func (pb *personaBench) first(ctx context.Context, in []llama.Input) error {
	if err := pb.lc.ClearMemory(); err != nil {
		return err
	}
	if _, err := pb.lc.DecodeInputs(ctx, in, llama.DecodeOptions{}); err != nil {
		return err
	}
	_, err := pb.smp.Sample(pb.lc, -1)
	return err
}

// timeToFirstToken times a request from its text to its first token with
// no personalisation, PPlug (query encoding and aggregation included) and
// retrieval (BM25 ranking and the longer prompt included).
func (pb *personaBench) timeToFirstToken(ctx context.Context) error {
	b := pb.b
	ragUser, _, err := pb.rag.Prepare(ctx, pb.prof.Items, nil)
	if err != nil {
		return err
	}
	tests := []struct {
		name string
		user *persona.Persona // nil: no personalisation
	}{{"persona ttft none", nil}, {"persona ttft pplug", pb.user}, {"persona ttft rag", ragUser}}
	for _, t := range tests {
		// The request once, for the note and n_prompt: the positions
		// decoded, so avg_ts is the prompt rate including the
		// personalisation's own work.
		turn, err := pb.turn(ctx, t.user)
		if err != nil {
			return err
		}
		n := turn.Positions()
		var note string
		switch t.user {
		case nil:
			note = fmt.Sprintf("no personalisation: %d prompt tokens", n)
		case pb.user:
			note = fmt.Sprintf("PPlug: encode the query, aggregate %d items, %d rows + %d prompt tokens", pb.user.Len(), pb.user.NRows(), n-pb.user.NRows())
		default:
			note = fmt.Sprintf("retrieval: BM25 top-%d of %d items in the prompt, %d prompt tokens", pb.rag.RetrieveK(), len(pb.prof.Items), n)
		}
		b.personaStart(t.name)
		ds, err := b.repeat(ctx, t.name, nil, func() (time.Duration, error) {
			t0 := time.Now()
			turn, err := pb.turn(ctx, t.user)
			if err != nil {
				return 0, err
			}
			if err := pb.first(ctx, turn.Inputs()); err != nil {
				return 0, err
			}
			return time.Since(t0), nil
		})
		if err != nil {
			return err
		}
		r := pb.row
		r.Test, r.Unit, r.Note, r.NPrompt = t.name, "ms", note, n
		b.emit(r, ds, func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 })
	}
	return nil
}

// turn is the bench query's turn for user (nil: none), as generate builds
// it.
func (pb *personaBench) turn(ctx context.Context, user *persona.Persona) (*persona.Turn, error) {
	return (&persona.Builder{LLM: pb.m}).Build(ctx, user, persona.Conversation{Prompt: pb.query})
}

// promptSpeed times prompt processing of the same prompt with and without
// the persona rows.
func (pb *personaBench) promptSpeed(ctx context.Context) error {
	b := pb.b
	withRows, err := pb.turn(ctx, pb.user)
	if err != nil {
		return err
	}
	for _, t := range []*persona.Turn{withRows.WithRows(nil, 0), withRows} {
		name := "persona pp plain"
		if len(t.Rows) > 0 {
			name = "persona pp +rows"
		}
		inputs, n := t.Inputs(), t.Positions()
		b.personaStart(name)
		ds, err := b.repeat(ctx, name, nil, func() (time.Duration, error) {
			if err := pb.lc.ClearMemory(); err != nil {
				return 0, err
			}
			t0 := time.Now()
			if _, err := pb.lc.DecodeInputs(ctx, inputs, llama.DecodeOptions{}); err != nil {
				return 0, err
			}
			return time.Since(t0), nil
		})
		if err != nil {
			return err
		}
		r := pb.row
		r.Test, r.Unit, r.NPrompt = name, "t/s", n
		r.Note = fmt.Sprintf("%d positions", n)
		b.emit(r, ds, perSecond(n))
	}
	return nil
}

// aggregation times the per-query attention over --agg-items history sizes.
func (pb *personaBench) aggregation(ctx context.Context) error {
	b, plug := pb.b, pb.pplug.Plug
	q, err := pb.pplug.EncodeQuery(ctx, pb.query)
	if err != nil {
		return err
	}
	for _, n := range b.aggItems {
		keys := make([][]float32, n)
		for i := range keys {
			keys[i] = pb.vecs[i%len(pb.vecs)]
		}
		u, err := plug.NewUser(pb.pplug.Backend, nil, keys)
		if err != nil {
			return err
		}
		const iters = 200
		name := fmt.Sprintf("persona aggregate N=%d", n)
		b.personaStart(name)
		ds, err := b.repeat(ctx, name, nil, func() (time.Duration, error) {
			t0 := time.Now()
			for range iters {
				if err := ctx.Err(); err != nil {
					return 0, err
				}
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
		r := pb.row
		r.Test, r.Unit = name, "us/query"
		r.Note = fmt.Sprintf("softmax attention over %d projected items (d_enc %d, d_llm %d) on %s", n, plug.DEnc, plug.DLLM, pb.pplug.Backend.Device())
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

func shortID(id string) string {
	if i := strings.Index(id, "|"); i > 0 {
		return id[:i]
	}
	return id
}
