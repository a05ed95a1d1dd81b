package llama

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"sync"
	"time"

	"github.com/pplug/pplug/cgo"
)

// Pos is a position in a sequence; SeqID names a sequence in a Context.
type (
	Pos   = int32
	SeqID = int32
)

// Pooling selects how a context pools per-token embeddings into one vector
// per sequence.
type Pooling int

const (
	PoolingDefault Pooling = iota // the model's own choice
	PoolingNone                   // per-token embeddings only
	PoolingMean
	PoolingCLS
	PoolingLast
)

// ParsePooling reads "default", "none", "mean", "cls" or "last".
func ParsePooling(s string) (Pooling, error) {
	switch s {
	case "", "default":
		return PoolingDefault, nil
	case "none":
		return PoolingNone, nil
	case "mean":
		return PoolingMean, nil
	case "cls":
		return PoolingCLS, nil
	case "last":
		return PoolingLast, nil
	}
	return 0, fmt.Errorf("unknown pooling %q (want default, none, mean, cls or last)", s)
}

func (p Pooling) String() string {
	return [...]string{"default", "none", "mean", "cls", "last"}[p]
}

func (p Pooling) c() cgo.PoolingType {
	switch p {
	case PoolingNone:
		return cgo.PoolingNone
	case PoolingMean:
		return cgo.PoolingMean
	case PoolingCLS:
		return cgo.PoolingCLS
	case PoolingLast:
		return cgo.PoolingLast
	}
	return cgo.PoolingUnspecified
}

// FlashAttn selects flash attention.
type FlashAttn int

const (
	FlashAttnAuto FlashAttn = iota
	FlashAttnOff
	FlashAttnOn
)

// ContextOptions configure NewContext. Zero values take the defaults noted.
type ContextOptions struct {
	NCtx         int // context window; 0: 4096, capped at the model's training context
	NBatch       int // rows per llama_decode; 0: 2048
	NUBatch      int // rows per graph evaluation; 0: 512
	NSeqMax      int // distinct sequences; 0: 1
	Threads      int // generation threads; 0: DefaultThreads()
	ThreadsBatch int // prompt threads; 0: Threads
	// Poll is how long idle CPU workers spin before they sleep, as
	// llama-bench's --poll: 1-100, 0 for ggml's default (50), -1 for none.
	// It applies to ggml's own threadpools; a build with OpenMP (the
	// Makefile's default) leaves the workers to OpenMP and ignores it, as
	// llama.cpp does.
	Poll int
	// Prio is the CPU workers' priority, as llama-bench's --prio: 0 normal,
	// -1 low, 1 medium, 2 high, 3 realtime.
	Prio       int
	Embeddings bool
	Pooling    Pooling
	// NonCausal asks for bidirectional attention (embedding models decide
	// this themselves; set it only to override a causal model).
	NonCausal bool
	FlashAttn FlashAttn
	// KVUnified shares one KV buffer across sequences (see llama.cpp).
	KVUnified bool
	// KVF32 keeps the KV cache in F32 (llama.cpp's default is F16): twice
	// the memory, for exact comparisons with other implementations.
	KVF32 bool
}

// Context is a llama_context: one window of model state (KV cache) plus the
// buffers of its last decode. See the package documentation for its
// concurrency rules.
type Context struct {
	mu     sync.Mutex
	c      *cgo.Context
	cm     *cgo.Model
	model  *Model
	nVocab int
	nEmbd  int
	nCtx   int // all sequences together
	nSeq   int // n_seq_max
	ctxSeq int // positions one sequence may use
	nBatch int
	encode bool
	kvUni  bool // encoder-only model: llama_encode instead of llama_decode

	// scratch slices reused by decodes, sized to nBatch
	pos []int32
	seq []int32
	out []int8

	// lastOut marks the output rows of the last successful decode. llama.cpp
	// aborts the process (in builds without NDEBUG) when asked for the logits
	// of a row that was not an output, so every read is checked against it.
	lastOut []int8

	// pooled: embeddings are on and llama.cpp pools them per sequence; the
	// pooling graph needs every row as an output (run marks them all).
	pooled bool
}

