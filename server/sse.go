package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/pplug/pplug/llama"
)

// answer builds a route's responses: chunk one streamed event (text nil
// and no finish or usage: the opening event; probs are the log-
// probabilities of the text's tokens), whole the complete response.
type answer struct {
	chunk func(text *string, probs []tokenProb, finish *string, u *usage) any
	whole func(text string, probs []tokenProb, finish string, u usage) any
}

// run submits a prepared job and writes its answer, streamed or whole.
func (s *Server) run(w http.ResponseWriter, r *http.Request, p *prepared, cancel context.CancelFunc, a answer) *apiError {
	j := p.job
	if err := s.sched.submit(j); err != nil {
		j.close()
		switch {
		case errors.Is(err, ErrTooBig):
			return badRequest("context_length_exceeded", "%v", err)
		case errors.Is(err, ErrBusy):
			return errf(http.StatusTooManyRequests, "rate_limit_error", "queue_full", "%v", err)
		}
		return errf(http.StatusServiceUnavailable, "server_error", "unavailable", "%v", err)
	}
	w.Header().Set("X-PPlug-Persona", p.mode)
	if !p.stream {
		return s.runWhole(w, r, p, a)
	}
	s.runStream(w, r, p, cancel, a)
	return nil
}

// runWhole waits for the whole answer and writes it.
func (s *Server) runWhole(w http.ResponseWriter, r *http.Request, p *prepared, a answer) *apiError {
	j := p.job
	var text strings.Builder
	var probs []tokenProb
	for {
		d, done, err := j.out.take(r.Context())
		if err != nil {
			return nil // the client left; the job is cancelled with the request
		}
		for _, c := range d.chunks {
			text.WriteString(c)
		}
		probs = append(probs, d.probs...)
		if done {
			break
		}
	}
	finish, gen, err := j.out.result()
	if err != nil {
		return s.jobError(err)
	}
	writeJSON(w, http.StatusOK, a.whole(text.String(), probs, finish, j.out.usage(gen)))
	return nil
}

// runStream writes the answer as server-sent events while it is made; a
// client that cannot take them is dropped (cancel frees its sequence).
func (s *Server) runStream(w http.ResponseWriter, r *http.Request, p *prepared, cancel context.CancelFunc, a answer) {
	j := p.job
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func(v any) bool {
		b, _ := json.Marshal(v)
		_ = rc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !send(a.chunk(nil, nil, nil, nil)) {
		cancel()
		return
	}
	for {
		d, done, err := j.out.take(r.Context())
		if err != nil {
			cancel()
			return
		}
		if len(d.chunks) > 0 || len(d.probs) > 0 {
			t := strings.Join(d.chunks, "")
			if !send(a.chunk(&t, d.probs, nil, nil)) {
				cancel()
				return
			}
		}
		if done {
			break
		}
	}
	finish, gen, err := j.out.result()
	if err != nil {
		// Headers are gone: report the error as an event, as OpenAI does.
		send(map[string]any{"error": s.jobError(err)})
		return
	}
	u := j.out.usage(gen)
	if !send(a.chunk(nil, nil, &finish, nil)) || p.usage && !send(a.chunk(nil, nil, nil, &u)) {
		cancel()
		return
	}
	_ = rc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	fmt.Fprint(w, "data: [DONE]\n\n")
	_ = rc.Flush()
}

func (s *Server) jobError(err error) *apiError {
	switch {
	case errors.Is(err, ErrClosed):
		return errf(http.StatusServiceUnavailable, "server_error", "unavailable", "%v", err)
	case errors.Is(err, llama.ErrContextFull):
		return errf(http.StatusServiceUnavailable, "server_error", "context_full", "%v (the KV cache is shared by all sequences; retry, or restart with a larger -c)", err)
	}
	return errf(http.StatusInternalServerError, "server_error", "", "%v", err)
}
