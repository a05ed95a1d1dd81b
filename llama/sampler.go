package llama

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/pplug/pplug/cgo"
)

// SeedRandom asks for a random seed (llama.cpp's LLAMA_DEFAULT_SEED).
const SeedRandom = math.MaxUint32

// SamplerOptions configure NewSampler. Names follow llama.cpp's flags.
type SamplerOptions struct {
	Temp             float32 // --temp; <= 0 samples greedily
	TopK             int     // --top-k; <= 0 disables
	TopP             float32 // --top-p; >= 1 disables
	MinP             float32 // --min-p; <= 0 disables
	RepeatPenalty    float32 // --repeat-penalty; 1 disables
	RepeatLastN      int     // --repeat-last-n; tokens the penalties look back
	FrequencyPenalty float32
	PresencePenalty  float32
	Seed             uint32 // --seed; SeedRandom picks one

	// Grammar constrains the output to a GBNF grammar (--grammar); its
	// start symbol is GrammarRoot ("root" when empty). It needs the
	// model's vocabulary: build the sampler with Model.NewSampler.
	Grammar     string
	GrammarRoot string

	// EOSBias is added to the logit of the model's EOS token before any
	// other stage but the grammar (llama.cpp's --logit-bias EOS+BIAS); a
	// plug-in's learned length prior goes here. It needs the model's
	// vocabulary: build the sampler with Model.NewSampler.
	EOSBias float32
}

// TokenBias is a bias added to one token's logit (see
// Model.NewBiasedSampler).
type TokenBias struct {
	Token Token
	Bias  float32
}

// DefaultSamplerOptions are llama.cpp's defaults.
func DefaultSamplerOptions() SamplerOptions {
	return SamplerOptions{
		Temp: 0.8, TopK: 40, TopP: 0.95, MinP: 0.05,
		RepeatPenalty: 1.0, RepeatLastN: 64, Seed: SeedRandom,
	}
}

// Validate checks the options' ranges.
func (o SamplerOptions) Validate() error {
	switch {
	case math.IsNaN(float64(o.Temp)) || math.IsInf(float64(o.Temp), 0):
		return fmt.Errorf("temperature %v is not a number", o.Temp)
	case o.TopP < 0 || o.TopP > 1 || math.IsNaN(float64(o.TopP)):
		return fmt.Errorf("top-p %v is outside [0, 1]", o.TopP)
	case o.MinP < 0 || o.MinP > 1 || math.IsNaN(float64(o.MinP)):
		return fmt.Errorf("min-p %v is outside [0, 1]", o.MinP)
	case o.RepeatPenalty <= 0 || math.IsNaN(float64(o.RepeatPenalty)):
		return fmt.Errorf("repeat penalty %v must be positive", o.RepeatPenalty)
	case o.RepeatLastN < -1:
		return fmt.Errorf("repeat-last-n %d must be >= -1", o.RepeatLastN)
	case isBad(o.FrequencyPenalty) || isBad(o.PresencePenalty):
		return fmt.Errorf("frequency and presence penalties must be numbers")
	case o.FrequencyPenalty < -2 || o.FrequencyPenalty > 2 || o.PresencePenalty < -2 || o.PresencePenalty > 2:
		return fmt.Errorf("frequency and presence penalties must be in [-2, 2] (as OpenAI's)")
	}
	if isBad(o.EOSBias) {
		return fmt.Errorf("EOS bias %v is not a number", o.EOSBias)
	}
	if o.Grammar != "" {
		return ValidateGrammar(o.Grammar, o.GrammarRoot)
	}
	return nil
}

// checkLogitBias checks biases: finite, each token once, in the vocabulary.
func checkLogitBias(lb []TokenBias, nVocab int) error {
	seen := make(map[Token]bool, len(lb))
	for _, b := range lb {
		switch {
		case isBad(b.Bias):
			return fmt.Errorf("logit bias %v of token %d is not a finite number", b.Bias, b.Token)
		case b.Token < 0 || int(b.Token) >= nVocab:
			return fmt.Errorf("logit bias for token %d: the vocabulary has tokens 0 to %d", b.Token, nVocab-1)
		case seen[b.Token]:
			return fmt.Errorf("logit bias for token %d is given twice", b.Token)
		}
		seen[b.Token] = true
	}
	return nil
}

// Greedy reports whether the options pick the most likely token.
func (o SamplerOptions) Greedy() bool { return o.Temp <= 0 }

// ErrInvalidGrammar is returned for a grammar llama.cpp cannot parse or
// use (see ValidateGrammar and GrammarError), and, wrapped with
// ErrGrammarDeadEnd, for one that allows no token while generating.
var ErrInvalidGrammar = errors.New("invalid grammar")

// ErrGrammarDeadEnd means the grammar allows no token at a point of the
// generation (say [^\x00-\U0010FFFF], or a character no token spells):
// sampling stops there instead of aborting in llama.cpp.
var ErrGrammarDeadEnd = fmt.Errorf("%w: %w", ErrInvalidGrammar, cgo.ErrGrammarDeadEnd)

func isBad(f float32) bool { return math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) }

// Sampler is a llama.cpp sampler chain. Its methods lock; it serves one
// generation at a time.
type Sampler struct {
	mu    sync.Mutex
	s     *cgo.Sampler
	opts  SamplerOptions
	model *Model // pinned while a grammar refers to its vocabulary
}

