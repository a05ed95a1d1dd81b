package persona

import (
	"context"
	"errors"
	"fmt"

	"github.com/pplug/pplug/llama"
)

// Conversation is what a turn answers: a single prompt, or chat messages
// in a template.
type Conversation struct {
	// Prompt is a single prompt; it is read when Messages is empty (with a
	// template it becomes one user message).
	Prompt string
	// System is the system prompt of a templated conversation ("": none).
	System string
	// Messages are a chat conversation, oldest first; the last user
	// message is the one personalised and answered.
	Messages []llama.ChatMessage
}

// lastUser is the index of the message the turn answers (-1: Prompt).
func (c Conversation) lastUser() int {
	for i := len(c.Messages) - 1; i >= 0; i-- {
		if c.Messages[i].Role == "user" {
			return i
		}
	}
	return -1
}

// input is the text the persona personalises: the last user message, or
// the prompt.
func (c Conversation) input() string {
	if i := c.lastUser(); i >= 0 {
		return c.Messages[i].Content
	}
	return c.Prompt
}

// ErrEmptyInput means a turn has no position at all: an empty prompt and
// no BOS token to start from.
var ErrEmptyInput = errors.New("the input is empty and the model has no BOS token to start from")

// Builder turns a user and a conversation into a decode-ready Turn: the
// one owner of the hand-off between personalisation and decoding.
// generate, chat, serve, eval (predictions, gold NLL, persona NLL),
// training's prompts and bench all build their inputs here.
type Builder struct {
	LLM *llama.Model
	// Template renders the conversation (see Template; a single prompt is
	// one user message). nil: no template, the prompt as it is (a
	// conversation of messages then needs one).
	Template *Template
	// Window is the context window in positions (0: no window). A turn
	// must leave Reserve positions of it for the answer.
	Window, Reserve int
	// Cut makes a prompt longer than its room lose its oldest tokens
	// (FitPromptAt); without it such a prompt fails with
	// llama.ErrContextFull.
	Cut bool
	// MaxPrompt bounds the prompt's tokens, BOS included (0: no bound):
	// training's input limit, cut the way Cut cuts.
	MaxPrompt int
	// Plug, when set, is the plug whose rows the caller injects itself
	// (training, whose graph computes them): a request without rows is
	// laid out with the place of the plug's rows (Turn.Layout).
	Plug *Plug
}

// Turn is one decode-ready turn: the personalisation (the embedded
// Request: method, prompt text, context, rows, weights, retrieved items,
// EOS bias), the text the model reads, its tokens cut to the window, where
// BOS, the rows and the tokens sit (Layout), and the template's stop
// strings.
type Turn struct {
	Request
	// Text is the rendered input the model reads (the template applied).
	Text string
	// Tokens are the input tokens, BOS first when the model adds one; the
	// rows go after the first At of them after BOS (Layout).
	Tokens []llama.Token
	At     int
	Layout Layout
	// Truncated is set when the prompt was cut to fit.
	Truncated bool
	// Stops are the template's stop strings (the plain fallback's).
	Stops []string
	// Query is the query embedding behind the rows (nil without rows).
	Query []float32

	m    *llama.Model
	user *Persona
}

// Build personalises the conversation's input for user (nil: no user, the
// input alone) and lays it out (Lay).
func (b *Builder) Build(ctx context.Context, user *Persona, conv Conversation) (*Turn, error) {
	req, q, err := user.personalize(ctx, conv.input())
	if err != nil {
		return nil, err
	}
	t, err := b.Lay(req, conv)
	if err != nil {
		return nil, err
	}
	t.Query, t.user = q, user
	return t, nil
}

// Lay lays out a request made for the conversation's input: the input
// replaced by the request's prompt text (the retrieved items before it),
// rendered in the template, tokenized with BOS, cut to the window, with
// the rows in their place (Layout). Without a template the rows go after
// the request's Context; in a template they open the conversation.
func (b *Builder) Lay(req Request, conv Conversation) (*Turn, error) {
	t := &Turn{Request: req, m: b.LLM}
	var err error
	if b.Template != nil {
		err = b.render(t, conv)
	} else if len(conv.Messages) > 0 {
		return nil, errors.New("persona: a conversation of messages needs a chat template")
	} else {
		t.Text = req.Prompt
		t.Tokens, t.At, err = b.tokenize(req)
	}
	if err != nil {
		return nil, err
	}
	if err := b.fit(t); err != nil {
		return nil, err
	}
	t.relayout()
	if b.Plug != nil && len(t.Rows) == 0 {
		t.Layout, _ = NewLayout(b.LLM, b.Plug.NInstr, b.Plug.PersonaRows(), t.Tokens, t.At)
	}
	return t, nil
}

// tokenize tokenizes a request without a template (Request.Tokenize),
// splitting its context from the rest when the caller injects the plug's
// rows.
func (b *Builder) tokenize(req Request) ([]llama.Token, int, error) {
	if b.Plug != nil && len(req.Rows) == 0 {
		return PromptTokens(b.LLM, req.Context, req.Prompt)
	}
	return req.Tokenize(b.LLM)
}

// render renders the conversation in the template with the request's text
// in place of the input, and tokenizes it with BOS (which a template may
// write itself).
func (b *Builder) render(t *Turn, conv Conversation) error {
	msg := t.Prompt
	if msg == "" {
		msg = conv.input() // a request of no input: the conversation's own
	}
	msgs := append([]llama.ChatMessage(nil), conv.Messages...)
	if i := conv.lastUser(); i >= 0 {
		msgs[i].Content = msg
	} else {
		msgs = []llama.ChatMessage{{Role: "user", Content: msg}}
	}
	text, err := b.Template.Render(conv.System, msgs, true)
	if err != nil {
		return err
	}
	toks, err := b.LLM.Tokenize(text, false, true)
	if err != nil {
		return err
	}
	if bos := b.LLM.BOS(); b.LLM.AddBOS() && bos >= 0 && (len(toks) == 0 || toks[0] != bos) {
		toks = append([]llama.Token{bos}, toks...)
	}
	t.Text, t.Tokens, t.At, t.Stops = text, toks, 0, b.Template.Stops()
	return nil
}

