// Package chat runs a conversation with a model, personalised by a user's
// persona: the model's chat template (or a plain fallback), the
// conversation kept in the KV cache so that each turn decodes only its new
// tokens, persona rows at the start of the context recomputed for every
// user message, and a full window handled by dropping the oldest turns.
package chat

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/pplug/pplug/llama"
)

// Persona supplies the rows injected after BOS for a user message.
type Persona interface {
	// Rows returns NRows() rows of the model's width for the query, and
	// the history item weights behind them.
	Rows(ctx context.Context, query string) (rows, weights []float32, err error)
	NRows() int
}

// Options configure New.
type Options struct {
	System string
	// Template is a chat template (or the name of a llama.cpp built-in);
	// "" takes the model's own, falling back to a plain "User:/Assistant:"
	// transcript when the model has none llama.cpp can apply.
	Template string
	// MaxTokens caps each answer (-1: until the model ends its turn).
	MaxTokens int
	Persona   Persona
	// Augment, when set, rewrites each user message before it reaches the
	// model (the retrieval mode puts history items into it). The
	// transcript keeps the original message.
	Augment func(msg string) string
}

// Session is one conversation. It is not safe for concurrent use.
type Session struct {
	c       *llama.Context
	m       *llama.Model
	smp     *llama.Sampler
	o       Options
	tmpl    string // "" means the plain fallback
	stops   []string
	persona bool

	msgs     []llama.ChatMessage // the transcript
	sent     []llama.ChatMessage // what the model saw (augmented user messages)
	nRows    int
	bodyPos  llama.Pos     // first position after BOS and the rows
	pos      llama.Pos     // next free position
	kvTokens []llama.Token // the conversation tokens cached after the rows
	primed   bool          // BOS and rows are in the cache
	weights  []float32     // item weights behind the current rows
	notices  []string
	lastUser string
}

// Errors.
var (
	ErrEmptyMessage = errors.New("empty message")
	ErrTooLong      = errors.New("the message does not fit in the context window")
)

// New starts a session on a context (which it uses exclusively).
func New(c *llama.Context, smp *llama.Sampler, o Options) (*Session, error) {
	m := c.Model()
	s := &Session{c: c, m: m, smp: smp, o: o, persona: o.Persona != nil}
	switch {
	case o.Template != "":
		s.tmpl = o.Template
	default:
		s.tmpl = m.Info().ChatTemplate
	}
	if s.tmpl != "" {
		// Probe: llama.cpp applies only the templates it recognises.
		if _, err := llama.ApplyChatTemplate(s.tmpl, []llama.ChatMessage{{Role: "user", Content: "hi"}}, true); err != nil {
			if o.Template != "" {
				return nil, fmt.Errorf("chat template %q: %w", o.Template, err)
			}
			s.notices = append(s.notices, "the model's chat template is not one llama.cpp can apply; using a plain User:/Assistant: format")
			s.tmpl = ""
		}
	}
	if s.tmpl == "" {
		s.stops = []string{"\nUser:", "\nuser:"}
	}
	if o.Persona != nil {
		s.nRows = o.Persona.NRows()
	}
	return s, nil
}

// Notices returns and clears what the session wants the user to know
// (template fallbacks, dropped turns).
func (s *Session) Notices() []string {
	n := s.notices
	s.notices = nil
	return n
}

// Messages is the transcript.
func (s *Session) Messages() []llama.ChatMessage { return append([]llama.ChatMessage(nil), s.msgs...) }

// PersonaOn reports whether persona rows are injected.
func (s *Session) PersonaOn() bool { return s.persona }

// Weights are the history item weights behind the rows of the last message.
func (s *Session) Weights() []float32 { return s.weights }

// LastUserMessage is the last message the user sent.
func (s *Session) LastUserMessage() string { return s.lastUser }

// Template reports the template in use ("" for the plain fallback).
func (s *Session) Template() string { return s.tmpl }

// Reset forgets the conversation.
func (s *Session) Reset() error {
	s.msgs, s.sent, s.weights, s.lastUser = nil, nil, nil, ""
	s.smp.Reset()
	return s.clear()
}

func (s *Session) clear() error {
	s.primed, s.kvTokens, s.pos, s.bodyPos = false, nil, 0, 0
	return s.c.ClearMemory()
}