// NewContext creates a context on the model.
func (m *Model) NewContext(o ContextOptions) (*Context, error) {
	cm, err := m.acquire()
	if err != nil {
		return nil, err
	}
	nctx, err := m.resolveContextOptions(&o)
	if err != nil {
		m.release()
		return nil, err
	}
	encoderOnly := cm.HasEncoder() && !cm.HasDecoder()
	if encoderOnly && o.NUBatch < o.NBatch {
		// llama_encode evaluates a batch in one ubatch.
		o.NUBatch = o.NBatch
	}
	c, err := cgo.NewContext(cm, o.params(nctx))
	if err != nil {
		m.release()
		return nil, fmt.Errorf("create context (n_ctx %d, n_batch %d): %w", nctx, o.NBatch, err)
	}
	ctx := &Context{
		c:      c,
		cm:     cm,
		model:  m,
		nVocab: cm.NVocab(),
		nEmbd:  c.NEmbd(),
		nCtx:   c.NCtx(),
		nSeq:   c.NSeqMax(),
		ctxSeq: c.NCtxSeq(),
		nBatch: c.NBatch(),
		encode: encoderOnly,
		kvUni:  o.KVUnified || c.NSeqMax() == 1,
		pooled: o.Embeddings && c.PoolingType() != int(cgo.PoolingNone),
	}
	ctx.pos = make([]int32, ctx.nBatch)
	ctx.seq = make([]int32, ctx.nBatch)
	ctx.out = make([]int8, ctx.nBatch)
	runtime.SetFinalizer(ctx, func(c *Context) { _ = c.Close() })
	return ctx, nil
}

// resolveContextOptions checks o and fills in its defaults (batch sizes,
// threads); it returns the context size, the model's training context up
// to 4096 when o.NCtx is 0.
func (m *Model) resolveContextOptions(o *ContextOptions) (int, error) {
	nctx := o.NCtx
	if nctx <= 0 {
		nctx = 4096
		if t := m.info.NCtxTrain; t > 0 && t < nctx {
			nctx = t
		}
	}
	if o.Threads > maxThreads || o.ThreadsBatch > maxThreads || nctx > math.MaxUint32 {
		return 0, fmt.Errorf("create context: threads %d / %d or n_ctx %d out of range (ggml runs at most %d threads)", o.Threads, o.ThreadsBatch, nctx, maxThreads)
	}
	if o.Poll < -1 || o.Poll > 100 || o.Prio < -1 || o.Prio > 3 {
		return 0, fmt.Errorf("create context: poll %d (want -1 to 100) or prio %d (want -1 to 3) out of range", o.Poll, o.Prio)
	}
	if need, have := kvCacheBytes(m.info, nctx, o.KVF32), deviceMemory(); have > 0 && need > have {
		return 0, fmt.Errorf("create context: n_ctx %d needs about %.1f GiB of KV cache, more than the %.1f GiB of memory of every device together (lower the context size)",
			nctx, float64(need)/(1<<30), float64(have)/(1<<30))
	}
	if o.NBatch <= 0 {
		o.NBatch = 2048
	}
	o.NBatch = min(o.NBatch, nctx)
	if o.NUBatch <= 0 {
		o.NUBatch = 512
	}
	o.NUBatch = min(o.NUBatch, o.NBatch)
	if o.Threads <= 0 {
		o.Threads = DefaultThreads()
	}
	if o.ThreadsBatch <= 0 {
		o.ThreadsBatch = o.Threads
	}
	if n := runtime.NumCPU(); o.Threads > n || o.ThreadsBatch > n {
		// ggml's worker threads spin while they wait; more of them than
		// CPUs makes them wait for each other's time slices.
		slog.Warn("more llama.cpp threads than CPUs: expect a large slowdown", "threads", o.Threads, "threads_batch", o.ThreadsBatch, "cpus", n)
	}
	return nctx, nil
}

// params are the resolved options as llama.cpp's context parameters.
func (o ContextOptions) params(nctx int) cgo.ContextParams {
	att := cgo.AttentionUnspecified
	if o.NonCausal {
		att = cgo.AttentionNonCausal
	}
	fa := cgo.FlashAttnAuto
	switch o.FlashAttn {
	case FlashAttnOff:
		fa = cgo.FlashAttnDisabled
	case FlashAttnOn:
		fa = cgo.FlashAttnEnabled
	}
	return cgo.ContextParams{
		NCtx:         uint32(nctx),
		NBatch:       uint32(o.NBatch),
		NUBatch:      uint32(o.NUBatch),
		NSeqMax:      uint32(max(o.NSeqMax, 1)),
		Threads:      int32(o.Threads),
		ThreadsBatch: int32(o.ThreadsBatch),
		Embeddings:   o.Embeddings,
		Pooling:      o.Pooling.c(),
		Attention:    att,
		FlashAttn:    fa,
		OffloadKQV:   true,
		KVUnified:    o.KVUnified,
		KVF32:        o.KVF32,
		ThreadPool:   threadPoolParams(o.Poll, o.Prio),
	}
}

