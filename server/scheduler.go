package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pplug/pplug/llama"
)

// Scheduler errors.
var (
	ErrBusy   = errors.New("the request queue is full")
	ErrClosed = errors.New("the server is shutting down")
	ErrTooBig = errors.New("the request does not fit in the context window")
)

// job is one generation request as the scheduler sees it.
type job struct {
	ctx       context.Context
	inputs    []llama.Input   // persona rows and prompt, as persona.Inputs lays them out
	nPos      int             // positions the inputs take
	maxTokens int             // > 0
	sampler   *llama.Sampler  // the job's; dec samples with it
	dec       *llama.Sequence // the stop rule, the text and the logprobs
	out       *output
	keys      []uint64 // one per input position (see inputKeys)
	noReuse   bool     // cache_prompt false: decode the whole prompt
}

// close frees what the job holds beyond its output.
func (j *job) close() {
	_ = j.dec.Close()
	j.sampler.Close()
}

// prefillChunk is the most prompt positions decoded between two generation
// steps: a long prompt goes in a part at a time, so that the sequences
// already generating keep going meanwhile.
const prefillChunk = 256

// scheduler owns one llama.Context whose sequences are its slots. One
// goroutine (run) admits queued jobs into idle slots (at most parallel at
// once), decodes the admitted jobs' prompts on their own (persona rows are
// embedding rows, which llama.cpp cannot mix with tokens in a batch),
// prefillChunk positions at a time, and between those decodes the next
// token of every generating slot in one batch per step. With keep, a slot
// keeps the KV of its last job when it ends, and a job that starts the
// same way (the next turn of a conversation) decodes only the rest (see
// pick and makeRoom).
type scheduler struct {
	lctx     *llama.Context
	m        *llama.Model
	slots    []*slot      // one per sequence, by id
	parallel int          // most slots with a job at once (-np)
	keep     bool         // idle slots keep their KV for prefix reuse
	window   int          // positions one sequence may use
	budget   int          // positions of the KV cache all sequences share
	reserved int          // positions the admitted jobs may use
	tick     uint64       // ended jobs, for the slots' lastUsed
	busy     atomic.Int32 // slots with a job, for stats
	maxQueue int
	log      *slog.Logger

	mu      sync.Mutex
	waiting []*job
	closed  bool
	wake    chan struct{}
	stop    context.CancelFunc
	stopped chan struct{}

	trace atomic.Pointer[func(event string)] // tests: what the loop decodes
}

func (s *scheduler) traced(format string, a ...any) {
	if f := s.trace.Load(); f != nil {
		(*f)(fmt.Sprintf(format, a...))
	}
}

