package llama

import (
	"context"
	"errors"
	"strings"
	"time"
	"unicode/utf8"
)

// StopReason says why generation ended.
type StopReason string

const (
	StopEOG      StopReason = "eog"      // the model produced an end-of-generation token
	StopLength   StopReason = "length"   // MaxTokens reached
	StopContext  StopReason = "context"  // the context window is full
	StopCanceled StopReason = "canceled" // the context.Context was cancelled
	StopString   StopReason = "stop"     // a stop string appeared (it is not in the text)
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
	// in the cache except the last when Stop is StopString or StopContext.
	Next  Pos
	Stats Stats
}

// Generate decodes prompt at position pos of sequence o.Seq, then samples
// and decodes tokens until a stop condition. Text is streamed through
// o.Emit. On cancellation it returns what was produced with the context's
// error.
func (c *Context) Generate(ctx context.Context, smp *Sampler, prompt []Input, pos Pos, o GenerateOptions) (Result, error) {
	var res Result
	t0 := time.Now()
	next, err := c.DecodeInputs(ctx, prompt, DecodeOptions{Seq: o.Seq, Pos: pos, Output: OutputLast})
	res.Stats.PromptRows = int(next - pos)
	res.Stats.PromptTime = time.Since(t0)
	res.Next = next
	if err != nil {
		if ctx.Err() != nil {
			res.Stop = StopCanceled
		}
		return res, err
	}
	return c.continueGeneration(ctx, smp, res, t0, o)
}

// continueGeneration samples from the current last output onwards.
func (c *Context) continueGeneration(ctx context.Context, smp *Sampler, res Result, t0 time.Time, o GenerateOptions) (Result, error) {
	var text strings.Builder
	ts := NewTextStream(o.Stop)
	out := func(s string) error {
		if s == "" {
			return nil
		}
		text.WriteString(s)
		if o.Emit != nil {
			return o.Emit(s)
		}
		return nil
	}
	// push adds a token's bytes; it reports whether a stop string appeared.
	push := func(piece []byte, final bool) (bool, error) {
		if final {
			return false, out(ts.Flush())
		}
		s, stop := ts.Push(piece)
		return stop, out(s)
	}

	tg := time.Now()
	tok := []Token{0}
	in := []Input{{Tokens: tok}}
	var err error
	for {
		if o.MaxTokens >= 0 && res.Stats.GenTokens >= o.MaxTokens {
			res.Stop = StopLength
			break
		}
		if ctx.Err() != nil {
			res.Stop, err = StopCanceled, ctx.Err()
			break
		}
		var t Token
		t, err = smp.Sample(c, -1)
		if err != nil {
			break
		}
		if res.Stats.GenTokens == 0 {
			res.Stats.TimeToFirstToken = time.Since(t0)
		}
		res.Stats.GenTokens++
		eog, piece := c.tokenInfo(t, o.Special)
		if eog && !o.IgnoreEOG {
			res.Stop = StopEOG
			break
		}
		res.Tokens = append(res.Tokens, t)
		var stopped bool
		if stopped, err = push(piece, false); err != nil || stopped {
			if stopped {
				res.Stop = StopString
			}
			break
		}
		if int(res.Next) >= c.ctxSeq {
			res.Stop = StopContext
			break
		}
		tok[0] = t
		res.Next, err = c.DecodeInputs(ctx, in, DecodeOptions{Seq: o.Seq, Pos: res.Next, Output: OutputLast})
		if err != nil {
			if errors.Is(err, ErrContextFull) {
				res.Stop, err = StopContext, nil
			} else if ctx.Err() != nil {
				res.Stop = StopCanceled
			}
			break
		}
	}
	if res.Stop != StopString {
		if _, ferr := push(nil, true); err == nil {
			err = ferr
		}
	}
	res.Stats.GenTime = time.Since(tg)
	res.Text = text.String()
	return res, err
}

// firstStop returns where the earliest stop string starts in s, or -1.
func firstStop(s string, stops []string) int {
	cut := -1
	for _, st := range stops {
		if st == "" {
			continue
		}
		if i := strings.Index(s, st); i >= 0 && (cut < 0 || i < cut) {
			cut = i
		}
	}
	return cut
}

// stopPrefixLen is the length of the longest suffix of s that begins some
// stop string: text that must be held back until the next token decides.
func stopPrefixLen(s string, stops []string) int {
	best := 0
	for _, st := range stops {
		for k := min(len(st)-1, len(s)); k > best; k-- {
			if strings.HasSuffix(s, st[:k]) {
				best = k
				break
			}
		}
	}
	return best
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

// completeUTF8 returns the length of the longest prefix of b that does not
// end inside a UTF-8 sequence.
func completeUTF8(b []byte) int {
	n := len(b)
	// Look back at most 3 bytes for the lead byte of a sequence in progress.
	for i := n - 1; i >= 0 && i >= n-4; i-- {
		c := b[i]
		if c < 0x80 {
			return n // ASCII: everything before is whole
		}
		if utf8.RuneStart(c) {
			need := 0
			switch {
			case c&0xE0 == 0xC0:
				need = 2
			case c&0xF0 == 0xE0:
				need = 3
			case c&0xF8 == 0xF0:
				need = 4
			default:
				return n // invalid lead byte: nothing to wait for
			}
			if n-i < need {
				return i
			}
			return n
		}
	}
	return n
}
