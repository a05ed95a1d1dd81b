package cgo

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"errors"
	"runtime"
	"strings"
	"unsafe"
)

// PoolingType is enum llama_pooling_type.
type PoolingType int

// Pooling types.
const (
	PoolingUnspecified PoolingType = C.LLAMA_POOLING_TYPE_UNSPECIFIED
	PoolingNone        PoolingType = C.LLAMA_POOLING_TYPE_NONE
	PoolingMean        PoolingType = C.LLAMA_POOLING_TYPE_MEAN
	PoolingCLS         PoolingType = C.LLAMA_POOLING_TYPE_CLS
	PoolingLast        PoolingType = C.LLAMA_POOLING_TYPE_LAST
	PoolingRank        PoolingType = C.LLAMA_POOLING_TYPE_RANK
)

func (t PoolingType) String() string {
	if t == PoolingUnspecified {
		return "unspecified"
	}
	return enumName(int(t), "PoolingType", []string{PoolingNone: "none", PoolingMean: "mean", PoolingCLS: "cls", PoolingLast: "last", PoolingRank: "rank"})
}

// AttentionType is enum llama_attention_type.
type AttentionType int

// Attention types.
const (
	AttentionUnspecified AttentionType = C.LLAMA_ATTENTION_TYPE_UNSPECIFIED
	AttentionCausal      AttentionType = C.LLAMA_ATTENTION_TYPE_CAUSAL
	AttentionNonCausal   AttentionType = C.LLAMA_ATTENTION_TYPE_NON_CAUSAL
)

func (t AttentionType) String() string {
	if t == AttentionUnspecified {
		return "unspecified"
	}
	return enumName(int(t), "AttentionType", []string{AttentionCausal: "causal", AttentionNonCausal: "non-causal"})
}

// FlashAttnType is enum llama_flash_attn_type.
type FlashAttnType int

// Flash attention modes.
const (
	FlashAttnAuto     FlashAttnType = C.LLAMA_FLASH_ATTN_TYPE_AUTO
	FlashAttnDisabled FlashAttnType = C.LLAMA_FLASH_ATTN_TYPE_DISABLED
	FlashAttnEnabled  FlashAttnType = C.LLAMA_FLASH_ATTN_TYPE_ENABLED
)

func (t FlashAttnType) String() string {
	if t == FlashAttnAuto {
		return "auto"
	}
	return enumName(int(t), "FlashAttnType", []string{FlashAttnDisabled: "off", FlashAttnEnabled: "on"})
}

// ContextParams are the llama_context_params that pplug sets. Zero sizes keep
// llama.cpp's defaults; Pooling, Attention and FlashAttn are always applied
// (use the *Unspecified / FlashAttnAuto values for llama.cpp's choice).
type ContextParams struct {
	NCtx         uint32 // 0: the model's training context
	NBatch       uint32 // 0: llama.cpp default
	NUBatch      uint32 // 0: llama.cpp default
	NSeqMax      uint32 // 0: 1
	Threads      int32  // 0: llama.cpp default
	ThreadsBatch int32  // 0: same as Threads
	Embeddings   bool
	Pooling      PoolingType
	Attention    AttentionType
	FlashAttn    FlashAttnType
	OffloadKQV   bool
	KVUnified    bool
	NoPerf       bool
	KVF32        bool // keep the KV cache in F32 instead of F16
	ThreadPool   ThreadPoolParams
}

// Context is a llama_context with its reusable batch and abort flag.
type Context struct {
	c        *C.struct_llama_context
	batch    *C.pp_batch
	abort    *C.pp_abort
	nEmbd    int
	tpParams ThreadPoolParams
	pools    threadPools
}

