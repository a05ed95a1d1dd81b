package persona

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/pplug/pplug/llama"
)

// ExampleTokens tokenizes one example the way training and evaluation both
// see it: the prompt with the model's special tokens (BOS), and the target,
// the output's own tokens followed by EOS when the model has one (so that a
// trained plug also learns where to stop).
func ExampleTokens(m *llama.Model, input, output string) (prompt, target []llama.Token, err error) {
	if prompt, err = m.Tokenize(input, true, true); err != nil {
		return nil, nil, fmt.Errorf("tokenize the input: %w", err)
	}
	if target, err = m.Tokenize(output, false, false); err != nil {
		return nil, nil, fmt.Errorf("tokenize the output: %w", err)
	}
	if eos := m.EOS(); eos >= 0 {
		target = append(target, eos)
	}
	if len(target) == 0 {
		return nil, nil, errors.New("the output is empty")
	}
	return prompt, target, nil
}

// TargetNLL decodes [prompt with rows injected][target] in c (from position
// 0 of sequence 0, after clearing it) and returns the summed negative
// log-likelihood (nats) of the target tokens and their count. rows may be
// nil (no persona).
func TargetNLL(ctx context.Context, c *llama.Context, rows []float32, prompt, target []llama.Token) (float64, int, error) {
	return TargetNLLBiased(ctx, c, rows, prompt, 0, target, nil)
}

// TargetNLLBiased is TargetNLL with the rows after the prompt's first at
// tokens (see NewLayout) and bias added to the logits first, as a sampler
// with that LogitBias sees them (Request.LogitBias: the likelihood under
// the distribution the plug generates from).
func TargetNLLBiased(ctx context.Context, c *llama.Context, rows []float32, prompt []llama.Token, at int, target []llama.Token, bias map[llama.Token]float32) (float64, int, error) {
	m := c.Model()
	in := InputsAt(m, rows, prompt, at)
	if err := c.ClearMemory(); err != nil {
		return 0, 0, err
	}
	// The prompt's last position predicts target[0] ...
	next, err := c.DecodeInputs(ctx, in, llama.DecodeOptions{Output: llama.OutputLast})
	if err != nil {
		return 0, 0, err
	}
	logits, err := c.Logits(-1)
	if err != nil {
		return 0, 0, err
	}
	nll := -logSoftmaxAt(logits, bias, target[0])
	if len(target) == 1 {
		return nll, 1, nil
	}
	// ... and each target position the token after it (the last target
	// token is never input).
	_, err = c.DecodeInputs(ctx, []llama.Input{llama.TokenInput(target[:len(target)-1]...)}, llama.DecodeOptions{
		Pos:    next,
		Output: llama.OutputAll,
		OnOutput: func(pos llama.Pos, logits []float32) error {
			nll += -logSoftmaxAt(logits, bias, target[int(pos-next)+1])
			return nil
		},
	})
	if err != nil {
		return 0, 0, err
	}
	return nll, len(target), nil
}

// logSoftmaxAt is log(softmax(logits + bias)[i]) in float64.
func logSoftmaxAt(logits []float32, bias map[llama.Token]float32, i llama.Token) float64 {
	if len(bias) > 0 {
		logits = slices.Clone(logits)
		for t, b := range bias {
			if int(t) < len(logits) {
				logits[t] += b
			}
		}
	}
	mx := math.Inf(-1)
	for _, x := range logits {
		mx = math.Max(mx, float64(x))
	}
	var z float64
	for _, x := range logits {
		z += math.Exp(float64(x) - mx)
	}
	return float64(logits[i]) - mx - math.Log(z)
}
