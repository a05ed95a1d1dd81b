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
	"github.com/pplug/pplug/persona"
)

// Persona personalises each user message: the rows injected after BOS
// (NRows of them, recomputed for every message) and the text the model
// reads in place of the message (retrieval puts history items into it);
// *persona.Persona is one.
type Persona interface {
	Personalize(ctx context.Context, msg string) (persona.Request, error)
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
	// Stop strings end an answer (the text up to them is kept), besides
	// the model's end of turn.
	Stop    []string
	Persona Persona
}

// Message is one message of the transcript. A user message records the
// persona state it was answered under, so that a saved transcript says
// which answers were personalised and how.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
	// Persona is the personalisation method of a user message ("none"
	// when the persona was off).
	Persona persona.Method `json:"persona,omitempty"`
	// Seen is the text the model read for a user message when
	// personalisation changed it (retrieved items put before it).
	Seen string `json:"seen,omitempty"`
	// Retrieved names the history items put into Seen (their ids, or #i
	// for the i-th item of an item without id).
	Retrieved []string `json:"retrieved,omitempty"`

	raw string // an answer as generated, leading space kept (cache matching)
}

// sent is what the model reads of the message.
func (m Message) sent() llama.ChatMessage {
	switch {
	case m.Seen != "":
		return llama.ChatMessage{Role: m.Role, Content: m.Seen}
	case m.raw != "":
		return llama.ChatMessage{Role: m.Role, Content: m.raw}
	}
	return llama.ChatMessage{Role: m.Role, Content: m.Content}
}

