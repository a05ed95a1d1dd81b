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

	smps map[float32]*llama.Sampler // greedy samplers by EOS bias
}

// Prediction is one generated answer.
type Prediction struct {
	Output string // the generated text, stripped
	// PromptPositions is the number of input positions (tokens and rows).
	PromptPositions int
	GenTokens       int
	// OutputTokens is the number of generated tokens in Output (the
	// end-of-generation token not counted).
	OutputTokens int
	Stop         llama.StopReason
	// Truncated is set when the prompt was cut to fit the window.
	Truncated bool
	// NoProfile is set when the question's profile had no usable item and
	// the method fell back to the input alone.
	NoProfile bool
}

// Close frees the samplers.
func (p *Predictor) Close() error {
	var errs []error
	for _, s := range p.smps {
		errs = append(errs, s.Close())
	}
	p.smps = nil
	return errors.Join(errs...)
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

// input is method m's turn for q (persona.Builder), the prompt cut to
// leave reserve positions of the window for the answer (at most half the
// window: a window too small for the answer still gets the rest).
// Generation (Predict) and the gold likelihood (GoldNLL) both take their
// input here, so they always score the same layout. noProfile: the
// question has no usable history and the method fell back to the input
// alone.
func (p *Predictor) input(ctx context.Context, m Method, q lamp.Question, reserve int) (turn *persona.Turn, noProfile bool, err error) {
	pz := p.personalizer(m)
	if err := pz.Check(); err != nil {
		return nil, false, err
	}
	var user *persona.Persona
	if m.NeedsProfile() {
		prof, err := p.profileOf(q)
		if err != nil {
			return nil, false, err
		}
		if prof == nil {
			noProfile = true
		} else if user, _, err = pz.Prepare(ctx, prof.Items, nil); err != nil {
			return nil, false, fmt.Errorf("prepare the persona: %w", err)
		}
		defer user.Close()
	}
	turn, err = p.builder(reserve).Build(ctx, user, persona.Conversation{Prompt: q.Input})
	return turn, noProfile, err
}

// builder lays out the questions' turns in the window, with the chat
// template when Chat.
func (p *Predictor) builder(reserve int) *persona.Builder {
	b := &persona.Builder{LLM: p.LLM, Window: p.Ctx.NCtxSeq(), Reserve: min(reserve, p.Ctx.NCtxSeq()/2), Cut: true}
	if p.Chat {
		t, _ := persona.ChooseTemplate(p.LLM, "") // no override: no error
		b.Template = &t
	}
	return b
}

// Predict generates method m's answer to q.
func (p *Predictor) Predict(ctx context.Context, m Method, q lamp.Question) (Prediction, error) {
	var pred Prediction
	maxNew := p.maxNew()
	in, noProfile, err := p.input(ctx, m, q, maxNew)
	if err != nil {
		return pred, err
	}
	pred.Truncated, pred.NoProfile = in.Truncated, noProfile
	pred.PromptPositions = in.Positions()
	smp, err := p.sampler(in)
	if err != nil {
		return pred, err
	}
	smp.Reset()
	if err := p.Ctx.ClearMemory(); err != nil {
		return pred, err
	}
	res, err := p.Ctx.Generate(ctx, smp, in.Inputs(), 0, llama.GenerateOptions{MaxTokens: maxNew})
	if err != nil && !errors.Is(err, llama.ErrContextFull) {
		return pred, err
	}
	pred.Output = lamp.PyStrip(res.Text)
	pred.GenTokens = res.Stats.GenTokens
	pred.OutputTokens = len(res.Tokens)
	pred.Stop = res.Stop
	return pred, nil
}

// GoldNLL is the summed negative log-likelihood (nats) of gold's tokens
// and the end-of-generation token (persona.ExampleTokens) after method m's
// input for q, the input Predict generates from (with its logit bias), and
// the number of those tokens.
func (p *Predictor) GoldNLL(ctx context.Context, m Method, q lamp.Question, gold string) (float64, int, error) {
	_, target, err := persona.ExampleTokens(p.LLM, "", gold)
	if err != nil {
		return 0, 0, err
	}
	in, _, err := p.input(ctx, m, q, len(target))
	if err != nil {
		return 0, 0, err
	}
	if in.Positions()+len(target) > p.Ctx.NCtxSeq() {
		return 0, 0, fmt.Errorf("%w: the input and the gold of %d tokens do not fit a window of %d", llama.ErrContextFull, len(target), p.Ctx.NCtxSeq())
	}
	return in.TargetNLL(ctx, p.Ctx, target)
}

// sampler is the greedy sampler of a turn (with its EOS bias, see
// persona.Turn.SamplerOptions), made on first use.
func (p *Predictor) sampler(t *persona.Turn) (*llama.Sampler, error) {
	if s := p.smps[t.EOSBias]; s != nil {
		return s, nil
	}
	s, err := p.LLM.NewSampler(t.SamplerOptions(llama.SamplerOptions{Temp: 0, RepeatPenalty: 1}))
	if err != nil {
		return nil, err
	}
	if p.smps == nil {
		p.smps = map[float32]*llama.Sampler{}
	}
	p.smps[t.EOSBias] = s
	return s, nil
}
