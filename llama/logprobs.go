package llama

import (
	"fmt"
	"math"
	"sort"
)

// TokenLogprob is a token with its log-probability.
type TokenLogprob struct {
	Token   Token
	Logprob float32
}

// MaxTopLogprobs bounds the alternatives Logprobs returns per position.
const MaxTopLogprobs = 100

// Logprobs returns the log-probability of token t at output idx of the
// last decode (the batch row; -1 is the last output) and the top most
// likely tokens there, most likely first. The probabilities are the
// model's own (a softmax of the raw logits, before any sampler stage), as
// llama-server and OpenAI report them.
func (c *Context) Logprobs(idx int, t Token, top int) (float32, []TokenLogprob, error) {
	if top < 0 || top > MaxTopLogprobs {
		return 0, nil, fmt.Errorf("top %d is outside [0, %d]", top, MaxTopLogprobs)
	}
	if t < 0 || int(t) >= c.nVocab {
		return 0, nil, fmt.Errorf("token %d is outside the vocabulary (0 to %d)", t, c.nVocab-1)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c == nil {
		return 0, nil, ErrClosed
	}
	if err := c.checkOutput(idx); err != nil {
		return 0, nil, fmt.Errorf("logprobs: %w", err)
	}
	logits := c.c.LogitsView(idx, c.nVocab)
	if logits == nil {
		return 0, nil, fmt.Errorf("no logits for output %d of the last decode", idx)
	}
	lse := logSumExp(logits)
	best := topLogits(logits, top)
	for i := range best {
		best[i].Logprob -= lse
	}
	return logits[t] - lse, best, nil
}

// logSumExp is log(sum(exp(x))), computed stably in float64.
func logSumExp(x []float32) float32 {
	mx := float32(math.Inf(-1))
	for _, v := range x {
		mx = max(mx, v)
	}
	if math.IsInf(float64(mx), 0) {
		return mx
	}
	var sum float64
	for _, v := range x {
		sum += math.Exp(float64(v - mx))
	}
	return mx + float32(math.Log(sum))
}

// topLogits returns the n largest logits with their tokens, largest first
// (ties: the lower token id first).
func topLogits(x []float32, n int) []TokenLogprob {
	if n == 0 {
		return nil
	}
	best := make([]TokenLogprob, 0, n+1)
	for i, v := range x {
		if len(best) == n && v <= best[n-1].Logprob {
			continue
		}
		k := sort.Search(len(best), func(j int) bool { return best[j].Logprob < v })
		best = append(best, TokenLogprob{})
		copy(best[k+1:], best[k:])
		best[k] = TokenLogprob{Token: Token(i), Logprob: v}
		if len(best) > n {
			best = best[:n]
		}
	}
	return best
}