// newScheduler runs jobs on lctx's sequences, parallel at once; with keep,
// the other sequences hold the KV of ended jobs.
func newScheduler(lctx *llama.Context, parallel int, keep bool, maxQueue int, log *slog.Logger) *scheduler {
	s := &scheduler{
		lctx: lctx, m: lctx.Model(),
		slots:    make([]*slot, lctx.NSeqMax()),
		parallel: min(max(parallel, 1), lctx.NSeqMax()),
		keep:     keep,
		window:   lctx.NCtxSeq(),
		budget:   lctx.NCtx(),
		maxQueue: maxQueue,
		log:      log,
		wake:     make(chan struct{}, 1),
		stopped:  make(chan struct{}),
	}
	for i := range s.slots {
		s.slots[i] = &slot{seq: llama.SeqID(i)}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	go s.run(ctx)
	return s
}

// submit queues a job. It fails at once when the job can never fit or the
// queue is full.
func (s *scheduler) submit(j *job) error {
	if need := j.nPos + j.maxTokens; need > s.window || need > s.budget {
		return fmt.Errorf("%w: %d prompt positions + %d tokens to generate > %d (lower max_tokens, shorten the prompt or raise -c)", ErrTooBig, j.nPos, j.maxTokens, min(s.window, s.budget))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if len(s.waiting) >= s.maxQueue {
		return fmt.Errorf("%w (%d waiting; try again later or raise --queue)", ErrBusy, len(s.waiting))
	}
	s.waiting = append(s.waiting, j)
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

// close stops the loop; running and queued jobs end with ErrClosed.
func (s *scheduler) close() {
	s.mu.Lock()
	already := s.closed
	s.closed = true
	s.mu.Unlock()
	if !already {
		s.stop()
	}
	<-s.stopped
}

// stats are a snapshot for /health.
func (s *scheduler) stats() (active, queued int) {
	s.mu.Lock()
	queued = len(s.waiting)
	s.mu.Unlock()
	return int(s.busy.Load()), queued
}

func (s *scheduler) run(ctx context.Context) {
	defer close(s.stopped)
	defer func() {
		for _, sl := range s.slots {
			if sl.state != slotIdle {
				s.finish(sl, "", ErrClosed)
			}
		}
		s.mu.Lock()
		for _, j := range s.waiting {
			j.close()
			j.out.end("", ErrClosed)
		}
		s.waiting = nil
		s.mu.Unlock()
	}()
	for ctx.Err() == nil {
		// Cancelled jobs (client gone) free their sequence.
		for _, sl := range s.slots {
			if sl.state != slotIdle && sl.job.ctx.Err() != nil {
				s.finish(sl, "", sl.job.ctx.Err())
			}
		}
		s.admit()
		prefilled := s.prefill()
		if s.step(ctx) || prefilled {
			continue
		}
		select {
		case <-s.wake:
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
			// rechecks cancellation of queued jobs
		}
	}
}

// admit moves queued jobs into idle slots (first come, first served)
// while fewer than parallel run and the KV budget allows; prefill decodes
// their prompts.
func (s *scheduler) admit() {
	for int(s.busy.Load()) < s.parallel {
		j := s.head()
		if j == nil {
			return
		}
		sl, reuse := s.pick(j)
		if !s.makeRoom(sl, j.nPos+j.maxTokens) {
			return // wait for running jobs to give positions back
		}
		s.mu.Lock()
		s.waiting[0] = nil
		s.waiting = s.waiting[1:]
		s.mu.Unlock()
		s.place(sl, j, reuse)
	}
}

// head drops the queued jobs whose client left and returns the first of
// the others (nil: none). Only run takes jobs out of the queue.
func (s *scheduler) head() *job {
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := s.waiting[:0]
	for _, j := range s.waiting {
		if err := j.ctx.Err(); err != nil {
			j.close()
			j.out.end("", err)
			continue
		}
		kept = append(kept, j)
	}
	for i := len(kept); i < len(s.waiting); i++ {
		s.waiting[i] = nil
	}
	s.waiting = kept
	if len(kept) == 0 {
		return nil
	}
	return kept[0]
}

// place starts a job on an idle slot whose KV keeps the job's first reuse
// positions, and drops the rest of what it held.
func (s *scheduler) place(sl *slot, j *job, reuse int) {
	if len(sl.keys) > reuse {
		if ok, err := s.lctx.RemoveSeq(sl.seq, llama.Pos(reuse), -1); err != nil || !ok {
			// A memory that cannot drop a part of a sequence: start over.
			if _, err := s.lctx.RemoveSeq(sl.seq, -1, -1); err != nil {
				s.log.Error("free sequence", "seq", sl.seq, "err", err)
			}
			reuse = 0
		}
	}
	sl.start(j, reuse, s.m.NEmbd())
	s.busy.Add(1)
	s.reserved += sl.reserve
	j.out.mu.Lock()
	j.out.admitted, j.out.promptN, j.out.cached = time.Now(), j.nPos, reuse
	j.out.mu.Unlock()
}

// prefill decodes the next part of the first slot whose prompt is not
// decoded yet; after the last part it samples the slot's first token.
// It reports whether it did anything.
func (s *scheduler) prefill() bool {
	for _, sl := range s.slots {
		if sl.state != slotPrefill {
			continue
		}
		part, rest := llama.SplitInputs(sl.prompt, prefillChunk, s.m.NEmbd())
		out := llama.OutputNone
		if rest == nil {
			out = llama.OutputLast
		}
		next, err := s.lctx.DecodeInputs(sl.job.ctx, part, llama.DecodeOptions{Seq: sl.seq, Pos: sl.pos, Output: out})
		s.traced("prefill seq %d: %d positions", sl.seq, int(next-sl.pos))
		if err != nil {
			s.finish(sl, "", fmt.Errorf("decode the prompt: %w", err))
			return true
		}
		sl.prefilled(next, rest)
		if rest == nil {
			s.accept(sl, -1)
		}
		return true
	}
	return false
}

// step decodes the pending token of every generating sequence in one
// batch and samples the next ones. It reports whether it did anything.
func (s *scheduler) step(ctx context.Context) bool {
	var b llama.Batch
	var in []*slot
	for _, sl := range s.slots {
		if sl.state != slotGenerate {
			continue // idle, or its prompt is not decoded yet
		}
		b.Tokens = append(b.Tokens, sl.tok)
		b.Pos = append(b.Pos, sl.pos)
		b.Seq = append(b.Seq, sl.seq)
		b.Output = append(b.Output, true)
		in = append(in, sl)
	}
	if len(in) == 0 {
		return false
	}
	s.traced("step: %d sequences", len(in))
	if err := s.lctx.Decode(ctx, b); err != nil {
		if ctx.Err() != nil {
			return false
		}
		s.log.Error("batched decode failed", "sequences", len(in), "err", err)
		for _, sl := range in {
			s.finish(sl, "", fmt.Errorf("decode: %w", err))
		}
		return true
	}
	for i, sl := range in {
		sl.stepped()
		s.accept(sl, i)
	}
	return true
}

// accept samples the slot's next token from output idx of the last
// decode; the job's llama.Sequence applies the stop rule (an end-of-
// generation token unless ignore_eos, a stop string, max_tokens, a full
// window) and gives the text and log-probabilities that became final.
func (s *scheduler) accept(sl *slot, idx int) {
	j := sl.job
	st, err := j.dec.Sample(s.lctx, idx, sl.pos)
	j.out.mu.Lock()
	if j.out.first.IsZero() {
		j.out.first = time.Now()
	}
	j.out.genToks = len(j.dec.Tokens())
	j.out.mu.Unlock()
	if err != nil {
		s.finish(sl, "", err)
		return
	}
	j.out.push(st.Text)
	j.out.pushProbs(st.Probs)
	if st.Done {
		s.finish(sl, st.Reason.String(), nil)
		return
	}
	sl.tok = st.Token
}

// finish ends a slot's job. The slot's sequence keeps its KV for a next
// job that starts the same way (keep on, the job did not fail); otherwise
// it is freed.
func (s *scheduler) finish(sl *slot, reason string, err error) {
	keys := sl.keys
	if err != nil || !s.keep {
		if _, rerr := s.lctx.RemoveSeq(sl.seq, -1, -1); rerr != nil {
			s.log.Error("free sequence", "seq", sl.seq, "err", rerr)
		}
		keys = nil
	}
	j := sl.job
	s.busy.Add(-1)
	s.reserved -= sl.reserve
	s.tick++
	sl.idle(keys, s.tick)
	j.close()
	j.out.end(reason, err)
}