// NewSampler builds the chain in llama.cpp's order: penalties, top-k,
// top-p, min-p, temperature, then the random draw (or greedy). Options with
// a Grammar need the model: use Model.NewSampler.
func NewSampler(o SamplerOptions) (*Sampler, error) {
	if o.Grammar != "" {
		return nil, errors.New("a grammar needs the model's vocabulary: build the sampler with Model.NewSampler")
	}
	if o.EOSBias != 0 {
		return nil, errors.New("an EOS bias needs the model's vocabulary: build the sampler with Model.NewSampler")
	}
	return newSampler(nil, o, nil)
}

// NewSampler builds a sampler chain for m (see the package function); a
// Grammar in o comes first in the chain, so every other stage only sees
// tokens the grammar allows. The model stays open until the sampler is
// closed.
func (m *Model) NewSampler(o SamplerOptions) (*Sampler, error) {
	return newSampler(m, o, nil)
}

// NewBiasedSampler is NewSampler with logit biases added to their tokens'
// logits after the grammar (llama.cpp's --logit-bias, OpenAI's
// logit_bias). Each token must be in the vocabulary and appear once; the
// biases must be finite, so that a grammar's -inf stays below every biased
// token and the grammar always keeps a token it accepts. (The biases are
// not options, so that SamplerOptions stays comparable.)
func (m *Model) NewBiasedSampler(o SamplerOptions, lb []TokenBias) (*Sampler, error) {
	if err := checkLogitBias(lb, m.NVocab()); err != nil {
		return nil, err
	}
	return newSampler(m, o, lb)
}

func newSampler(m *Model, o SamplerOptions, lb []TokenBias) (*Sampler, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	cgo.Init()
	s := cgo.NewSamplerChain()
	smp := &Sampler{s: s, opts: o}
	if o.Grammar != "" {
		cm, err := m.acquire()
		if err != nil {
			s.Free()
			return nil, err
		}
		smp.model = m
		root := o.GrammarRoot
		if root == "" {
			root = "root"
		}
		err = validateGrammar(o.Grammar, root, cm.NVocab())
		if err == nil {
			if err = s.AddGrammar(cm, o.Grammar, root); err != nil {
				err = fmt.Errorf("%w: %w (start symbol %q)", ErrInvalidGrammar, err, root)
			}
		}
		if err != nil {
			s.Free()
			m.release()
			return nil, err
		}
	}
	if err := addBiases(s, m, o.EOSBias, lb); err != nil {
		smp.Close()
		return nil, err
	}
	if o.RepeatPenalty != 1 || o.FrequencyPenalty != 0 || o.PresencePenalty != 0 {
		s.AddPenalties(int32(o.RepeatLastN), o.RepeatPenalty, o.FrequencyPenalty, o.PresencePenalty)
	}
	if o.Greedy() {
		s.AddGreedy()
	} else {
		if o.TopK > 0 {
			s.AddTopK(int32(o.TopK))
		}
		if o.TopP > 0 && o.TopP < 1 {
			s.AddTopP(o.TopP)
		}
		if o.MinP > 0 {
			s.AddMinP(o.MinP)
		}
		s.AddTemp(o.Temp)
		s.AddDist(o.Seed)
	}
	runtime.SetFinalizer(smp, func(s *Sampler) { _ = s.Close() })
	return smp, nil
}

// addBiases puts the EOS bias and the logit biases in the chain, as one
// stage (a bias for EOS in both adds up).
func addBiases(s *cgo.Sampler, m *Model, eosBias float32, lb []TokenBias) error {
	if eosBias == 0 && len(lb) == 0 {
		return nil
	}
	toks := make([]int32, 0, len(lb)+1)
	biases := make([]float32, 0, len(lb)+1)
	for _, b := range lb {
		toks, biases = append(toks, b.Token), append(biases, b.Bias)
	}
	if eosBias != 0 {
		if m.EOS() < 0 {
			return errors.New("an EOS bias for a model without an EOS token")
		}
		toks, biases = append(toks, m.EOS()), append(biases, eosBias)
	}
	s.AddLogitBias(toks, biases)
	return nil
}

// Options returns the options the chain was built with.
func (s *Sampler) Options() SamplerOptions { return s.opts }

// Sample picks a token from output idx of c's last decode (-1: the last
// output) and records it in the chain's history.
func (s *Sampler) Sample(c *Context, idx int) (Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.s == nil {
		return 0, ErrClosed
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c == nil {
		return 0, ErrClosed
	}
	if err := c.checkOutput(idx); err != nil {
		return 0, fmt.Errorf("sample: %w", err)
	}
	t, err := s.s.Sample(c.c, idx)
	return t, samplerError("sample", err)
}

// samplerError wraps a grammar's dead end in ErrGrammarDeadEnd.
func samplerError(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, cgo.ErrGrammarDeadEnd):
		return fmt.Errorf("%s: %w", op, ErrGrammarDeadEnd)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// Accept records a token chosen elsewhere (for the penalties); a token the
// grammar does not allow here is refused with ErrGrammarDeadEnd.
func (s *Sampler) Accept(t Token) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.s == nil {
		return ErrClosed
	}
	return samplerError("accept", s.s.Accept(t))
}

// Reset forgets the token history (and restarts the grammar).
func (s *Sampler) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.s != nil {
		// A grammar is parsed again; it parsed when the chain was built.
		_ = s.s.Reset()
	}
}

// Close frees the chain. It is idempotent.
func (s *Sampler) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.s != nil {
		s.s.Free()
		s.s = nil
		runtime.SetFinalizer(s, nil)
		if s.model != nil {
			s.model.release()
			s.model = nil
		}
	}
	return nil
}
