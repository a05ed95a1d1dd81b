package llama

import (
	"context"
	"math"
	"testing"
)

// Logprobs are a log-softmax of the logits: they sum to 1 in probability,
// the top list is sorted and agrees with the single token's value, and the
// greedy token is the first of the top list.
func TestLogprobs(t *testing.T) {
	m := loadStories(t)
	c, err := m.NewContext(ContextOptions{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	toks, err := m.Tokenize("Once upon a time", true, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.DecodeInputs(context.Background(), []Input{TokenInput(toks...)}, DecodeOptions{Output: OutputLast}); err != nil {
		t.Fatal(err)
	}
	smp, err := NewSampler(SamplerOptions{Temp: 0, RepeatPenalty: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer smp.Close()
	greedy, err := smp.Sample(c, -1)
	if err != nil {
		t.Fatal(err)
	}
	_, all, err := c.Logprobs(-1, greedy, MaxTopLogprobs)
	if err != nil {
		t.Fatal(err)
	}
	if all[0].Token != greedy {
		t.Fatalf("top token %d, greedy %d", all[0].Token, greedy)
	}
	for i := 1; i < len(all); i++ {
		if all[i].Logprob > all[i-1].Logprob {
			t.Fatalf("top list not sorted at %d: %v", i, all[:i+1])
		}
	}
	var sum float64
	for tok := range Token(m.NVocab()) {
		lp, _, err := c.Logprobs(-1, tok, 0)
		if err != nil {
			t.Fatal(err)
		}
		if tok == all[3].Token && lp != all[3].Logprob {
			t.Errorf("token %d: %v alone, %v in the top list", tok, lp, all[3].Logprob)
		}
		sum += math.Exp(float64(lp))
	}
	if math.Abs(sum-1) > 1e-4 {
		t.Errorf("probabilities sum to %v", sum)
	}
	for _, bad := range []struct {
		idx int
		tok Token
		top int
	}{{-1, -1, 0}, {-1, Token(m.NVocab()), 0}, {-1, 0, -1}, {-1, 0, MaxTopLogprobs + 1}, {5, 0, 0}, {-2, 0, 0}} {
		if _, _, err := c.Logprobs(bad.idx, bad.tok, bad.top); err == nil {
			t.Errorf("Logprobs(%d, %d, %d) accepted", bad.idx, bad.tok, bad.top)
		}
	}
}

// A logit bias moves its tokens: -100 bans the greedy token, +100 makes
// another one greedy; biases outside the vocabulary, twice for one token
// or not finite are refused.
func TestLogitBias(t *testing.T) {
	m := loadStories(t)
	gen := func(lb []TokenBias) []Token {
		t.Helper()
		c, err := m.NewContext(ContextOptions{Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		smp, err := m.NewBiasedSampler(SamplerOptions{Temp: 0, RepeatPenalty: 1}, lb)
		if err != nil {
			t.Fatal(err)
		}
		defer smp.Close()
		toks, _ := m.Tokenize("Once upon a time", true, false)
		res, err := c.Generate(context.Background(), smp, []Input{TokenInput(toks...)}, 0, GenerateOptions{MaxTokens: 8})
		if err != nil {
			t.Fatal(err)
		}
		return res.Tokens
	}
	plain := gen(nil)
	for _, tok := range gen([]TokenBias{{plain[0], -100}}) {
		if tok == plain[0] {
			t.Fatalf("token %d banned with -100 was generated: %v", plain[0], plain)
		}
	}
	forced := Token(100)
	for i, tok := range gen([]TokenBias{{forced, 100}}) {
		if tok != forced {
			t.Fatalf("token %d with +100 is not greedy at %d", forced, i)
		}
	}
	for _, lb := range [][]TokenBias{
		{{Token(m.NVocab()), 1}}, {{-1, 1}}, {{5, 1}, {5, 2}}, {{5, float32(math.Inf(-1))}}, {{5, float32(math.NaN())}},
	} {
		if s, err := m.NewBiasedSampler(SamplerOptions{Temp: 0, RepeatPenalty: 1}, lb); err == nil {
			s.Close()
			t.Errorf("logit bias %v accepted", lb)
		}
	}
}
