package eval

import (
	"context"
	"errors"
	"fmt"

	"github.com/pplug/pplug/lamp"
	"github.com/pplug/pplug/llama"
	"github.com/pplug/pplug/persona"
	"github.com/pplug/pplug/persona/profile"
)

// DefaultMaxNew is the generation budget of a task, as the paper's: 128
// new tokens, 10 for LaMP-3 (a rating).
func DefaultMaxNew(task lamp.Task) int {
	if task.Number() == 3 {
		return 10
	}
	return 128
}

// Predictor generates one method's prediction for a question: greedy
// decoding of the (personalised) input until an end-of-generation token or
// MaxNew tokens. It reuses one llama.Context, cleared for every question.
// A Predictor is not safe for concurrent use.
type Predictor struct {
	LLM *llama.Model
	Ctx *llama.Context
	// Personalizer holds what the methods share (the plug, encoder,
	// backend and cache for the PPlug methods; K); each method runs with
	// its own copy (WithMethod). nil allows only the methods that need no
	// plug, with K items.
	Personalizer *persona.Personalizer
	Task         lamp.Task
	// K is the number of history items of the bm25 and recent methods
	// when there is no Personalizer (0: persona.DefaultTopK).
	K int
	// MaxNew caps the generated tokens (0: DefaultMaxNew(Task)).
	MaxNew int
	// Chat wraps the prompt in the model's chat template: one user message
	// and the assistant's opening.
	Chat bool
	// Profile are the options of profile.FromQuestion; its Task is set to
	// Task.
	Profile profile.Options
	// ProfileSource names the questions file in embedding cache keys (see
	// persona.ProfileKey): a question's profile is cached under the key
	// pplug generate uses for --profile FILE --question-id ID.
	ProfileSource string

	smp *llama.Sampler
}

// Prediction is one generated answer.
type Prediction struct {
	Output string // the generated text, stripped
	// PromptPositions is the number of input positions (tokens and rows).
	PromptPositions int
	GenTokens       int
	Stop            llama.StopReason
	// Truncated is set when the prompt was cut to fit the window.
	Truncated bool
	// NoProfile is set when the question's profile had no usable item and
	// the method fell back to the input alone.
	NoProfile bool
}

// Close frees the sampler.
func (p *Predictor) Close() error {
	if p.smp != nil {
		err := p.smp.Close()
		p.smp = nil
		return err
	}
	return nil
}

func (p *Predictor) k() int {
	if p.Personalizer != nil && p.Personalizer.K > 0 {
		return p.Personalizer.K
	}
	if p.K > 0 {
		return p.K
	}
	return persona.DefaultTopK
}

// personalizer is the Personalizer of method m.
func (p *Predictor) personalizer(m Method) *persona.Personalizer {
	var pz *persona.Personalizer
	if p.Personalizer != nil {
		pz = p.Personalizer.WithMethod(m)
	} else {
		pz = &persona.Personalizer{Method: m}
	}
	pz.LLM, pz.K, pz.Query = p.LLM, p.k(), p.Task.QueryPart
	return pz
}

func (p *Predictor) maxNew() int {
	if p.MaxNew > 0 {
		return p.MaxNew
	}
	return DefaultMaxNew(p.Task)
}

// profileOf builds the question's profile; nil (and no error) when it has
// no usable item.
func (p *Predictor) profileOf(q lamp.Question) (*profile.Profile, error) {
	opts := p.Profile
	opts.Task = p.Task
	opts.QuestionID = ""
	prof, err := profile.FromQuestion(q, opts)
	if errors.Is(err, profile.ErrEmpty) || errors.Is(err, profile.ErrNoUsableItems) {
		return nil, nil
	}
	return prof, err
}

// Predict generates method m's answer to q.
func (p *Predictor) Predict(ctx context.Context, m Method, q lamp.Question) (Prediction, error) {
	var pred Prediction
	pz := p.personalizer(m)
	if err := pz.Check(); err != nil {
		return pred, err
	}
	req := persona.Request{Method: persona.MethodNone, Prompt: q.Input}
	if m.NeedsProfile() {
		prof, err := p.profileOf(q)
		if err != nil {
			return pred, err
		}
		if prof == nil {
			pred.NoProfile = true
		} else {
			user, _, err := pz.Prepare(ctx, prof.Items, persona.ProfileKey(p.ProfileSource, q.ID), nil)
			if err != nil {
				return pred, fmt.Errorf("prepare the persona: %w", err)
			}
			req, err = user.Personalize(ctx, q.Input)
			user.Close()
			if err != nil {
				return pred, err
			}
		}
	}
	toks, err := p.tokens(req.Prompt)
	if err != nil {
		return pred, err
	}
	nRows := len(req.Rows) / p.LLM.NEmbd()
	maxNew := p.maxNew()
	// Leave room for the answer; a window too small for that still gets
	// whatever room there is.
	budget := p.Ctx.NCtxSeq() - nRows - min(maxNew, p.Ctx.NCtxSeq()/2)
	toks, pred.Truncated = FitPrompt(p.LLM, toks, budget)
	if len(toks) == 0 && nRows == 0 {
		return pred, errors.New("the input is empty and the model has no BOS token to start from")
	}
	if len(toks)+nRows >= p.Ctx.NCtxSeq() {
		return pred, fmt.Errorf("%w: %d rows leave no room for the prompt in a window of %d", llama.ErrContextFull, nRows, p.Ctx.NCtxSeq())
	}
	in := persona.Inputs(p.LLM, req.Rows, toks)
	pred.PromptPositions = len(toks) + nRows
	if p.smp == nil {
		if p.smp, err = llama.NewSampler(llama.SamplerOptions{Temp: 0, RepeatPenalty: 1}); err != nil {
			return pred, err
		}
	}
	p.smp.Reset()
	if err := p.Ctx.ClearMemory(); err != nil {
		return pred, err
	}
	res, err := p.Ctx.Generate(ctx, p.smp, in, 0, llama.GenerateOptions{MaxTokens: maxNew})
	if err != nil && !errors.Is(err, llama.ErrContextFull) {
		return pred, err
	}
	pred.Output = lamp.PyStrip(res.Text)
	pred.GenTokens = res.Stats.GenTokens
	pred.Stop = res.Stop
	return pred, nil
}

// tokens tokenizes the prompt text, in the chat template when asked.
func (p *Predictor) tokens(text string) ([]llama.Token, error) {
	if !p.Chat {
		return p.LLM.Tokenize(text, true, true)
	}
	full, err := p.LLM.ApplyChatTemplate([]llama.ChatMessage{{Role: "user", Content: text}}, true)
	if err != nil {
		return nil, err
	}
	toks, err := p.LLM.Tokenize(full, false, true)
	if err != nil {
		return nil, err
	}
	// The template may or may not write BOS itself.
	if bos := p.LLM.BOS(); p.LLM.AddBOS() && bos >= 0 && (len(toks) == 0 || toks[0] != bos) {
		toks = append([]llama.Token{bos}, toks...)
	}
	return toks, nil
}

// FitPrompt cuts a tokenized prompt to at most budget tokens by dropping
// its oldest tokens, keeping a leading BOS: for a decoder the text right
// before the answer (and a chat template's assistant opening) matters
// most. It reports whether it cut anything.
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
