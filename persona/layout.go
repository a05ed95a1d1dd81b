package persona

import (
	"github.com/pplug/pplug/llama"
)

// Layout is the one input layout of Persona-Plug on a decoder, the same for
// generation (Inputs), eval, training (train.Graph.Fill) and chat
// (chat.Session, which has no context):
//
//	position  0      1 ..           C+1 .. C+NInstr   C+NInstr+1 ..   C+NRows+1 ...
//	          [BOS]  [context ...]  [instruction]     [persona]       [prompt tokens ...]
//
// BOS is there when the model adds one (llama.Model.AddBOS); without it
// every position moves down by one. The rows take the place of the two
// special tokens the paper's reference code overwrites. The context (C =
// NContext tokens) is the part of the prompt that goes before the rows:
// the retrieved items of pplug+bm25 (Request.Context), so that the rows
// sit right before the input in every layout, as in PPlug alone; it is
// empty otherwise.
type Layout struct {
	BOS      bool // the model starts its inputs with BOS
	NContext int  // prompt tokens after BOS that go before the rows
	NInstr   int  // instruction rows
	NPersona int  // persona rows
	NPrompt  int  // prompt tokens after the rows
}

// NewLayout lays out rows (NInstr instruction rows and NPersona persona
// rows) and a tokenized prompt for m, the rows after the prompt's first at
// tokens (not counting BOS; 0: right after BOS). The prompt may start with
// BOS (as Tokenize with addSpecial gives it); the BOS goes first either
// way, and body is the prompt without it (context and prompt tokens).
func NewLayout(m *llama.Model, nInstr, nPersona int, prompt []llama.Token, at int) (l Layout, body []llama.Token) {
	l = Layout{BOS: m.AddBOS() && m.BOS() >= 0, NInstr: nInstr, NPersona: nPersona}
	body = prompt
	if l.BOS && len(body) > 0 && body[0] == m.BOS() {
		body = body[1:]
	}
	l.NContext = min(max(at, 0), len(body))
	l.NPrompt = len(body) - l.NContext
	return l, body
}

// NRows is the number of injected rows.
func (l Layout) NRows() int { return l.NInstr + l.NPersona }

// ContextAt is the position of the first context token.
func (l Layout) ContextAt() int {
	if l.BOS {
		return 1
	}
	return 0
}

// RowsAt is the position of the first row (the first instruction row).
func (l Layout) RowsAt() int { return l.ContextAt() + l.NContext }

// InstrAt is the position of instruction row j.
func (l Layout) InstrAt(j int) int { return l.RowsAt() + j }

// PersonaAt is the position of the persona row.
func (l Layout) PersonaAt() int { return l.RowsAt() + l.NInstr }

// PromptAt is the position of the first prompt token after the rows.
func (l Layout) PromptAt() int { return l.RowsAt() + l.NRows() }

// Len is the number of positions of the whole input.
func (l Layout) Len() int { return l.PromptAt() + l.NPrompt }

// BodyAt is the position of the prompt's body token i (i counts from the
// first token after BOS, context tokens first): the rows sit between the
// context and the rest.
func (l Layout) BodyAt(i int) int {
	if i < l.NContext {
		return l.ContextAt() + i
	}
	return l.PromptAt() + i - l.NContext
}

// FitPrompt cuts a tokenized prompt to at most budget tokens by dropping
// its oldest tokens, keeping a leading BOS: for a decoder the text right
// before the answer (and a chat template's assistant opening) matters
// most. Training cuts its prompts the same way as generation. It reports
// whether it cut anything.
func FitPrompt(m *llama.Model, toks []llama.Token, budget int) ([]llama.Token, bool) {
	out, _, cut := FitPromptAt(m, toks, 0, budget)
	return out, cut
}

// FitPromptAt is FitPrompt for a prompt whose rows go after its first at
// tokens (see NewLayout): the context is the oldest text, so it loses its
// tokens first, and the rows' place moves with the cut.
func FitPromptAt(m *llama.Model, toks []llama.Token, at, budget int) ([]llama.Token, int, bool) {
	if len(toks) <= budget {
		return toks, at, false
	}
	budget = max(budget, 1)
	var out []llama.Token
	if m.AddBOS() && toks[0] == m.BOS() && budget > 1 {
		out = make([]llama.Token, 0, budget)
		out = append(out, toks[0])
		out = append(out, toks[len(toks)-(budget-1):]...)
	} else {
		out = append([]llama.Token(nil), toks[len(toks)-budget:]...)
	}
	return out, max(at-(len(toks)-len(out)), 0), true
}

// Inputs lays out a generation input the PPlug way (see Layout): BOS, the
// rows ([NRows][n_embd], instruction rows first), then the prompt's tokens.
// prompt is the tokenized prompt with the model's special tokens (as
// Tokenize with addSpecial gives it). Without rows the prompt goes in as
// it is.
func Inputs(m *llama.Model, rows []float32, prompt []llama.Token) []llama.Input {
	return InputsAt(m, rows, prompt, 0)
}

// InputsAt is Inputs with the rows after the prompt's first at tokens
// (after BOS; see NewLayout): BOS, the context, the rows, the rest.
//
// llama.cpp decodes token runs and row runs in separate batches, and every
// batch reads all the weights once, which dominates short prompts. So the
// prompt's tokens are turned into their embedding rows (exactly what the
// model would look up; see llama.Model.TokenEmbeddings) and the whole input
// goes in as one run of rows. Should the model's token table be unreadable,
// the input falls back to token and row runs.
func InputsAt(m *llama.Model, rows []float32, prompt []llama.Token, at int) []llama.Input {
	if len(rows) == 0 {
		return []llama.Input{llama.TokenInput(prompt...)}
	}
	d := m.NEmbd()
	l, body := NewLayout(m, 0, len(rows)/d, prompt, at)
	var head []llama.Token // BOS and the context: what goes before the rows
	if l.BOS {
		head = []llama.Token{m.BOS()}
	}
	head = append(head, body[:l.NContext]...)
	tail := body[l.NContext:]
	if emb, err := m.TokenEmbeddings(append(head, tail...)); err == nil {
		all := make([]float32, 0, len(emb)+len(rows))
		all = append(append(all, emb[:len(head)*d]...), rows...)
		all = append(all, emb[len(head)*d:]...)
		return []llama.Input{llama.EmbdInput(all)}
	}
	var in []llama.Input
	if len(head) > 0 {
		in = append(in, llama.TokenInput(head...))
	}
	in = append(in, llama.EmbdInput(rows))
	if len(tail) > 0 {
		in = append(in, llama.TokenInput(tail...))
	}
	return in
}
