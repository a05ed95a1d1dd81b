package llama

import (
	"errors"
	"fmt"
	"strings"
)

// StopReason says why a sequence ended.
type StopReason uint8

const (
	StopNone     StopReason = iota // still generating
	StopEOG                        // the model produced an end-of-generation token
	StopString                     // a stop string appeared (it is not in the text)
	StopLength                     // MaxTokens reached
	StopContext                    // the context window is full
	StopCanceled                   // the caller ended it (a cancelled context.Context)
	StopError                      // sampling or decoding failed
)

// String is OpenAI's finish_reason: "stop" for an end-of-generation token
// or a stop string, "length" for the token cap or a full window; the other
// reasons have no OpenAI name and give "canceled", "error" and "".
func (r StopReason) String() string {
	switch r {
	case StopEOG, StopString:
		return "stop"
	case StopLength, StopContext:
		return "length"
	case StopCanceled:
		return "canceled"
	case StopError:
		return "error"
	}
	return ""
}

// Detail names the reason precisely ("eog", "stop string", "max tokens",
// "context full", ...), for logs and messages.
func (r StopReason) Detail() string {
	switch r {
	case StopEOG:
		return "eog"
	case StopString:
		return "stop string"
	case StopLength:
		return "max tokens"
	case StopContext:
		return "context full"
	case StopCanceled:
		return "canceled"
	case StopError:
		return "error"
	}
	return "generating"
}

// SequenceOptions configure a Sequence.
type SequenceOptions struct {
	// Sampler, when set, is the caller's: the sequence samples with it and
	// leaves it open. Otherwise Model.NewSequence builds one from Sampling
	// (its EOSBias included) and LogitBias, and Close frees it.
	Sampler   *Sampler
	Sampling  SamplerOptions
	LogitBias []TokenBias

	// MaxTokens caps the sampled tokens; < 0 samples until an
	// end-of-generation token or a full window.
	MaxTokens int
	// Stop strings end the sequence when they appear in its text; the text
	// is cut before them, and text that could begin one is held back until
	// the following tokens decide.
	Stop []string
	// IgnoreEOG keeps generating past end-of-generation tokens.
	IgnoreEOG bool
	// Special renders special tokens into the text.
	Special bool
	// Logprobs collects each token's log-probability and its TopLogprobs
	// most likely alternatives (at most MaxTopLogprobs).
	Logprobs    bool
	TopLogprobs int
}

// TokenProb is a sampled token's log-probability (the model's own, before
// any sampler stage) with its most likely alternatives (Token, Piece and
// Logprob set) and the byte offset of its piece among the sequence's pieces.
type TokenProb struct {
	Token   Token
	Piece   []byte
	Logprob float32
	Top     []TokenProb
	Offset  int
}

// Step is what one sampled token did to a sequence.
type Step struct {
	Token Token
	// Text became final with this step: whole UTF-8 characters, stop
	// strings cut out. It may be empty while text is held back.
	Text string
	// Probs are the log-probabilities of the tokens whose text is now out
	// in full (Logprobs on), in order.
	Probs []TokenProb
	// Done says the sequence ended; Reason says why. After a step that is
	// not done, the caller decodes Token at the next position of the
	// sequence and samples again. A token that ends the sequence with
	// StopLength is part of the answer: a caller that keeps the sequence's
	// cache for later decodes it (Generate does); with the other reasons
	// it is not part of the cache.
	Done   bool
	Reason StopReason
}

// Sequence is the decode state of one generated sequence: its sampler, the
// stop rule (end-of-generation, stop strings, token cap, full window), the
// text it produced and the log-probabilities it collects. It does not
// decode: the caller decodes (one sequence alone, or many in one batch)
// and calls Sample with the output row of this sequence. Generate drives
// one; a server keeps one per slot. It is not safe for concurrent use.
type Sequence struct {
	o      SequenceOptions
	smp    *Sampler
	own    bool // smp is the sequence's: Close frees it
	ts     *TextStream
	tokens []Token // the sampled tokens but a final end-of-generation token
	gen    int     // tokens sampled
	text   strings.Builder
	reason StopReason

	held    []TokenProb // logprobs of tokens whose text is not out in full
	raw     int         // bytes of the pieces pushed
	emitted int         // bytes of text out
}

// NewSequence starts a sequence that samples with o.Sampler, which must be
// set (and stays the caller's). Model.NewSequence builds the sampler too.
func NewSequence(o SequenceOptions) (*Sequence, error) {
	if o.Sampler == nil {
		return nil, errors.New("a sequence needs a sampler: set SequenceOptions.Sampler or use Model.NewSequence")
	}
	if err := o.check(); err != nil {
		return nil, err
	}
	return &Sequence{o: o, smp: o.Sampler, ts: NewTextStream(o.Stop)}, nil
}

// NewSequence starts a sequence on m. Without o.Sampler it builds its own
// sampler from o.Sampling and o.LogitBias (see Model.NewBiasedSampler),
// which Close frees.
func (m *Model) NewSequence(o SequenceOptions) (*Sequence, error) {
	if o.Sampler != nil {
		return NewSequence(o)
	}
	if err := o.check(); err != nil {
		return nil, err
	}
	smp, err := m.NewBiasedSampler(o.Sampling, o.LogitBias)
	if err != nil {
		return nil, fmt.Errorf("sequence sampler: %w", err)
	}
	o.Sampler = smp
	return &Sequence{o: o, smp: smp, own: true, ts: NewTextStream(o.Stop)}, nil
}