// Session is one conversation. It is not safe for concurrent use.
type Session struct {
	c       *llama.Context
	m       *llama.Model
	smp     *llama.Sampler // the caller's
	biased  *llama.Sampler // smp's options with a request's EOS bias (owned)
	o       Options
	tmpl    persona.Template
	b       persona.Builder // lays out each turn in tmpl
	stops   []string
	persona bool

	log      []Message // the whole transcript
	window   int       // log[window:] is what the model's window holds
	nRows    int
	bodyPos  llama.Pos       // first position after BOS and the rows
	pos      llama.Pos       // next free position
	kvTokens []llama.Token   // the conversation tokens cached after the rows
	primed   bool            // BOS and rows are in the cache
	last     persona.Request // the personalisation of the last message
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
	tmpl, err := persona.ChooseTemplate(m, o.Template)
	if err != nil {
		return nil, err
	}
	if tmpl.Notice != "" {
		s.notices = append(s.notices, tmpl.Notice)
	}
	s.tmpl = tmpl
	s.b = persona.Builder{LLM: m, Template: &s.tmpl}
	s.stops = append(tmpl.Stops(), o.Stop...)
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

// Messages is the whole transcript, turns that left the window included.
func (s *Session) Messages() []Message { return append([]Message(nil), s.log...) }

// PersonaOn reports whether the persona personalises the messages.
func (s *Session) PersonaOn() bool { return s.persona }

// Weights are the history item weights behind the rows of the last message.
func (s *Session) Weights() []float32 { return s.last.Weights }

// LastRequest is the personalisation of the last message (its rows, the
// text the model read, the items retrieved into it).
func (s *Session) LastRequest() persona.Request { return s.last }

// Layout is where BOS, the persona rows and the conversation sit in the
// context (see persona.Layout); NPrompt counts the conversation tokens in
// the cache.
func (s *Session) Layout() persona.Layout {
	l := s.layout()
	l.NPrompt = len(s.kvTokens)
	return l
}

// LastUserMessage is the last message the user sent.
func (s *Session) LastUserMessage() string { return s.lastUser }

// Template reports the template in use ("" for the plain fallback).
func (s *Session) Template() string { return s.tmpl.Name }

// System is the system prompt.
func (s *Session) System() string { return s.o.System }

// Reset forgets the conversation.
func (s *Session) Reset() error {
	s.log, s.window, s.last, s.lastUser = nil, 0, persona.Request{}, ""
	s.smp.Reset()
	if s.biased != nil {
		s.biased.Reset()
	}
	return s.clear()
}

func (s *Session) clear() error {
	s.primed, s.kvTokens, s.pos, s.bodyPos = false, nil, 0, 0
	return s.c.ClearMemory()
}

// SetPersona turns the persona on or off. The conversation so far is
// decoded again so that the answers that follow compare fairly.
func (s *Session) SetPersona(on bool) error {
	if on && s.o.Persona == nil {
		return errors.New("no persona: start the chat with --profile (and --plug for persona rows)")
	}
	if on == s.persona {
		return nil
	}
	s.persona = on
	return s.clear()
}

// SetSampler replaces the sampler (new sampling settings); the session
// uses it from the next answer on. The caller owns both samplers.
func (s *Session) SetSampler(smp *llama.Sampler) {
	s.smp = smp
	s.dropBiased()
}

// Close frees what the session made itself (the sampler with a plug's EOS
// bias); the context and the caller's sampler stay the caller's.
func (s *Session) Close() error {
	s.dropBiased()
	return nil
}

func (s *Session) dropBiased() {
	if s.biased != nil {
		s.biased.Close()
		s.biased = nil
	}
}

// sampler is the sampler for a request: the caller's, or one with its
// options and the request's EOS bias (a plug's learned length prior,
// which only applies where its rows are injected).
func (s *Session) sampler(t *persona.Turn) (*llama.Sampler, error) {
	if t.EOSBias == 0 {
		return s.smp, nil
	}
	o := t.SamplerOptions(s.smp.Options())
	if s.biased != nil && s.biased.Options() == o {
		return s.biased, nil
	}
	s.dropBiased()
	b, err := s.m.NewSampler(o)
	if err != nil {
		return nil, err
	}
	s.biased = b
	return b, nil
}

// SetMaxTokens changes the cap of each answer (-1: none).
func (s *Session) SetMaxTokens(n int) { s.o.MaxTokens = n }

// SetSystem changes the system prompt; the conversation is decoded again
// under it at the next message.
func (s *Session) SetSystem(system string) error {
	if system == s.o.System {
		return nil
	}
	s.o.System = system
	return s.clear()
}

// Load replaces the conversation with a saved transcript: the next message
// continues it (the transcript is decoded again then, as far as the window
// holds it). The persona goes on or off as it was for the transcript's last
// user message.
func (s *Session) Load(msgs []Message) error {
	for i, m := range msgs {
		if m.Role != "user" && m.Role != "assistant" {
			return fmt.Errorf("message %d: role %q (want user or assistant)", i+1, m.Role)
		}
		if strings.TrimSpace(m.Content) == "" && m.Role == "user" {
			return fmt.Errorf("message %d: empty user message", i+1)
		}
	}
	on := s.persona
	lastUser := ""
	for _, m := range msgs {
		if m.Role == "user" {
			lastUser = m.Content
			if m.Persona != "" {
				on = m.Persona != persona.MethodNone && s.o.Persona != nil
			}
		}
	}
	s.log = append([]Message(nil), msgs...)
	s.window, s.last, s.lastUser, s.persona = 0, persona.Request{}, lastUser, on
	return s.clear()
}

// layout is the layout of BOS and rows in an empty cache: the turn's
// (persona.Builder), whose rows open the conversation.
func (s *Session) layout() persona.Layout {
	n, nInstr := 0, 0
	if s.persona {
		n, nInstr = s.nRows, min(s.last.NInstr, s.nRows)
	}
	l, _ := persona.NewLayout(s.m, nInstr, n-nInstr, nil, 0)
	return l
}

// prime decodes BOS and the persona rows at the start of the context (see
// persona.Layout), or replaces the rows in place when the conversation is
// already there (see Send).
func (s *Session) prime(ctx context.Context, rows []float32) error {
	l := s.layout()
	if !s.primed {
		var in []llama.Input
		if l.BOS {
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
		if s.pos != llama.Pos(l.PromptAt()) {
			return fmt.Errorf("chat: the cache holds %d positions before the conversation, the layout %d", s.pos, l.PromptAt())
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
	start := llama.Pos(l.RowsAt())
	if l.BOS {
		if err := s.c.CopySeq(0, 1, 0, start); err != nil {
			return err
		}
	}
	if _, err := s.c.DecodeInputs(ctx, []llama.Input{llama.EmbdInput(rows)}, llama.DecodeOptions{Seq: 1, Pos: start, Output: llama.OutputNone}); err != nil {
		return err
	}
	end := llama.Pos(l.PromptAt())
	if _, err := s.c.RemoveSeq(0, start, end); err != nil {
		return err
	}
	if err := s.c.CopySeq(1, 0, start, end); err != nil {
		return err
	}
	_, err := s.c.RemoveSeq(1, -1, -1)
	return err
}

// personalize is the request of a user message: the persona's, or the
// message alone when the persona is off.
func (s *Session) personalize(ctx context.Context, msg string) (persona.Request, error) {
	if !s.persona {
		return persona.Request{Method: persona.MethodNone, Prompt: msg}, nil
	}
	req, err := s.o.Persona.Personalize(ctx, msg)
	if err != nil {
		return req, fmt.Errorf("persona: %w", err)
	}
	if len(req.Rows) != s.nRows*s.m.NEmbd() {
		return req, fmt.Errorf("persona: %d row values, want %d rows of %d", len(req.Rows), s.nRows, s.m.NEmbd())
	}
	return req, nil
}

// userMessage is the transcript entry of a personalised user message.
func userMessage(msg string, req persona.Request) Message {
	m := Message{Role: "user", Content: msg, Persona: req.Method}
	if req.Prompt != msg {
		m.Seen = req.Prompt
	}
	for _, r := range req.Retrieved {
		id := r.Item.ID
		if id == "" {
			id = fmt.Sprintf("#%d", r.Index)
		}
		m.Retrieved = append(m.Retrieved, id)
	}
	return m
}

// fit renders the conversation in the window for the model and drops the
// oldest turns until it fits in the context with room for the answer
// (reserve positions) after body positions of BOS and rows. It returns the
// tokens and how many of them the cache already holds.
func (s *Session) fit(ctx context.Context, body, reserve int) (t *persona.Turn, lcp int, err error) {
	room := s.c.NCtxSeq() - body - reserve
	start, t, err := s.windowStart(ctx, room)
	if err != nil {
		return nil, 0, err
	}
	toks := t.Body()
	if dropped := start - s.window; dropped > 0 {
		s.window = start
		s.notices = append(s.notices, fmt.Sprintf("context window full: dropped the %d oldest message(s) from the window (the transcript keeps them)", dropped))
	}
	lcp = commonPrefix(s.kvTokens, toks)
	if lcp == len(toks) && lcp > 0 {
		lcp-- // decode at least one token, for the logits
	}
	return t, lcp, nil
}

// windowStart finds where the window must start so that the conversation
// from there fits in room positions, and renders it. Windows start at the
// current start or at a user message (a dropped message takes its answer
// along). The whole window is tried first (the usual case); otherwise
// windows grow from the newest message in doubling steps and a binary
// search settles between the last that fits and the first that does not,
// so a long transcript (a /load) costs a few renders of about the window's
// size instead of one render of the whole transcript per dropped message.
func (s *Session) windowStart(ctx context.Context, room int) (int, *persona.Turn, error) {
	starts := s.windowStarts()
	// Each message takes a token at least: a window of more messages than
	// room is not rendered to learn that it does not fit.
	if len(s.log)-starts[0] <= room {
		toks, ok, err := s.fits(ctx, starts[0], room)
		if err != nil || ok {
			return starts[0], toks, err
		}
	}
	// fits(starts[lo]) is false and fits(starts[hi]) true, with hi's tokens.
	lo, hi := 0, len(starts)-1
	toks, ok, err := s.fits(ctx, starts[hi], room)
	if err != nil {
		return 0, nil, err
	} else if !ok {
		return 0, nil, fmt.Errorf("%w (%d positions with room for the answer, the window has %d): raise -c/--ctx-size",
			ErrTooLong, s.c.NCtxSeq()-room+len(toks.Body()), s.c.NCtxSeq())
	}
	for step := 1; hi-step > lo; step *= 2 {
		if len(s.log)-starts[hi-step] > room {
			lo = hi - step
			break
		}
		t, ok, err := s.fits(ctx, starts[hi-step], room)
		if err != nil {
			return 0, nil, err
		}
		if !ok {
			lo = hi - step
			break
		}
		hi, toks = hi-step, t
	}
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		t, ok, err := s.fits(ctx, starts[mid], room)
		if err != nil {
			return 0, nil, err
		}
		if ok {
			hi, toks = mid, t
		} else {
			lo = mid
		}
	}
	return starts[hi], toks, nil
}

// windowStarts lists the places a window may start, oldest first: the
// current start, then every later user message (the new one is last).
func (s *Session) windowStarts() []int {
	starts := []int{s.window}
	for i := s.window + 1; i < len(s.log); i++ {
		if s.log[i].Role != "assistant" {
			starts = append(starts, i)
		}
	}
	return starts
}

// fits lays out the conversation from log[start] as the turn of the last
// message (persona.Builder: the template, BOS, the rows) and reports
// whether its tokens after BOS fit in room positions. A cancelled ctx
// stops it.
func (s *Session) fits(ctx context.Context, start, room int) (*persona.Turn, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	sent := make([]llama.ChatMessage, 0, len(s.log)-start)
	for _, m := range s.log[start:] {
		sent = append(sent, m.sent())
	}
	t, err := s.b.Lay(s.last, persona.Conversation{System: s.o.System, Messages: sent})
	if err != nil {
		return nil, false, err
	}
	return t, len(t.Body()) <= room, nil
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
	req, err := s.personalize(ctx, msg)
	if err != nil {
		return llama.Result{}, err
	}
	logLen, window := len(s.log), s.window
	s.log = append(s.log, userMessage(msg, req))
	fail := func(err error) (llama.Result, error) {
		s.log, s.window = s.log[:logLen], min(window, logLen)
		return llama.Result{}, err
	}
	s.lastUser, s.last = msg, req

	reserve := 128
	if s.o.MaxTokens > 0 {
		reserve = min(reserve, s.o.MaxTokens)
	}
	if len(req.Rows) > 0 {
		// New rows are decoded beside the conversation before the old ones
		// go (see prime).
		reserve = max(reserve, s.nRows)
	}
	body := s.bodyPos
	if !s.primed {
		body = llama.Pos(s.layout().PromptAt())
	}
	turn, lcp, err := s.fit(ctx, int(body), reserve)
	if err != nil {
		return fail(err)
	}
	toks := turn.Body()
	// Free the cache after the shared prefix first: the previous answer may
	// have filled the window, and the new rows need room (see prime).
	if lcp < len(s.kvTokens) {
		if _, err := s.c.RemoveSeq(0, s.bodyPos+llama.Pos(lcp), -1); err != nil {
			return fail(err)
		}
		s.kvTokens = s.kvTokens[:lcp]
	}
	if err := s.prime(ctx, turn.Rows); err != nil {
		// The cache may be half-way through the swap of rows: start over
		// next time.
		_ = s.clear()
		return fail(err)
	}
	s.pos = s.bodyPos + llama.Pos(lcp)
	smp, err := s.sampler(turn)
	if err != nil {
		return fail(err)
	}
	if smp.Options().Grammar != "" {
		smp.Reset() // a grammar constrains each answer from its start
	}
	seq, err := llama.NewSequence(llama.SequenceOptions{Sampler: smp, MaxTokens: s.o.MaxTokens, Stop: s.stops})
	if err != nil {
		return fail(err)
	}
	defer seq.Close()
	res, err := s.c.GenerateSequence(ctx, seq, []llama.Input{llama.TokenInput(toks[lcp:]...)}, s.pos, 0, emit)
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
	s.log = append(s.log, Message{Role: "assistant", Content: strings.TrimSpace(res.Text), raw: res.Text})
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
