package server

import (
	"github.com/pplug/pplug/llama"
)

// slot is a sequence of the context and the job it runs.
type slot struct {
	seq     llama.SeqID
	job     *job
	pos     llama.Pos
	prompt  []llama.Input // the part of the prompt not decoded yet
	tok     llama.Token   // sampled, to decode in the next step
	gen     int
	ts      *llama.TextStream
	reserve int
	// With logprobs: the tokens whose text has not gone out whole yet, the
	// bytes of the pieces pushed into ts and of the text that went out.
	held    []tokenProb
	raw     int
	emitted int
}