func (o SequenceOptions) check() error {
	if o.Logprobs && (o.TopLogprobs < 0 || o.TopLogprobs > MaxTopLogprobs) {
		return fmt.Errorf("top logprobs %d is outside [0, %d]", o.TopLogprobs, MaxTopLogprobs)
	}
	return nil
}

// Sampler is the sampler the sequence samples with.
func (s *Sequence) Sampler() *Sampler { return s.smp }

// Close frees the sampler when the sequence built it. It is idempotent.
func (s *Sequence) Close() error {
	if s.own && s.smp != nil {
		s.own = false
		return s.smp.Close()
	}
	return nil
}

// Done reports whether the sequence ended.
func (s *Sequence) Done() bool { return s.reason != StopNone }

// Reason is why the sequence ended (StopNone while it runs).
func (s *Sequence) Reason() StopReason { return s.reason }

// Generated is the number of tokens sampled, a final end-of-generation
// token included.
func (s *Sequence) Generated() int { return s.gen }

// Tokens are the sampled tokens but a final end-of-generation token.
func (s *Sequence) Tokens() []Token { return s.tokens }

// Text is the text that went out so far.
func (s *Sequence) Text() string { return s.text.String() }

// Sample picks the next token from output idx of c's last decode (-1: the
// last output), where pos is the position the token would be decoded at,
// and decides what it does (see Step). A sequence that has sampled
// MaxTokens ends with StopLength without sampling. An error from the
// sampler ends the sequence with StopError; the step is still returned.
func (s *Sequence) Sample(c *Context, idx int, pos Pos) (Step, error) {
	if s.Done() {
		return Step{Done: true, Reason: s.reason}, nil
	}
	if s.o.MaxTokens >= 0 && s.gen >= s.o.MaxTokens {
		return s.End(StopLength), nil
	}
	t, err := s.smp.Sample(c, idx)
	if err != nil {
		return s.End(StopError), err
	}
	return s.accept(c, idx, pos, t)
}

// accept applies the stop rule to the sampled token t, in this order: an
// end-of-generation token, a stop string in the text, a full window, the
// token cap.
func (s *Sequence) accept(c *Context, idx int, pos Pos, t Token) (Step, error) {
	s.gen++
	eog, piece := c.tokenInfo(t, s.o.Special)
	if eog && !s.o.IgnoreEOG {
		st := s.End(StopEOG)
		st.Token = t
		return st, nil
	}
	s.tokens = append(s.tokens, t)
	if err := s.holdProb(c, idx, t, piece); err != nil {
		st := s.End(StopError)
		st.Token = t
		return st, err
	}
	text, stopped := s.ts.Push(piece)
	st := Step{Token: t, Text: text}
	s.emit(&st, text)
	switch {
	case stopped:
		s.end(&st, StopString)
	case int(pos) >= c.NCtxSeq():
		s.end(&st, StopContext)
	case s.o.MaxTokens >= 0 && s.gen >= s.o.MaxTokens:
		s.end(&st, StopLength)
	}
	return st, nil
}

// End ends the sequence from outside (the caller's context was cancelled,
// the window filled up, a decode failed): the held-back text goes out as
// the final step. It is a no-op on a sequence that has ended.
func (s *Sequence) End(reason StopReason) Step {
	st := Step{Done: true, Reason: s.reason}
	if !s.Done() {
		s.end(&st, reason)
	}
	return st
}

// end records the reason, flushes the text (but after a stop string) and
// releases the log-probabilities of the tokens whose text is in the answer.
func (s *Sequence) end(st *Step, reason StopReason) {
	s.reason, st.Done, st.Reason = reason, true, reason
	if !s.ts.Stopped() {
		rest := s.ts.Flush()
		st.Text += rest
		s.emit(st, rest)
	}
	n := 0
	for n < len(s.held) && (!s.ts.Stopped() || s.held[n].Offset < s.emitted) {
		n++
	}
	s.release(st, n)
}

// emit records text that went out and releases the log-probabilities of
// the tokens it completes.
func (s *Sequence) emit(st *Step, text string) {
	s.text.WriteString(text)
	s.emitted += len(text)
	n := 0
	for n < len(s.held) && s.held[n].Offset+len(s.held[n].Piece) <= s.emitted {
		n++
	}
	s.release(st, n)
}

func (s *Sequence) release(st *Step, n int) {
	if n == 0 {
		return
	}
	st.Probs = append(st.Probs, s.held[:n:n]...)
	s.held = s.held[n:]
}

// holdProb computes a token's log-probabilities (Logprobs on) and holds
// them until its text goes out.
func (s *Sequence) holdProb(c *Context, idx int, t Token, piece []byte) error {
	defer func() { s.raw += len(piece) }()
	if !s.o.Logprobs {
		return nil
	}
	own, top, err := c.Logprobs(idx, t, s.o.TopLogprobs)
	if err != nil {
		return fmt.Errorf("logprobs: %w", err)
	}
	p := TokenProb{Token: t, Piece: piece, Logprob: own, Offset: s.raw, Top: make([]TokenProb, len(top))}
	for i, a := range top {
		_, alt := c.tokenInfo(a.Token, s.o.Special)
		p.Top[i] = TokenProb{Token: a.Token, Piece: alt, Logprob: a.Logprob}
	}
	s.held = append(s.held, p)
	return nil
}
