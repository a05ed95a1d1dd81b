package llama

import (
	"context"
	"errors"
	"time"
)

// GenerateOptions configure Generate.
type GenerateOptions struct {
	// MaxTokens caps the generated tokens; < 0 generates until an
	// end-of-generation token or a full window (llama.cpp's -n -1).
	MaxTokens int
	Seq       SeqID
	// IgnoreEOG keeps generating past end-of-generation tokens (benchmarks).
	IgnoreEOG bool
	// Special renders special tokens into the text.
	Special bool
	// Stop strings end generation when they appear in the text; the text
	// is cut before them. Text that could begin one is held back until the
	// following tokens decide.
	Stop []string
	// Emit receives the text as it is produced, in whole UTF-8 characters.
	// An error from Emit stops generation and is returned.
	Emit func(text string) error
}

// Stats are the timings of one Generate call.
type Stats struct {
	PromptRows int           // positions decoded for the prompt (tokens and rows)
	PromptTime time.Duration // decoding the prompt
	GenTokens  int           // tokens sampled
	GenTime    time.Duration // from the end of the prompt to the end of generation
	// TimeToFirstToken runs from the start of the call to the first sampled token.
	TimeToFirstToken time.Duration
}

// PromptTPS is prompt rows per second.
func (s Stats) PromptTPS() float64 { return rate(s.PromptRows, s.PromptTime) }

// GenTPS is generated tokens per second.
func (s Stats) GenTPS() float64 { return rate(s.GenTokens, s.GenTime) }

func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// Result is what Generate produced.
type Result struct {
	Tokens []Token
	Text   string
	Stop   StopReason
	// Next is the position after the last token in the KV cache. Tokens are
	// the sampled tokens but a final end-of-generation token; all of them are
	// in the cache except the last when Stop is StopString or StopContext
	// (or a failed or cancelled decode).
	Next  Pos
	Stats Stats
}

// Generate decodes prompt at position pos of sequence o.Seq, then samples
// and decodes tokens until a stop condition (see Sequence: the one stop
// rule). Text is streamed through o.Emit. On cancellation it returns what
// was produced with the context's error.
func (c *Context) Generate(ctx context.Context, smp *Sampler, prompt []Input, pos Pos, o GenerateOptions) (Result, error) {
	seq, err := NewSequence(SequenceOptions{Sampler: smp, MaxTokens: o.MaxTokens, Stop: o.Stop, IgnoreEOG: o.IgnoreEOG, Special: o.Special})
	if err != nil {
		return Result{}, err
	}
	defer seq.Close()
	return c.GenerateSequence(ctx, seq, prompt, pos, o.Seq, o.Emit)
}

// GenerateSequence is Generate with a Sequence the caller built (its own
// sampler, logit biases, log-probabilities): it decodes prompt at pos of
// sequence id, then samples with seq and decodes each token that does not
// end it. Text goes to emit (may be nil) as it becomes final.
func (c *Context) GenerateSequence(ctx context.Context, seq *Sequence, prompt []Input, pos Pos, id SeqID, emit func(string) error) (Result, error) {
	var res Result
	t0 := time.Now()
	next, err := c.DecodeInputs(ctx, prompt, DecodeOptions{Seq: id, Pos: pos, Output: OutputLast})
	res.Stats.PromptRows = int(next - pos)
	res.Stats.PromptTime = time.Since(t0)
	res.Next = next
	if err != nil {
		if ctx.Err() != nil {
			res.Stop = StopCanceled
		}
		return res, err
	}
	g := generation{c: c, seq: seq, id: id, emit: emit, res: res}
	return g.run(ctx, t0)
}

// generation is one Generate loop: a sequence decoded alone.
type generation struct {
	c    *Context
	seq  *Sequence
	id   SeqID
	emit func(string) error
	res  Result
}

func (g *generation) run(ctx context.Context, t0 time.Time) (Result, error) {
	tg := time.Now()
	err := g.loop(ctx, t0)
	res := g.res
	res.Stop = g.seq.Reason()
	res.Tokens = g.seq.Tokens()
	res.Text = g.seq.Text()
	res.Stats.GenTokens = g.seq.Generated()
	res.Stats.GenTime = time.Since(tg)
	return res, err
}

// loop samples and decodes until the sequence ends; the steps' text goes
// out through emit.
func (g *generation) loop(ctx context.Context, t0 time.Time) error {
	in := []Input{{Tokens: []Token{0}}}
	for {
		if ctx.Err() != nil {
			return g.out(g.seq.End(StopCanceled), ctx.Err())
		}
		st, err := g.seq.Sample(g.c, -1, g.res.Next)
		if g.seq.Generated() == 1 && g.res.Stats.TimeToFirstToken == 0 {
			g.res.Stats.TimeToFirstToken = time.Since(t0)
		}
		if err = g.out(st, err); err != nil || (st.Done && st.Reason != StopLength) {
			return err
		}
		if st.Done && g.seq.Generated() == 0 {
			return nil // MaxTokens 0: nothing to decode
		}
		in[0].Tokens[0] = st.Token
		g.res.Next, err = g.c.DecodeInputs(ctx, in, DecodeOptions{Seq: g.id, Pos: g.res.Next, Output: OutputLast})
		if err != nil {
			return g.decodeFailed(ctx, err)
		}
		if st.Done {
			return nil
		}
	}
}

// out streams a step's text; an error from emit ends the sequence.
func (g *generation) out(st Step, err error) error {
	if st.Text != "" && g.emit != nil {
		if eerr := g.emit(st.Text); eerr != nil && err == nil {
			g.seq.End(StopError)
			err = eerr
		}
	}
	return err
}

// decodeFailed ends the sequence after a failed decode of its last token:
// a full window is a stop, anything else an error.
func (g *generation) decodeFailed(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, ErrContextFull):
		return g.out(g.seq.End(StopContext), nil)
	case ctx.Err() != nil:
		return g.out(g.seq.End(StopCanceled), err)
	}
	return g.out(g.seq.End(StopError), err)
}

// tokenInfo reads whether t ends generation and its text, under c.mu so a
// concurrent Close cannot free the model underneath.
func (c *Context) tokenInfo(t Token, special bool) (eog bool, piece []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c == nil {
		return true, nil
	}
	return c.cm.IsEOG(t), c.cm.TokenPiece(t, special)
}