// NewContext calls llama_init_from_model.
func NewContext(m *Model, p ContextParams) (*Context, error) {
	cp := C.llama_context_default_params()
	if p.NCtx > 0 {
		cp.n_ctx = C.uint32_t(p.NCtx)
	}
	if p.NBatch > 0 {
		cp.n_batch = C.uint32_t(p.NBatch)
	}
	if p.NUBatch > 0 {
		cp.n_ubatch = C.uint32_t(p.NUBatch)
	}
	if p.NSeqMax > 0 {
		cp.n_seq_max = C.uint32_t(p.NSeqMax)
	}
	if p.Threads > 0 {
		cp.n_threads = C.int32_t(p.Threads)
		cp.n_threads_batch = C.int32_t(p.Threads)
	}
	if p.ThreadsBatch > 0 {
		cp.n_threads_batch = C.int32_t(p.ThreadsBatch)
	}
	cp.embeddings = C.bool(p.Embeddings)
	cp.pooling_type = C.enum_llama_pooling_type(p.Pooling)
	cp.attention_type = C.enum_llama_attention_type(p.Attention)
	cp.flash_attn_type = C.enum_llama_flash_attn_type(p.FlashAttn)
	cp.offload_kqv = C.bool(p.OffloadKQV)
	cp.kv_unified = C.bool(p.KVUnified)
	cp.no_perf = C.bool(p.NoPerf)
	if p.KVF32 {
		cp.type_k, cp.type_v = C.GGML_TYPE_F32, C.GGML_TYPE_F32
	}

	var c *C.struct_llama_context
	var e C.pp_error
	held := LockDevices()
	reason := captureReason(func() { c = C.pp_guard_init_from_model(m.c, cp, &e) })
	UnlockDevices(held)
	if err := caught(&e, "llama_init_from_model"); err != nil {
		return nil, err
	}
	if c == nil {
		if reason != "" {
			return nil, errors.New(reason)
		}
		return nil, errors.New("llama_init_from_model failed")
	}
	ctx := &Context{c: c, nEmbd: m.NEmbdInp(), tpParams: p.ThreadPool}
	ctx.batch = C.pp_batch_new(C.int32_t(C.llama_n_batch(c)), C.int32_t(ctx.nEmbd))
	ctx.abort = C.pp_abort_new()
	if ctx.batch == nil || ctx.abort == nil {
		ctx.Free()
		return nil, errors.New("out of memory allocating the batch")
	}
	if err := ctx.attachThreadPools(int(C.llama_n_threads(c)), int(C.llama_n_threads_batch(c))); err != nil {
		ctx.Free()
		return nil, err
	}
	C.pp_abort_attach(c, ctx.abort)
	return ctx, nil
}

// Free releases the context, its batch and its abort flag.
func (c *Context) Free() {
	defer UnlockDevices(LockDevices())
	if c.c != nil {
		C.llama_free(c.c)
		c.c = nil
	}
	c.pools.free() // after the context that computes with them
	if c.batch != nil {
		C.pp_batch_free(c.batch)
		c.batch = nil
	}
	if c.abort != nil {
		C.pp_abort_free(c.abort)
		c.abort = nil
	}
}

func (c *Context) NCtx() int        { return int(C.llama_n_ctx(c.c)) }
func (c *Context) NCtxSeq() int     { return int(C.llama_n_ctx_seq(c.c)) }
func (c *Context) NBatch() int      { return int(C.llama_n_batch(c.c)) }
func (c *Context) NUBatch() int     { return int(C.llama_n_ubatch(c.c)) }
func (c *Context) NSeqMax() int     { return int(C.llama_n_seq_max(c.c)) }
func (c *Context) NThreads() int    { return int(C.llama_n_threads(c.c)) }
func (c *Context) PoolingType() int { return int(C.llama_pooling_type(c.c)) }
func (c *Context) NEmbd() int       { return c.nEmbd }

// SetThreads changes the generation and batch thread counts (and the
// context's threadpools with them).
func (c *Context) SetThreads(n, nBatch int) error {
	if n == c.NThreads() && nBatch == int(C.llama_n_threads_batch(c.c)) {
		return nil
	}
	if err := c.attachThreadPools(n, nBatch); err != nil {
		return err
	}
	C.llama_set_n_threads(c.c, C.int32_t(n), C.int32_t(nBatch))
	return nil
}

// SetEmbeddings switches embedding output on or off.
func (c *Context) SetEmbeddings(on bool) { C.llama_set_embeddings(c.c, C.bool(on)) }

// SetCausalAttn switches causal attention on or off.
func (c *Context) SetCausalAttn(on bool) { C.llama_set_causal_attn(c.c, C.bool(on)) }

// SetAbort raises or lowers the flag that makes a running decode return 2.
// It may be called from any goroutine.
func (c *Context) SetAbort(on bool) {
	v := 0
	if on {
		v = 1
	}
	C.pp_abort_set(c.abort, C.int(v))
}

