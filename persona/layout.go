package persona

import (
	"github.com/pplug/pplug/llama"
)

// Layout is the one input layout of Persona-Plug on a decoder, the same for
// generation (Inputs), chat (chat.Session) and training (train.Graph.Fill):
//
//	position  0        1 .. NInstr      NInstr+1      NInstr+2 ...
//	          [BOS]    [instruction]    [persona]     [prompt tokens ...]
//
// BOS is there when the model adds one (llama.Model.AddBOS); without it
// every position moves down by one. The rows take the place of the two
// special tokens the paper's reference code overwrites.
type Layout struct {
	BOS      bool // the model starts its inputs with BOS
	NInstr   int  // instruction rows
	NPersona int  // persona rows (one)
	NPrompt  int  // prompt tokens after BOS
}

// NewLayout lays out rows (NInstr instruction rows and NPersona persona
// rows) and a tokenized prompt for m. The prompt may start with BOS (as
// Tokenize with addSpecial gives it); the BOS goes first either way, and
// body is the prompt without it.
func NewLayout(m *llama.Model, nInstr, nPersona int, prompt []llama.Token) (l Layout, body []llama.Token) {
	l = Layout{BOS: m.AddBOS() && m.BOS() >= 0, NInstr: nInstr, NPersona: nPersona}
	body = prompt
	if l.BOS && len(body) > 0 && body[0] == m.BOS() {
		body = body[1:]
	}
	l.NPrompt = len(body)
	return l, body
}

// NRows is the number of injected rows.
func (l Layout) NRows() int { return l.NInstr + l.NPersona }

// RowsAt is the position of the first row (the first instruction row).
func (l Layout) RowsAt() int {
	if l.BOS {
		return 1
	}
	return 0
}

// InstrAt is the position of instruction row j.
func (l Layout) InstrAt(j int) int { return l.RowsAt() + j }

// PersonaAt is the position of the persona row.
func (l Layout) PersonaAt() int { return l.RowsAt() + l.NInstr }

// PromptAt is the position of the first prompt token after BOS.
func (l Layout) PromptAt() int { return l.RowsAt() + l.NRows() }

// Len is the number of positions of the whole input.
func (l Layout) Len() int { return l.PromptAt() + l.NPrompt }

// FitPrompt cuts a tokenized prompt to at most budget tokens by dropping
// its oldest tokens, keeping a leading BOS: for a decoder the text right
// before the answer (and a chat template's assistant opening) matters
// most. Training cuts its prompts the same way as generation. It reports
// whether it cut anything.
func FitPrompt(m *llama.Model, toks []llama.Token, budget int) ([]llama.Token, bool) {
	if len(toks) <= budget {
		return toks, false
	}
	budget = max(budget, 1)
	if m.AddBOS() && toks[0] == m.BOS() && budget > 1 {
		out := make([]llama.Token, 0, budget)
		out = append(out, toks[0])
		return append(out, toks[len(toks)-(budget-1):]...), true
	}
	return append([]llama.Token(nil), toks[len(toks)-budget:]...), true
}

// Inputs lays out a generation input the PPlug way (see Layout): BOS, the
// rows ([NRows][n_embd], instruction rows first), then the prompt's tokens.
// prompt is the tokenized prompt with the model's special tokens (as
// Tokenize with addSpecial gives it). Without rows the prompt goes in as
// it is.
//
// llama.cpp decodes token runs and row runs in separate batches, and every
// batch reads all the weights once, which dominates short prompts. So the
// prompt's tokens are turned into their embedding rows (exactly what the
// model would look up; see llama.Model.TokenEmbeddings) and the whole input
// goes in as one run of rows. Should the model's token table be unreadable,
// the input falls back to token and row runs.
func Inputs(m *llama.Model, rows []float32, prompt []llama.Token) []llama.Input {
	if len(rows) == 0 {
		return []llama.Input{llama.TokenInput(prompt...)}
	}
	d := m.NEmbd()
	l, body := NewLayout(m, 0, len(rows)/d, prompt)
	var head []llama.Token
	if l.BOS {
		head = []llama.Token{m.BOS()}
	}
	if emb, err := m.TokenEmbeddings(append(head, body...)); err == nil {
		all := make([]float32, 0, len(emb)+len(rows))
		all = append(append(all, emb[:len(head)*d]...), rows...)
		all = append(all, emb[len(head)*d:]...)
		return []llama.Input{llama.EmbdInput(all)}
	}
	var in []llama.Input
	if l.BOS {
		in = append(in, llama.TokenInput(head...))
	}
	in = append(in, llama.EmbdInput(rows))
	if len(body) > 0 {
		in = append(in, llama.TokenInput(body...))
	}
	return in
}