// Close frees the context. It is idempotent.
func (c *Context) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c == nil {
		return nil
	}
	c.c.Free()
	c.c = nil
	runtime.SetFinalizer(c, nil)
	c.model.release()
	return nil
}

// Model returns the model the context runs.
func (c *Context) Model() *Model { return c.model }

// NCtx is the context window in positions (over all sequences). llama.cpp
// rounds the requested size up to a multiple of 256.
func (c *Context) NCtx() int { return c.nCtx }

// NCtxSeq is the window of one sequence: NCtx, or NCtx/NSeqMax when the
// sequences have separate KV buffers (KVUnified off).
func (c *Context) NCtxSeq() int { return c.ctxSeq }

// NSeqMax is the number of sequences the context holds.
func (c *Context) NSeqMax() int { return c.nSeq }

// checkSeq validates a sequence id before it reaches llama.cpp, which
// aborts the process on an out-of-range id. all allows -1 (every sequence).
func (c *Context) checkSeq(seq SeqID, all bool) error {
	if seq >= 0 && int(seq) < c.nSeq || all && seq == -1 {
		return nil
	}
	return fmt.Errorf("sequence id %d is outside 0..%d (raise NSeqMax)", seq, c.nSeq-1)
}

// NBatch is the most rows one decode call takes.
func (c *Context) NBatch() int { return c.nBatch }

// NEmbd is the width of input rows.
func (c *Context) NEmbd() int { return c.nEmbd }

// NVocab is the number of logits per output.
func (c *Context) NVocab() int { return c.nVocab }

// Threads returns the generation thread count.
func (c *Context) Threads() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c == nil {
		return 0
	}
	return c.c.NThreads()
}

// SetThreads changes the generation and prompt thread counts.
func (c *Context) SetThreads(n, nBatch int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c == nil {
		return ErrClosed
	}
	if n <= 0 || nBatch <= 0 {
		return fmt.Errorf("thread counts must be positive, got %d and %d", n, nBatch)
	}
	if err := c.c.SetThreads(n, nBatch); err != nil {
		return fmt.Errorf("set threads %d / %d: %w", n, nBatch, err)
	}
	return nil
}

// SetEmbeddings turns the output of embeddings on or off.
func (c *Context) SetEmbeddings(on bool) error {
	return c.locked(func() error {
		c.c.SetEmbeddings(on)
		c.pooled = on && c.c.PoolingType() != int(cgo.PoolingNone)
		return nil
	})
}

func (c *Context) locked(f func() error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c == nil {
		return ErrClosed
	}
	return f()
}

// Batch is one llama_decode worth of rows for any mix of sequences: token
// ids or embedding rows (never both), each row with its position, sequence
// and whether it produces an output (logits / embeddings).
type Batch struct {
	Tokens []Token
	Embd   []float32 // len(Pos) rows of NEmbd
	Pos    []Pos
	Seq    []SeqID
	Output []bool
}