// Batch describes rows for one llama_decode call. Exactly one of Tokens and
// Embd is set; Embd holds len(Pos) rows of NEmbd floats.
type Batch struct {
	Tokens []int32
	Embd   []float32
	Pos    []int32
	Seq    []int32
	Output []int8
}

// Decode codes returned by llama_decode and the shim.
const (
	DecodeOK        = 0
	DecodeNoSlot    = 1 // no KV slot for the batch: the context is full
	DecodeAborted   = 2
	DecodeBadBatch  = -100
	DecodeNoMemory  = -101
	DecodeException = C.PP_RC_EXCEPTION // a C++ exception, caught (the reason is its message)
)

// Decode fills the context's batch and calls llama_decode; it returns
// llama_decode's code (see the Decode* constants) and, for a failure, the
// reason llama.cpp logged for this call.
func (c *Context) Decode(b *Batch) (int, string) {
	return c.run(b, false)
}

// Encode is Decode for llama_encode.
func (c *Context) Encode(b *Batch) (int, string) {
	return c.run(b, true)
}

func (c *Context) run(b *Batch, encode bool) (int, string) {
	defer UnlockDevices(LockDevices())
	n := len(b.Pos)
	if n == 0 || len(b.Seq) != n || len(b.Output) != n {
		return DecodeBadBatch, ""
	}
	var tok *C.llama_token
	var embd *C.float
	switch {
	case b.Tokens != nil && b.Embd == nil && len(b.Tokens) == n:
		tok = (*C.llama_token)(unsafe.Pointer(&b.Tokens[0]))
	case b.Embd != nil && b.Tokens == nil && len(b.Embd) == n*c.nEmbd:
		embd = (*C.float)(unsafe.Pointer(&b.Embd[0]))
	default:
		return DecodeBadBatch, ""
	}
	pos := (*C.llama_pos)(unsafe.Pointer(&b.Pos[0]))
	seq := (*C.llama_seq_id)(unsafe.Pointer(&b.Seq[0]))
	out := (*C.int8_t)(unsafe.Pointer(&b.Output[0]))
	// The reason of a failure is what llama.cpp logs at error level on the
	// thread of the call (the compute thread's, see computethread.go); it
	// is read only for failures without a code of their own.
	t := &C.pp_decode_task{ctx: c.c, pb: c.batch, tok: tok, embd: embd, pos: pos, seq: seq, out: out,
		n: C.int32_t(n), encode: C.bool(encode)}
	var pin runtime.Pinner
	pinAll(&pin, b.Tokens)
	pinAll(&pin, b.Embd)
	pinAll(&pin, b.Pos)
	pinAll(&pin, b.Seq)
	pinAll(&pin, b.Output)
	pin.Pin(t)
	threads := c.pools.nBatch
	if n == 1 {
		threads = c.pools.n
	}
	RunTask(C.pp_decode_task_run, unsafe.Pointer(t), threads)
	pin.Unpin()
	rc := int(t.rc)
	switch rc {
	case DecodeOK, DecodeNoSlot, DecodeAborted:
		return rc, ""
	case DecodeException:
		return rc, caught(&t.e, "llama_decode").Error()
	}
	return rc, LoadReason(strings.Split(C.GoStringN(&t.reason[0], C.int(t.n_reason)), "\n"))
}

// LogitsView returns the logits of output i of the last decode (i < 0 counts
// from the end) as a view into llama.cpp's buffer, valid until the next
// decode. nil when i has no logits.
func (c *Context) LogitsView(i int, nVocab int) []float32 {
	defer UnlockDevices(LockDevices())
	p := C.llama_get_logits_ith(c.c, C.int32_t(i))
	if p == nil {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(p)), nVocab)
}

// EmbeddingsView returns the output embedding of batch row i (i < 0 counts
// from the end), a view valid until the next decode; nil when absent.
func (c *Context) EmbeddingsView(i int, n int) []float32 {
	defer UnlockDevices(LockDevices())
	p := C.llama_get_embeddings_ith(c.c, C.int32_t(i))
	if p == nil {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(p)), n)
}

