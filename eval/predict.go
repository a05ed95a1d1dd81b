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
	// Runtime is the Persona-Plug runtime; nil allows only the methods that
	// need no plug.
	Runtime *persona.Runtime
	Task    lamp.Task
	// K is the number of history items of the bm25 and recent methods
	// (0: persona.DefaultTopK).
	K int
	// MaxNew caps the generated tokens (0: DefaultMaxNew(Task)).
	MaxNew int
	// Chat wraps the prompt in the model's chat template: one user message
	// and the assistant's opening.
	Chat bool
	// Profile are the options of profile.FromQuestion; its Task is set to
	// Task.
	Profile profile.Options
	// ProfileSource names the questions file in embedding cache keys: a
	// question's profile is cached as ProfileSource + "#" + its id (the key
	// pplug generate uses for --profile FILE --question-id ID).
	ProfileSource string

	smp, smpPlug *llama.Sampler
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
	for _, s := range []**llama.Sampler{&p.smp, &p.smpPlug} {
		if *s != nil {
			errs = append(errs, (*s).Close())
			*s = nil
		}
	}
	return errors.Join(errs...)
}

func (p *Predictor) k() int {
	if p.K > 0 {
		return p.K
	}
	return persona.DefaultTopK
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

// cacheKey names a question's profile in the embedding cache.
func cacheKey(source string, q lamp.Question) string { return source + "#" + q.ID }

// input is a method's model input for a question: the rows to inject (nil
// for none) and the prompt's tokens, cut to leave reserve positions of the
// window for the answer. Generation (Predict) and the gold likelihood
// (GoldNLL) both lay out their input here, so they always score the same
// layout.
type input struct {
	rows []float32
	toks []llama.Token
	// truncated: the prompt was cut; noProfile: the question has no usable
	// history and the method fell back to the input alone.
	truncated, noProfile bool
}

func (p *Predictor) input(ctx context.Context, m Method, q lamp.Question, reserve int) (input, error) {
	var in input
	if !m.Valid() {
		return in, fmt.Errorf("unknown method %q", m)
	}
	if m.NeedsPlug() && p.Runtime == nil {
		return in, fmt.Errorf("method %s needs a Persona-Plug plug-in", m)
	}
	text := q.Input
	if m.NeedsProfile() {
		prof, err := p.profileOf(q)
		if err != nil {
			return in, err
		}
		if prof == nil {
			in.noProfile = true
		} else {
			query := p.Task.QueryPart(q.Input)
			switch m {
			case BM25:
				text = persona.RetrievalPrompt(prof.Items, persona.NewRetrieval(prof.Items).Top(query, p.k()), q.Input)
			case Recent:
				text = persona.RetrievalPrompt(prof.Items, persona.Recent(prof.Items, p.k()), q.Input)
			case PPlug, PPlugBM25:
				user, _, err := p.Runtime.PrepareUser(ctx, prof, cacheKey(p.ProfileSource, q), nil)
				if err != nil {
					return in, fmt.Errorf("prepare the persona: %w", err)
				}
				in.rows, _, err = p.Runtime.QueryRows(ctx, user, query)
				user.Close()
				if err != nil {
					return in, err
				}
				if m == PPlugBM25 {
					text = persona.RetrievalPrompt(prof.Items, persona.NewRetrieval(prof.Items).Top(query, p.plugK()), q.Input)
				}
			}
		}
	}
	toks, err := p.tokens(text)
	if err != nil {
		return in, err
	}
	nRows := 0
	if in.rows != nil {
		nRows = len(in.rows) / p.LLM.NEmbd()
	}
	// Leave room for the answer; a window too small for that still gets
	// whatever room there is.
	budget := p.Ctx.NCtxSeq() - nRows - min(reserve, p.Ctx.NCtxSeq()/2)
	in.toks, in.truncated = FitPrompt(p.LLM, toks, budget)
	if len(in.toks) == 0 && nRows == 0 {
		return in, errors.New("the input is empty and the model has no BOS token to start from")
	}
	if len(in.toks)+nRows >= p.Ctx.NCtxSeq() {
		return in, fmt.Errorf("%w: %d rows leave no room for the prompt in a window of %d", llama.ErrContextFull, nRows, p.Ctx.NCtxSeq())
	}
	return in, nil
}

// plugK is the number of BM25 items of the pplug+bm25 method: the number
// the plug was trained with (persona.Plug.RetrieveK), else 1 (the paper's
// combination).
func (p *Predictor) plugK() int {
	if p.Runtime != nil && p.Runtime.Plug != nil && p.Runtime.Plug.RetrieveK > 0 {
		return p.Runtime.Plug.RetrieveK
	}
	return 1
}

// Predict generates method m's answer to q.
func (p *Predictor) Predict(ctx context.Context, m Method, q lamp.Question) (Prediction, error) {
	var pred Prediction
	maxNew := p.maxNew()
	in, err := p.input(ctx, m, q, maxNew)
	if err != nil {
		return pred, err
	}
	pred.Truncated, pred.NoProfile = in.truncated, in.noProfile
	pred.PromptPositions = len(in.toks) + len(in.rows)/p.LLM.NEmbd()
	smp, err := p.sampler(m)
	if err != nil {
		return pred, err
	}
	smp.Reset()
	if err := p.Ctx.ClearMemory(); err != nil {
		return pred, err
	}
	res, err := p.Ctx.Generate(ctx, smp, persona.Inputs(p.LLM, in.rows, in.toks), 0, llama.GenerateOptions{MaxTokens: maxNew})
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
// input for q, the input Predict generates from, and the number of those
// tokens.
func (p *Predictor) GoldNLL(ctx context.Context, m Method, q lamp.Question, gold string) (float64, int, error) {
	_, target, err := persona.ExampleTokens(p.LLM, "", gold)
	if err != nil {
		return 0, 0, err
	}
	in, err := p.input(ctx, m, q, len(target))
	if err != nil {
		return 0, 0, err
	}
	if len(in.toks)+len(in.rows)/p.LLM.NEmbd()+len(target) > p.Ctx.NCtxSeq() {
		return 0, 0, fmt.Errorf("%w: the input and the gold of %d tokens do not fit a window of %d", llama.ErrContextFull, len(target), p.Ctx.NCtxSeq())
	}
	return persona.TargetNLLBiased(ctx, p.Ctx, in.rows, in.toks, target, p.bias(m))
}

// bias is method m's logit bias: the plug's (Plug.LogitBias) where its
// rows are injected, none otherwise.
func (p *Predictor) bias(m Method) map[llama.Token]float32 {
	if !m.NeedsPlug() || p.Runtime == nil {
		return nil
	}
	return p.Runtime.Plug.LogitBias(p.LLM)
}

// sampler is method m's greedy sampler, made on first use.
func (p *Predictor) sampler(m Method) (*llama.Sampler, error) {
	slot := &p.smp
	if m.NeedsPlug() {
		slot = &p.smpPlug
	}
	if *slot == nil {
		o := llama.SamplerOptions{Temp: 0, RepeatPenalty: 1}
		if m.NeedsPlug() && p.Runtime != nil {
			o.EOSBias = p.Runtime.Plug.EOSBias
		}
		s, err := p.LLM.NewSampler(o)
		if err != nil {
			return nil, err
		}
		*slot = s
	}
	return *slot, nil
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