// fit cuts the prompt to MaxPrompt and, with Cut, to the window's room,
// and checks that the turn fits the window.
func (b *Builder) fit(t *Turn) error {
	var cut bool
	if b.MaxPrompt > 0 {
		t.Tokens, t.At, cut = FitPromptAt(b.LLM, t.Tokens, t.At, b.MaxPrompt)
		t.Truncated = t.Truncated || cut
	}
	nRows := t.nRows()
	if b.Window > 0 && b.Cut {
		t.Tokens, t.At, cut = FitPromptAt(b.LLM, t.Tokens, t.At, b.Window-nRows-b.Reserve)
		t.Truncated = t.Truncated || cut
	}
	n, need := len(t.Tokens)+nRows, len(t.Tokens)+nRows
	if !b.Cut {
		need += b.Reserve // a cut prompt left the room already
	}
	switch {
	case n == 0:
		return ErrEmptyInput
	case b.Window > 0 && need >= b.Window:
		return fmt.Errorf("%w: the input has %d positions (%d of them rows) and the context window %d", llama.ErrContextFull, n, nRows, b.Window)
	}
	return nil
}

func (t *Turn) nRows() int {
	if d := t.m.NEmbd(); d > 0 {
		return len(t.Rows) / d
	}
	return 0
}

// relayout sets Layout from the tokens and rows.
func (t *Turn) relayout() {
	nRows := t.nRows()
	t.Layout, _ = NewLayout(t.m, t.NInstr, nRows-t.NInstr, t.Tokens, t.At)
}

// Body are the tokens after BOS (context tokens first).
func (t *Turn) Body() []llama.Token {
	_, body := NewLayout(t.m, 0, 0, t.Tokens, t.At)
	return body
}

// Inputs are the turn laid out for llama.Context.DecodeInputs and
// Generate (InputsAt): BOS, the context, the rows, the rest.
func (t *Turn) Inputs() []llama.Input { return InputsAt(t.m, t.Rows, t.Tokens, t.At) }

// Positions is the number of input positions (tokens and rows).
func (t *Turn) Positions() int { return len(t.Tokens) + t.nRows() }

// SamplerOptions are o with the turn's EOS bias (the plug's learned length
// prior where its rows are injected).
func (t *Turn) SamplerOptions(o llama.SamplerOptions) llama.SamplerOptions {
	o.EOSBias = t.EOSBias
	return o
}

// LogitBias is the turn's EOS bias as a logit bias (nil without one), for
// the likelihoods (TargetNLLBiased).
func (t *Turn) LogitBias() map[llama.Token]float32 { return t.Request.LogitBias(t.m) }

// TargetNLL is the summed negative log-likelihood of target after the
// turn, under the distribution the turn generates from (its logit bias),
// decoded in c from position 0, and the number of target tokens.
func (t *Turn) TargetNLL(ctx context.Context, c *llama.Context, target []llama.Token) (float64, int, error) {
	return TargetNLLBiased(ctx, c, t.Rows, t.Tokens, t.At, target, t.LogitBias())
}

// WithRows is the turn with other rows of the same plug in place of its
// own (another user's persona for the same query), or with none (nil: no
// rows and no EOS bias): the same tokens and cut, for comparing personas.
func (t *Turn) WithRows(rows []float32, eosBias float32) *Turn {
	c := *t
	c.Rows, c.Weights, c.EOSBias = rows, nil, eosBias
	if len(rows) == 0 {
		c.Rows, c.NInstr, c.EOSBias = nil, 0, 0
	}
	c.relayout()
	return &c
}

// Top are the k history items the turn's rows weigh most, highest first
// (none without rows).
func (t *Turn) Top(k int) []Weighted {
	if t.user == nil || t.Weights == nil {
		return nil
	}
	return t.user.Top(t.Weights, k)
}

// Slot is one input position, as --verbose-prompt lists them.
type Slot struct {
	Pos   int
	Kind  string      // "BOS", "context", "instruction", "persona" or "prompt"
	Token llama.Token // the token (-1 for a row)
	Row   int         // the row's number among its kind, from 1 (0 for a token)
}

// Slots lists the turn's input position by position: what the model reads
// at each (the explain data of --verbose-prompt).
func (t *Turn) Slots() []Slot {
	l, body := NewLayout(t.m, t.Layout.NInstr, t.Layout.NPersona, t.Tokens, t.At)
	var out []Slot
	if l.BOS {
		out = append(out, Slot{Pos: 0, Kind: "BOS", Token: t.m.BOS()})
	}
	kind := "context"
	if l.NRows() == 0 {
		kind = "prompt"
	}
	for i, tk := range body[:l.NContext] {
		out = append(out, Slot{Pos: l.BodyAt(i), Kind: kind, Token: tk})
	}
	for j := range l.NInstr {
		out = append(out, Slot{Pos: l.InstrAt(j), Kind: "instruction", Token: -1, Row: j + 1})
	}
	for j := range l.NPersona {
		out = append(out, Slot{Pos: l.PersonaAt() + j, Kind: "persona", Token: -1, Row: j + 1})
	}
	for i, tk := range body[l.NContext:] {
		out = append(out, Slot{Pos: l.PromptAt() + i, Kind: "prompt", Token: tk})
	}
	return out
}