// SeqEmbeddingsView returns the pooled embedding of a sequence, a view valid
// until the next decode; nil when absent (no pooling).
func (c *Context) SeqEmbeddingsView(seq int32, n int) []float32 {
	defer UnlockDevices(LockDevices())
	p := C.llama_get_embeddings_seq(c.c, C.llama_seq_id(seq))
	if p == nil {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(p)), n)
}

// Synchronize waits for pending backend work.
func (c *Context) Synchronize() {
	defer UnlockDevices(LockDevices())
	C.llama_synchronize(c.c)
}

// ---- memory (KV cache) -------------------------------------------------------

func (c *Context) mem() C.llama_memory_t { return C.llama_get_memory(c.c) }

// MemClear empties the memory; data also zeroes the buffers.
func (c *Context) MemClear(data bool) {
	defer UnlockDevices(LockDevices())
	C.llama_memory_clear(c.mem(), C.bool(data))
}

// SeqRm removes positions [p0, p1) of seq (seq < 0: all; p < 0: open end).
func (c *Context) SeqRm(seq, p0, p1 int32) bool {
	defer UnlockDevices(LockDevices())
	return bool(C.llama_memory_seq_rm(c.mem(), C.llama_seq_id(seq), C.llama_pos(p0), C.llama_pos(p1)))
}

// SeqCp copies positions [p0, p1) of src to dst.
func (c *Context) SeqCp(src, dst, p0, p1 int32) {
	defer UnlockDevices(LockDevices())
	C.llama_memory_seq_cp(c.mem(), C.llama_seq_id(src), C.llama_seq_id(dst), C.llama_pos(p0), C.llama_pos(p1))
}

// SeqKeep removes every sequence but seq.
func (c *Context) SeqKeep(seq int32) {
	defer UnlockDevices(LockDevices())
	C.llama_memory_seq_keep(c.mem(), C.llama_seq_id(seq))
}

// SeqAdd shifts positions [p0, p1) of seq by delta.
func (c *Context) SeqAdd(seq, p0, p1, delta int32) {
	defer UnlockDevices(LockDevices())
	C.llama_memory_seq_add(c.mem(), C.llama_seq_id(seq), C.llama_pos(p0), C.llama_pos(p1), C.llama_pos(delta))
}

// SeqPosMin and SeqPosMax are the smallest and largest positions of seq (-1 if empty).
func (c *Context) SeqPosMin(seq int32) int32 {
	return int32(C.llama_memory_seq_pos_min(c.mem(), C.llama_seq_id(seq)))
}

func (c *Context) SeqPosMax(seq int32) int32 {
	return int32(C.llama_memory_seq_pos_max(c.mem(), C.llama_seq_id(seq)))
}

// CanShift reports whether positions can be shifted (SeqAdd).
func (c *Context) CanShift() bool { return bool(C.llama_memory_can_shift(c.mem())) }

// ---- performance --------------------------------------------------------------

// Perf is llama_perf_context_data.
type Perf struct {
	LoadMs, PromptMs, EvalMs float64
	PromptTokens, EvalTokens int
}

func (c *Context) Perf() Perf {
	d := C.llama_perf_context(c.c)
	return Perf{
		LoadMs: float64(d.t_load_ms), PromptMs: float64(d.t_p_eval_ms), EvalMs: float64(d.t_eval_ms),
		PromptTokens: int(d.n_p_eval), EvalTokens: int(d.n_eval),
	}
}

func (c *Context) PerfReset() { C.llama_perf_context_reset(c.c) }

// BenchCLoop runs the plain C generation loop (see shim.h) and returns the
// prompt and generation times in microseconds. The loop stops with
// DecodeAborted once SetAbort raises the context's abort flag; a caught
// C++ exception is DecodeException.
func (c *Context) BenchCLoop(prompt []int32, nGen int) (promptUs, genUs int64, rc int, reason string) {
	defer UnlockDevices(LockDevices())
	if len(prompt) == 0 {
		return 0, 0, DecodeBadBatch, ""
	}
	t := &C.pp_bench_task{ctx: c.c, abort: c.abort, prompt: (*C.llama_token)(unsafe.Pointer(&prompt[0])),
		n_prompt: C.int32_t(len(prompt)), n_gen: C.int32_t(nGen)}
	var pin runtime.Pinner
	pinAll(&pin, prompt)
	pin.Pin(t)
	RunTask(C.pp_bench_task_run, unsafe.Pointer(t), max(c.pools.n, c.pools.nBatch))
	pin.Unpin()
	tp, tg, r, e := t.t_prompt_us, t.t_gen_us, t.rc, &t.e
	if err := caught(e, "the C loop"); err != nil {
		reason = err.Error()
	}
	return int64(tp), int64(tg), int(r), reason
}