// SetPersona turns the persona rows on or off. The conversation so far is
// decoded again so that the answers that follow compare fairly.
func (s *Session) SetPersona(on bool) error {
	if on && s.o.Persona == nil {
		return errors.New("no persona: start the chat with --profile and --plug")
	}
	if on == s.persona {
		return nil
	}
	s.persona = on
	return s.clear()
}

// format renders messages with the template (or the fallback).
func (s *Session) format(msgs []llama.ChatMessage, addAssistant bool) (string, error) {
	all := msgs
	if s.o.System != "" {
		all = append([]llama.ChatMessage{{Role: "system", Content: s.o.System}}, msgs...)
	}
	if s.tmpl != "" {
		return llama.ApplyChatTemplate(s.tmpl, all, addAssistant)
	}
	var b strings.Builder
	for _, m := range all {
		switch m.Role {
		case "system":
			b.WriteString(m.Content + "\n\n")
		case "user":
			b.WriteString("User: " + m.Content + "\n")
		default:
			// The answer as generated after "Assistant:" (with its own
			// leading space), so the cached tokens match.
			b.WriteString("Assistant:" + m.Content + "\n")
		}
	}
	if addAssistant {
		b.WriteString("Assistant:")
	}
	return b.String(), nil
}

// primeLen is the number of positions prime fills in an empty cache: BOS
// and the persona rows.
func (s *Session) primeLen() int {
	n := 0
	if s.m.AddBOS() && s.m.BOS() >= 0 {
		n++
	}
	if s.persona {
		n += s.nRows
	}
	return n
}

// prime decodes BOS and the persona rows for query at the start of the
// context, or replaces the rows in place when the conversation is already
// there (see Send).
func (s *Session) prime(ctx context.Context, query string) error {
	var rows []float32
	if s.persona {
		var err error
		rows, s.weights, err = s.o.Persona.Rows(ctx, query)
		if err != nil {
			return fmt.Errorf("persona: %w", err)
		}
	} else {
		s.weights = nil
	}
	bos := s.m.AddBOS() && s.m.BOS() >= 0
	if !s.primed {
		var in []llama.Input
		if bos {
			in = append(in, llama.TokenInput(s.m.BOS()))
		}
		if len(rows) > 0 {
			in = append(in, llama.EmbdInput(rows))
		}
		if len(in) > 0 {
			next, err := s.c.DecodeInputs(ctx, in, llama.DecodeOptions{Output: llama.OutputNone})
			if err != nil {
				return err
			}
			s.pos = next
		}
		s.bodyPos, s.primed = s.pos, true
		return nil
	}
	if len(rows) == 0 {
		return nil
	}
	// Replace the rows in place: decode the new rows on scratch sequence 1
	// behind a copy of BOS, drop the old rows of sequence 0 and give it the
	// new ones. Positions stay as they were; the conversation's cached
	// tokens keep what they computed, the new turn attends to the new rows.
	start := llama.Pos(0)
	if bos {
		start = 1
		if err := s.c.CopySeq(0, 1, 0, 1); err != nil {
			return err
		}
	}
	if _, err := s.c.DecodeInputs(ctx, []llama.Input{llama.EmbdInput(rows)}, llama.DecodeOptions{Seq: 1, Pos: start, Output: llama.OutputNone}); err != nil {
		return err
	}
	end := start + llama.Pos(s.nRows)
	if _, err := s.c.RemoveSeq(0, start, end); err != nil {
		return err
	}
	if err := s.c.CopySeq(1, 0, start, end); err != nil {
		return err
	}
	_, err := s.c.RemoveSeq(1, -1, -1)
	return err
}

