package server

import "github.com/pplug/pplug/llama"

// tokenProb is one generated token's log-probability and its top
// alternatives, with where its text starts in the answer (the slot's
// llama.Sequence collects them).
type tokenProb = llama.TokenProb

// Chat's logprobs: {"content": [{token, logprob, bytes, top_logprobs}]}.
type chatLogprobs struct {
	Content []chatTokenLogprob `json:"content"`
	Refusal []chatTokenLogprob `json:"refusal"`
}

type chatTokenLogprob struct {
	Token       string           `json:"token"`
	Logprob     float64          `json:"logprob"`
	Bytes       []int            `json:"bytes"`
	TopLogprobs []chatTopLogprob `json:"top_logprobs"`
}

type chatTopLogprob struct {
	Token   string  `json:"token"`
	Logprob float64 `json:"logprob"`
	Bytes   []int   `json:"bytes"`
}

// The legacy completions logprobs object.
type completionLogprobs struct {
	Tokens        []string             `json:"tokens"`
	TokenLogprobs []float64            `json:"token_logprobs"`
	TopLogprobs   []map[string]float64 `json:"top_logprobs"`
	TextOffset    []int                `json:"text_offset"`
}

// byteList is a token's bytes as OpenAI lists them (numbers, not base64).
func byteList(b []byte) []int {
	out := make([]int, len(b))
	for i, c := range b {
		out[i] = int(c)
	}
	return out
}

// chatLogprobsOf is chat's logprobs of probs (nil when not asked for).
func chatLogprobsOf(lp logprobsRequest, probs []tokenProb) *chatLogprobs {
	if !lp.on {
		return nil
	}
	out := &chatLogprobs{Content: make([]chatTokenLogprob, len(probs))}
	for i, p := range probs {
		top := make([]chatTopLogprob, len(p.Top))
		for k, a := range p.Top {
			top[k] = chatTopLogprob{Token: string(a.Piece), Logprob: float64(a.Logprob), Bytes: byteList(a.Piece)}
		}
		out.Content[i] = chatTokenLogprob{Token: string(p.Piece), Logprob: float64(p.Logprob), Bytes: byteList(p.Piece), TopLogprobs: top}
	}
	return out
}

// completionLogprobsOf is the legacy logprobs of probs (nil when not asked for).
func completionLogprobsOf(lp logprobsRequest, probs []tokenProb) *completionLogprobs {
	if !lp.on {
		return nil
	}
	out := &completionLogprobs{
		Tokens: make([]string, len(probs)), TokenLogprobs: make([]float64, len(probs)),
		TopLogprobs: make([]map[string]float64, len(probs)), TextOffset: make([]int, len(probs)),
	}
	for i, p := range probs {
		out.Tokens[i], out.TokenLogprobs[i], out.TextOffset[i] = string(p.Piece), float64(p.Logprob), p.Offset
		out.TopLogprobs[i] = make(map[string]float64, len(p.Top))
		for _, a := range p.Top {
			if _, dup := out.TopLogprobs[i][string(a.Piece)]; !dup { // the likelier of two tokens with one text
				out.TopLogprobs[i][string(a.Piece)] = float64(a.Logprob)
			}
		}
	}
	return out
}