// ---- sampling ------------------------------------------------------------------

// Sampler is a llama_sampler chain.
type Sampler struct {
	c       *C.struct_llama_sampler
	grammar *C.struct_llama_sampler // the chain's grammar sampler (owned by the chain), or nil
}

// NewSamplerChain returns an empty chain.
func NewSamplerChain() *Sampler {
	p := C.llama_sampler_chain_default_params()
	p.no_perf = true
	return &Sampler{c: C.llama_sampler_chain_init(p)}
}

func (s *Sampler) add(x *C.struct_llama_sampler) { C.llama_sampler_chain_add(s.c, x) }

func (s *Sampler) AddGreedy()           { s.add(C.llama_sampler_init_greedy()) }
func (s *Sampler) AddDist(seed uint32)  { s.add(C.llama_sampler_init_dist(C.uint32_t(seed))) }
func (s *Sampler) AddTopK(k int32)      { s.add(C.llama_sampler_init_top_k(C.int32_t(k))) }
func (s *Sampler) AddTopP(p float32)    { s.add(C.llama_sampler_init_top_p(C.float(p), 1)) }
func (s *Sampler) AddMinP(p float32)    { s.add(C.llama_sampler_init_min_p(C.float(p), 1)) }
func (s *Sampler) AddTypical(p float32) { s.add(C.llama_sampler_init_typical(C.float(p), 1)) }
func (s *Sampler) AddTemp(t float32)    { s.add(C.llama_sampler_init_temp(C.float(t))) }

// AddLogitBias adds biases to the logits of the given tokens.
func (s *Sampler) AddLogitBias(tokens []int32, biases []float32) {
	if len(tokens) == 0 || len(tokens) != len(biases) {
		return
	}
	lb := make([]C.llama_logit_bias, len(tokens))
	for i := range tokens {
		lb[i].token = C.llama_token(tokens[i])
		lb[i].bias = C.float(biases[i])
	}
	// The sampler copies the array; n_vocab is only kept for clones.
	s.add(C.llama_sampler_init_logit_bias(0, C.int32_t(len(lb)), &lb[0]))
}

// AddPenalties adds repetition, frequency and presence penalties over the
// last lastN tokens.
func (s *Sampler) AddPenalties(lastN int32, repeat, freq, present float32) {
	s.add(C.llama_sampler_init_penalties(C.int32_t(lastN), C.float(repeat), C.float(freq), C.float(present)))
}

// Sample samples from output idx of the last decode and accepts the token.
// A grammar that allows no token here gives ErrGrammarDeadEnd; after an
// exception the chain is reset.
func (s *Sampler) Sample(c *Context, idx int) (int32, error) {
	defer UnlockDevices(LockDevices())
	var e C.pp_error
	var tok C.llama_token
	rc := C.pp_guard_sample(s.c, c.c, C.int32_t(idx), &tok, &e)
	if err := sampleError(rc, &e, "llama_sampler_sample"); err != nil {
		return 0, err
	}
	return int32(tok), nil
}

// Accept tells the chain a token was chosen (for penalties) without
// sampling. A token the chain's grammar forbids is refused with
// ErrGrammarDeadEnd.
func (s *Sampler) Accept(t int32) error {
	var e C.pp_error
	rc := C.pp_guard_accept(s.c, s.grammar, C.llama_token(t), &e)
	return sampleError(rc, &e, "llama_sampler_accept")
}

// Reset clears the chain's state (penalty history, RNG stays seeded).
func (s *Sampler) Reset() error {
	var e C.pp_error
	C.pp_guard_reset(s.c, &e)
	return caught(&e, "llama_sampler_reset")
}

// Seed returns the seed the chain's dist sampler uses.
func (s *Sampler) Seed() uint32 { return uint32(C.llama_sampler_get_seed(s.c)) }

// Free releases the chain and every sampler in it.
func (s *Sampler) Free() {
	if s.c != nil {
		C.llama_sampler_free(s.c)
		s.c, s.grammar = nil, nil
	}
}