// Send adds a user message, generates the answer (streamed through emit)
// and returns it. A cancelled ctx stops the answer: what was produced stays
// in the transcript.
//
// The cache holds the tokens of the rendered conversation after BOS and the
// rows. Each turn renders the whole conversation, keeps the cached tokens
// it shares with them and decodes only the rest: normally the previous
// turn's end marker, the new message and the assistant's opening.
func (s *Session) Send(ctx context.Context, msg string, emit func(string) error) (llama.Result, error) {
	msg = strings.TrimSpace(msg)
	if msg == "" {
		return llama.Result{}, ErrEmptyMessage
	}
	seen := msg
	if s.o.Augment != nil {
		seen = s.o.Augment(msg)
	}
	s.msgs = append(s.msgs, llama.ChatMessage{Role: "user", Content: msg})
	s.sent = append(s.sent, llama.ChatMessage{Role: "user", Content: seen})
	fail := func(err error) (llama.Result, error) {
		s.msgs, s.sent = s.msgs[:len(s.msgs)-1], s.sent[:len(s.sent)-1]
		return llama.Result{}, err
	}
	s.lastUser = msg

	reserve := 128
	if s.o.MaxTokens > 0 {
		reserve = min(reserve, s.o.MaxTokens)
	}
	if s.persona {
		// New rows are decoded beside the conversation before the old ones
		// go (see prime).
		reserve = max(reserve, s.nRows)
	}
	body := s.bodyPos
	if !s.primed {
		body = llama.Pos(s.primeLen())
	}
	var toks []llama.Token
	lcp, dropped := 0, 0
	for {
		full, err := s.format(s.sent, true)
		if err != nil {
			return fail(err)
		}
		if toks, err = s.m.Tokenize(full, false, true); err != nil {
			return fail(err)
		}
		lcp = commonPrefix(s.kvTokens, toks)
		if lcp == len(toks) && lcp > 0 {
			lcp-- // decode at least one token, for the logits
		}
		if int(body)+len(toks)+reserve <= s.c.NCtxSeq() {
			break
		}
		if len(s.sent) <= 1 {
			return fail(fmt.Errorf("%w (%d positions with room for the answer, the window has %d): raise -c/--ctx-size",
				ErrTooLong, int(body)+len(toks)+reserve, s.c.NCtxSeq()))
		}
		n := 1 // drop the oldest message and its answer
		if s.sent[1].Role == "assistant" {
			n = 2
		}
		s.sent, s.msgs = s.sent[n:], s.msgs[n:]
		dropped += n
	}
	if dropped > 0 {
		s.notices = append(s.notices, fmt.Sprintf("context window full: dropped the %d oldest message(s)", dropped))
	}
	// Free the cache after the shared prefix first: the previous answer may
	// have filled the window, and the new rows need room (see prime).
	if lcp < len(s.kvTokens) {
		if _, err := s.c.RemoveSeq(0, s.bodyPos+llama.Pos(lcp), -1); err != nil {
			return fail(err)
		}
		s.kvTokens = s.kvTokens[:lcp]
	}
	if err := s.prime(ctx, msg); err != nil {
		// The cache may be half-way through the swap of rows: start over
		// next time.
		_ = s.clear()
		return fail(err)
	}
	s.pos = s.bodyPos + llama.Pos(lcp)
	res, err := s.c.Generate(ctx, s.smp, []llama.Input{llama.TokenInput(toks[lcp:]...)}, s.pos, llama.GenerateOptions{
		MaxTokens: s.o.MaxTokens, Stop: s.stops, Emit: emit,
	})
	if res.Stats.PromptRows < len(toks)-lcp {
		// The prompt failed part-way: forget the cache after the rows.
		s.kvTokens = nil
		_, _ = s.c.RemoveSeq(0, s.bodyPos, -1)
		return fail(err)
	}
	s.kvTokens = append(s.kvTokens, toks[lcp:]...)
	// The answer tokens in the cache: those decoded before generation ended
	// (a final end-of-turn token, a token holding a stop string or one
	// interrupted by a cancel is not).
	inCache := int(res.Next) - int(s.pos) - (len(toks) - lcp)
	s.kvTokens = append(s.kvTokens, res.Tokens[:max(0, min(inCache, len(res.Tokens)))]...)
	s.pos = res.Next
	s.msgs = append(s.msgs, llama.ChatMessage{Role: "assistant", Content: strings.TrimSpace(res.Text)})
	s.sent = append(s.sent, llama.ChatMessage{Role: "assistant", Content: res.Text})
	if res.Stop == llama.StopContext {
		s.notices = append(s.notices, "the context window filled up during the answer; the oldest turns will be dropped")
	}
	return res, err
}

// commonPrefix is the length of the longest common prefix.
func commonPrefix(a, b []llama.Token) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}
