package server

// tokenProb is one generated token's log-probability and its top
// alternatives, with where its text starts in the answer.
type tokenProb struct {
	piece   []byte
	logprob float32
	top     []altProb
	offset  int // byte offset of the token's text in the answer
}

type altProb struct {
	piece   []byte
	logprob float32
}

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
		top := make([]chatTopLogprob, len(p.top))
		for k, a := range p.top {
			top[k] = chatTopLogprob{Token: string(a.piece), Logprob: float64(a.logprob), Bytes: byteList(a.piece)}
		}
		out.Content[i] = chatTokenLogprob{Token: string(p.piece), Logprob: float64(p.logprob), Bytes: byteList(p.piece), TopLogprobs: top}
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
		out.Tokens[i], out.TokenLogprobs[i], out.TextOffset[i] = string(p.piece), float64(p.logprob), p.offset
		out.TopLogprobs[i] = make(map[string]float64, len(p.top))
		for _, a := range p.top {
			if _, dup := out.TopLogprobs[i][string(a.piece)]; !dup { // the likelier of two tokens with one text
				out.TopLogprobs[i][string(a.piece)] = float64(a.logprob)
			}
		}
	}
	return out
}