// Decode runs one batch of at most NBatch rows. ctx stops a long decode.
func (c *Context) Decode(ctx context.Context, b Batch) error {
	n := len(b.Pos)
	switch {
	case n == 0:
		return errors.New("decode: empty batch")
	case n > c.nBatch:
		return fmt.Errorf("decode: %d rows exceed the batch size %d", n, c.nBatch)
	case len(b.Seq) != n || len(b.Output) != n:
		return errors.New("decode: Pos, Seq and Output differ in length")
	case (b.Tokens == nil) == (b.Embd == nil):
		return errors.New("decode: set exactly one of Tokens and Embd")
	case b.Tokens != nil && len(b.Tokens) != n:
		return errors.New("decode: Tokens and Pos differ in length")
	case b.Embd != nil && len(b.Embd) != n*c.nEmbd:
		return fmt.Errorf("decode: %d floats are not %d rows of %d", len(b.Embd), n, c.nEmbd)
	}
	if b.Tokens != nil {
		if err := checkTokens(b.Tokens, c.nVocab); err != nil {
			return fmt.Errorf("decode: %w", err)
		}
	}
	for i, s := range b.Seq {
		if err := c.checkSeq(s, false); err != nil {
			return fmt.Errorf("decode row %d: %w", i, err)
		}
		if b.Pos[i] < 0 || int(b.Pos[i]) >= c.ctxSeq {
			return fmt.Errorf("decode row %d: position %d is outside the window 0..%d", i, b.Pos[i], c.ctxSeq-1)
		}
	}
	out := make([]int8, n)
	for i, o := range b.Output {
		if o {
			out[i] = 1
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c == nil {
		return ErrClosed
	}
	return c.run(ctx, &cgo.Batch{Tokens: b.Tokens, Embd: b.Embd, Pos: b.Pos, Seq: b.Seq, Output: out})
}

// abortable runs f (a call into C with c.mu held) with the context's abort
// flag raised once ctx is cancelled, and lowered again after f.
func (c *Context) abortable(ctx context.Context, f func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var stop func() bool
	var fired chan struct{}
	if ctx.Done() != nil {
		cc := c.c
		fired = make(chan struct{})
		stop = context.AfterFunc(ctx, func() { cc.SetAbort(true); close(fired) })
	}
	err := f()
	if stop != nil && !stop() {
		// The abort fired (or is firing); wait for it, then lower the flag.
		<-fired
	}
	c.c.SetAbort(false)
	return err
}

// run calls llama_decode (or llama_encode) with c.mu held, turning the abort
// flag on when ctx is cancelled meanwhile.
func (c *Context) run(ctx context.Context, b *cgo.Batch) error {
	if c.pooled {
		// A pooled row of a sequence averages (or picks from) all of its
		// rows: llama.cpp's pooling graph aborts the process when some are
		// not outputs (GGML_ASSERT in ggml_mul_mat). Mark them all, as
		// llama.cpp's own tools do.
		for i := range b.Output {
			b.Output[i] = 1
		}
	}
	var rc int
	var reason string
	if err := c.abortable(ctx, func() error {
		if c.encode {
			rc, reason = c.c.Encode(b)
		} else {
			rc, reason = c.c.Decode(b)
		}
		return nil
	}); err != nil {
		return err
	}
	c.lastOut = c.lastOut[:0]
	switch rc {
	case cgo.DecodeOK:
		c.lastOut = append(c.lastOut, b.Output...)
		return nil
	case cgo.DecodeNoSlot:
		return fmt.Errorf("decode: %w (no free KV slot in %d positions)", ErrContextFull, c.nCtx)
	case cgo.DecodeAborted:
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%w: %w", ErrAborted, err)
		}
		return ErrAborted
	case cgo.DecodeBadBatch:
		return errors.New("decode: malformed batch")
	case cgo.DecodeNoMemory:
		return errors.New("decode: out of memory for embedding rows")
	}
	if reason != "" {
		return fmt.Errorf("llama_decode failed (%d): %s", rc, reason)
	}
	return fmt.Errorf("llama_decode failed (%d)", rc)
}

// Input is one run of a sequence: token ids or embedding rows (NEmbd floats
// each), never both.
type Input struct {
	Tokens []Token
	Embd   []float32
}

// TokenInput is an Input of tokens.
func TokenInput(t ...Token) Input { return Input{Tokens: t} }

// EmbdInput is an Input of embedding rows.
func EmbdInput(rows []float32) Input { return Input{Embd: rows} }

// Len is the number of positions the input takes.
func (in Input) Len(nEmbd int) int {
	if in.Embd != nil {
		return len(in.Embd) / nEmbd
	}
	return len(in.Tokens)
}

// InputsLen is the number of positions the inputs take.
func InputsLen(in []Input, nEmbd int) int {
	n := 0
	for _, x := range in {
		n += x.Len(nEmbd)
	}
	return n
}

// SplitInputs splits inputs after their first n positions (token ids or
// embedding rows of nEmbd floats), so that a long input can be decoded a
// part at a time.
func SplitInputs(in []Input, n, nEmbd int) (head, tail []Input) {
	for i, x := range in {
		l := x.Len(nEmbd)
		if n >= l {
			head = append(head, x)
			n -= l
			continue
		}
		if n > 0 {
			if x.Tokens != nil {
				head = append(head, TokenInput(x.Tokens[:n]...))
				x = TokenInput(x.Tokens[n:]...)
			} else {
				head = append(head, EmbdInput(x.Embd[:n*nEmbd]))
				x = EmbdInput(x.Embd[n*nEmbd:])
			}
		}
		return head, append([]Input{x}, in[i+1:]...)
	}
	return head, nil
}

// OutputMode selects which rows of DecodeInputs produce outputs.
type OutputMode int

const (
	OutputLast OutputMode = iota // only the final row (what generation needs)
	OutputAll                    // every row, delivered through OnOutput
	OutputNone
)

// DecodeOptions configure DecodeInputs.
type DecodeOptions struct {
	Seq    SeqID
	Pos    Pos // position of the first row
	Output OutputMode
	// OnOutput receives each output row's logits (a view valid only during
	// the call) when Output is OutputAll; with OutputLast read Logits(-1).
	OnOutput func(pos Pos, logits []float32) error
}

// DecodeInputs decodes the inputs at consecutive positions of one sequence,
// splitting them into batches of at most NBatch rows; token runs and row runs
// go in separate batches. It returns the position after the last row.
//
// Inputs that do not fit in the context window are refused before anything
// is decoded (ErrContextFull); nothing is truncated.
func (c *Context) DecodeInputs(ctx context.Context, inputs []Input, o DecodeOptions) (Pos, error) {
	total := 0
	for i, in := range inputs {
		switch {
		case in.Tokens != nil && in.Embd != nil:
			return o.Pos, fmt.Errorf("decode input %d: set only one of Tokens and Embd", i)
		case in.Embd != nil && len(in.Embd)%c.nEmbd != 0:
			return o.Pos, fmt.Errorf("decode input %d: %d floats are not whole rows of n_embd %d", i, len(in.Embd), c.nEmbd)
		case in.Tokens != nil:
			if err := checkTokens(in.Tokens, c.nVocab); err != nil {
				return o.Pos, fmt.Errorf("decode input %d: %w", i, err)
			}
		}
		total += in.Len(c.nEmbd)
	}
	if total == 0 {
		return o.Pos, errors.New("decode: no input")
	}
	if o.Pos < 0 {
		return o.Pos, fmt.Errorf("decode: negative position %d", o.Pos)
	}
	if err := c.checkSeq(o.Seq, false); err != nil {
		return o.Pos, fmt.Errorf("decode: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c == nil {
		return o.Pos, ErrClosed
	}
	if limit := c.ctxSeq; int(o.Pos)+total > limit {
		return o.Pos, fmt.Errorf("%w: %d positions from %d need %d, the window has %d (raise -c/--ctx-size or shorten the input)",
			ErrContextFull, total, o.Pos, int(o.Pos)+total, limit)
	}

	pos := o.Pos
	done := 0
	for _, in := range inputs {
		n := in.Len(c.nEmbd)
		for start := 0; start < n; start += c.nBatch {
			k := min(c.nBatch, n-start)
			b := cgo.Batch{Pos: c.pos[:k], Seq: c.seq[:k], Output: c.out[:k]}
			for i := range k {
				b.Pos[i] = pos + Pos(i)
				b.Seq[i] = o.Seq
				b.Output[i] = 0
				if o.Output == OutputAll || (o.Output == OutputLast && done+i == total-1) {
					b.Output[i] = 1
				}
			}
			if in.Embd != nil {
				b.Embd = in.Embd[start*c.nEmbd : (start+k)*c.nEmbd]
			} else {
				b.Tokens = in.Tokens[start : start+k]
			}
			if err := c.run(ctx, &b); err != nil {
				return pos, err
			}
			if o.Output == OutputAll && o.OnOutput != nil && !c.encode {
				for i := range k {
					if err := o.OnOutput(pos+Pos(i), c.c.LogitsView(i, c.nVocab)); err != nil {
						return pos + Pos(k), err
					}
				}
			}
			pos += Pos(k)
			done += k
		}
	}
	return pos, nil
}

// checkOutput validates i the way llama_get_logits_ith reads it: i >= 0 is a
// row of the last batch that was marked as output; i < 0 counts back from
// the last output. c.mu is held.
func (c *Context) checkOutput(i int) error {
	n := 0
	for _, o := range c.lastOut {
		if o != 0 {
			n++
		}
	}
	switch {
	case n == 0:
		return errors.New("the last decode produced no outputs")
	case i < 0 && n+i < 0:
		return fmt.Errorf("output %d: the last decode produced %d outputs", i, n)
	case i >= 0 && (i >= len(c.lastOut) || c.lastOut[i] == 0):
		return fmt.Errorf("row %d of the last decode was not an output", i)
	}
	return nil
}

// Logits returns a copy of the logits of output i of the last decode (the
// batch row index; -1 is the last output).
func (c *Context) Logits(i int) ([]float32, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c == nil {
		return nil, ErrClosed
	}
	if err := c.checkOutput(i); err != nil {
		return nil, err
	}
	v := c.c.LogitsView(i, c.nVocab)
	if v == nil {
		return nil, fmt.Errorf("no logits for output %d of the last decode", i)
	}
	return append([]float32(nil), v...), nil
}

// Embeddings returns a copy of the embedding of batch row i of the last
// decode (the context needs Embeddings on; -1 is the last output).
func (c *Context) Embeddings(i int) ([]float32, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c == nil {
		return nil, ErrClosed
	}
	if err := c.checkOutput(i); err != nil {
		return nil, err
	}
	v := c.c.EmbeddingsView(i, c.cm.NEmbd())
	if v == nil {
		return nil, fmt.Errorf("no embedding for row %d (is Embeddings on and the row an output?)", i)
	}
	return append([]float32(nil), v...), nil
}

// SeqEmbeddings returns a copy of the pooled embedding of a sequence from the
// last decode (needs Embeddings and a pooling other than none).
func (c *Context) SeqEmbeddings(seq SeqID) ([]float32, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c == nil {
		return nil, ErrClosed
	}
	v := c.c.SeqEmbeddingsView(seq, c.cm.NEmbd())
	if v == nil {
		return nil, fmt.Errorf("no pooled embedding for sequence %d (is pooling on?)", seq)
	}
	return append([]float32(nil), v...), nil
}

// ---- memory (KV cache) ------------------------------------------------------------

// ClearMemory empties the KV cache of every sequence.
func (c *Context) ClearMemory() error {
	return c.locked(func() error { c.c.MemClear(true); return nil })
}

// RemoveSeq removes positions [p0, p1) of seq; seq < 0 means every sequence,
// p1 < 0 means to the end. It reports whether the removal was possible.
func (c *Context) RemoveSeq(seq SeqID, p0, p1 Pos) (bool, error) {
	if err := c.checkSeq(seq, true); err != nil {
		return false, err
	}
	ok := false
	err := c.locked(func() error { ok = c.c.SeqRm(seq, p0, p1); return nil })
	return ok, err
}

// CopySeq makes dst share positions [p0, p1) of src (p < 0: open end).
// With separate KV buffers per sequence (KVUnified off and NSeqMax > 1)
// only whole sequences can be copied.
func (c *Context) CopySeq(src, dst SeqID, p0, p1 Pos) error {
	if err := c.checkSeq(src, false); err != nil {
		return err
	}
	if err := c.checkSeq(dst, false); err != nil {
		return err
	}
	if !c.kvUni && (p0 > 0 || p1 >= 0) {
		return errors.New("copying part of a sequence needs a unified KV cache (ContextOptions.KVUnified); copy the whole sequence with p0 = p1 = -1")
	}
	return c.locked(func() error { c.c.SeqCp(src, dst, p0, p1); return nil })
}

// KeepSeq drops every sequence but seq.
func (c *Context) KeepSeq(seq SeqID) error {
	if err := c.checkSeq(seq, false); err != nil {
		return err
	}
	return c.locked(func() error { c.c.SeqKeep(seq); return nil })
}

// ShiftSeq adds delta to positions [p0, p1) of seq (RoPE models re-rotate
// their cached keys). Models whose memory cannot shift return an error.
func (c *Context) ShiftSeq(seq SeqID, p0, p1, delta Pos) error {
	if err := c.checkSeq(seq, false); err != nil {
		return err
	}
	return c.locked(func() error {
		if !c.c.CanShift() {
			return errors.New("this model's memory cannot shift positions")
		}
		c.c.SeqAdd(seq, p0, p1, delta)
		return nil
	})
}

// SeqPosRange returns the smallest and largest cached positions of seq
// (-1, -1 when it is empty).
func (c *Context) SeqPosRange(seq SeqID) (lo, hi Pos, err error) {
	if err := c.checkSeq(seq, false); err != nil {
		return -1, -1, err
	}
	err = c.locked(func() error {
		lo, hi = c.c.SeqPosMin(seq), c.c.SeqPosMax(seq)
		return nil
	})
	return lo, hi, err
}

// Perf are llama.cpp's own timing counters of a context
// (llama_perf_context): prompt positions are those decoded in batches of
// more than one, eval tokens those decoded one at a time.
type Perf struct {
	Load         time.Duration
	Prompt       time.Duration
	Eval         time.Duration
	PromptTokens int
	EvalTokens   int
}

// Perf returns llama.cpp's own timing counters.
func (c *Context) Perf() (Perf, error) {
	var p cgo.Perf
	err := c.locked(func() error { p = c.c.Perf(); return nil })
	return Perf{
		Load: msDuration(p.LoadMs), Prompt: msDuration(p.PromptMs), Eval: msDuration(p.EvalMs),
		PromptTokens: p.PromptTokens, EvalTokens: p.EvalTokens,
	}, err
}

func msDuration(ms float64) time.Duration { return time.Duration(ms * float64(time.Millisecond)) }

// BenchCLoop runs the plain C generation loop of the shim over this context
// (greedy, n tokens after the prompt) and returns its prompt and generation
// durations in microseconds. It exists for benchmarks that measure the
// binding's overhead. A cancelled ctx stops it between tokens (and inside
// a decode) with ErrAborted.
func (c *Context) BenchCLoop(ctx context.Context, prompt []Token, n int) (promptUs, genUs int64, err error) {
	err = c.locked(func() error {
		if err := checkTokens(prompt, c.nVocab); err != nil {
			return err
		}
		if len(prompt)+n > c.nCtx {
			return fmt.Errorf("%w: %d + %d tokens", ErrContextFull, len(prompt), n)
		}
		return c.abortable(ctx, func() error {
			var rc int
			var reason string
			promptUs, genUs, rc, reason = c.c.BenchCLoop(prompt, n)
			switch {
			case rc == cgo.DecodeAborted && ctx.Err() != nil:
				return fmt.Errorf("the plain C loop: %w: %w", ErrAborted, ctx.Err())
			case rc == cgo.DecodeAborted:
				return fmt.Errorf("the plain C loop: %w", ErrAborted)
			case reason != "":
				return fmt.Errorf("the plain C loop: %s", reason)
			case rc != 0:
				return fmt.Errorf("the plain C loop: llama_decode returned %d", rc)
			}
			return nil
		})
	})
	return promptUs, genUs, err
}

// threadPoolParams maps ContextOptions' Poll and Prio to ggml's settings.
func threadPoolParams(poll, prio int) cgo.ThreadPoolParams {
	switch {
	case poll == 0:
		poll = -1 // ggml's default
	case poll < 0:
		poll = 0 // no spinning
	}
	return cgo.ThreadPoolParams{Poll: poll, Prio: prio}
}

// maxThreads is ggml's GGML_MAX_N_THREADS.
const maxThreads = 512

// kvCacheBytes estimates the KV cache of nctx positions: K and V rows of
// n_embd / n_head * n_head_kv values per layer, F16 unless f32. A refusal
// rests on it only when it exceeds all memory, so an estimate will do.
func kvCacheBytes(info ModelInfo, nctx int, f32 bool) uint64 {
	if info.NHead <= 0 || info.NLayer <= 0 {
		return 0
	}
	per := uint64(2)
	if f32 {
		per = 4
	}
	row := uint64(info.NEmbd / info.NHead * max(info.NHeadKV, 1))
	return uint64(nctx) * uint64(info.NLayer) * 2 * row * per
}

// deviceMemory is the memory of all devices together (0 when unknown).
func deviceMemory() uint64 {
	var total uint64
	for _, d := range Devices() {
		total += d.MemTotal
	}
	return total
}
