package server

import (
	"context"
	"sync"
	"time"
)

// output is a job's result, filled by the scheduler loop and read by the
// request's handler. The loop never waits for the reader: text piles up
// here until the handler takes it, so a slow client stalls only itself.
type output struct {
	mu       sync.Mutex
	chunks   []string
	probs    []tokenProb // of the tokens whose text is in chunks (logprobs on)
	done     bool
	finish   string // "stop" or "length"
	err      error
	genToks  int
	promptN  int
	cached   int       // prompt positions the slot's KV held already
	first    time.Time // first token sampled
	notify   chan struct{}
	admitted time.Time
}

func newOutput() *output { return &output{notify: make(chan struct{}, 1)} }

func (o *output) signal() {
	select {
	case o.notify <- struct{}{}:
	default:
	}
}

func (o *output) push(s string) {
	if s == "" {
		return
	}
	o.mu.Lock()
	o.chunks = append(o.chunks, s)
	o.mu.Unlock()
	o.signal()
}

func (o *output) end(finish string, err error) {
	o.mu.Lock()
	if !o.done {
		o.done, o.finish, o.err = true, finish, err
	}
	o.mu.Unlock()
	o.signal()
}

// pushProbs adds the log-probabilities of tokens whose text went out.
func (o *output) pushProbs(p []tokenProb) {
	if len(p) == 0 {
		return
	}
	o.mu.Lock()
	o.probs = append(o.probs, p...)
	o.mu.Unlock()
	o.signal()
}

// delta is what a job produced since the handler last looked.
type delta struct {
	chunks []string
	probs  []tokenProb
}

// take returns what was produced since the last call and whether the job
// has ended. It waits until there is something or ctx ends.
func (o *output) take(ctx context.Context) (d delta, done bool, err error) {
	for {
		o.mu.Lock()
		d, done = delta{o.chunks, o.probs}, o.done
		o.chunks, o.probs = nil, nil
		o.mu.Unlock()
		if len(d.chunks) > 0 || len(d.probs) > 0 || done {
			return d, done, nil
		}
		select {
		case <-o.notify:
		case <-ctx.Done():
			return delta{}, false, ctx.Err()
		}
	}
}

// result returns the final state (call after take reported done).
func (o *output) result() (finish string, genToks int, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.finish, o.genToks, o.err
}

// usage is the job's usage for OpenAI's usage object: the prompt's
// positions (persona rows included), of which cached came from a slot's
// KV, and gen generated tokens.
func (o *output) usage(gen int) usage {
	o.mu.Lock()
	defer o.mu.Unlock()
	return usage{PromptTokens: o.promptN, CompletionTokens: gen, TotalTokens: o.promptN + gen,
		PromptDetails: promptDetails{CachedTokens: o.cached}}
}
