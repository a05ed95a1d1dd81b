package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/pplug/pplug/llama"
	"github.com/pplug/pplug/persona"
	"github.com/pplug/pplug/persona/profile"
)

// samplerOptions checks a request's sampling fields (OpenAI's ranges) and
// returns the sampler options and max_tokens (-1: not given).
func (s *Server) samplerOptions(p samplingParams) (llama.SamplerOptions, int, *apiError) {
	opts := llama.DefaultSamplerOptions()
	if p.Temperature != nil {
		if *p.Temperature < 0 || *p.Temperature > 2 {
			return opts, 0, withParam(badRequest("", "temperature %v is outside [0, 2]", *p.Temperature), "temperature")
		}
		opts.Temp = float32(*p.Temperature)
	}
	if p.TopP != nil {
		if *p.TopP <= 0 || *p.TopP > 1 {
			return opts, 0, withParam(badRequest("", "top_p %v is outside (0, 1]", *p.TopP), "top_p")
		}
		opts.TopP = float32(*p.TopP)
	}
	if p.Seed != nil {
		if *p.Seed < 0 || *p.Seed >= llama.SeedRandom {
			return opts, 0, withParam(badRequest("", "seed %d is outside [0, %d)", *p.Seed, int64(llama.SeedRandom)), "seed")
		}
		opts.Seed = uint32(*p.Seed)
	}
	if len(p.Stop) > 4 {
		return opts, 0, withParam(badRequest("", "at most 4 stop sequences"), "stop")
	}
	for _, pen := range []struct {
		v    *float64
		dst  *float32
		name string
	}{{p.FrequencyPenalty, &opts.FrequencyPenalty, "frequency_penalty"}, {p.PresencePenalty, &opts.PresencePenalty, "presence_penalty"}} {
		if pen.v == nil {
			continue
		}
		if *pen.v < -2 || *pen.v > 2 || math.IsNaN(*pen.v) {
			return opts, 0, withParam(badRequest("", "%s %v is outside [-2, 2]", pen.name, *pen.v), pen.name)
		}
		*pen.dst = float32(*pen.v)
	}
	maxTok := -1
	for _, m := range []struct {
		v    *int
		name string
	}{{p.MaxTokens, "max_tokens"}, {p.MaxCompletionTokens, "max_completion_tokens"}} {
		if m.v != nil {
			if *m.v < 1 || *m.v > s.cfg.MaxTokens {
				return opts, 0, withParam(badRequest("", "%s %d is outside [1, %d] (the server's limit, pplug serve -n/--n-predict)", m.name, *m.v, s.cfg.MaxTokens), m.name)
			}
			maxTok = *m.v
		}
	}
	return opts, maxTok, nil
}

// prepared is a validated completion request ready to run.
type prepared struct {
	job     *job
	mode    string
	stream  bool
	usage   bool
	user    string
	created int64
}

// layFunc lays out a personalised request as the route's turn (see
// persona.Builder.Lay).
type layFunc func(persona.Request) (*persona.Turn, error)

// prepare validates the sampling fields, resolves the user, builds the
// model input (through the personalisation glue) and the sampler.
func (s *Server) prepare(ctx context.Context, c caller, p samplingParams, query string, lay layFunc) (*prepared, *apiError) {
	if err := s.checkModel(p.Model); err != nil {
		return nil, err
	}
	// The user field alone selects a persona (none without it); a user's
	// own key may select only that user.
	user := p.User
	if !c.admin && user != "" {
		if user != c.user {
			return nil, withParam(errf(http.StatusForbidden, "invalid_request_error", "permission_denied", "this API key belongs to user %q, not %s", c.user, profile.QuoteID(user)), "user")
		}
	}
	opts, maxTok, aerr := s.samplerOptions(p)
	if aerr != nil {
		return nil, aerr
	}
	bias, aerr := s.constrain(&opts, p)
	if aerr != nil {
		return nil, aerr
	}
	in, aerr := s.personalInput(ctx, user, p.PPlug, query, lay)
	if aerr != nil {
		return nil, aerr
	}
	n := len(in.keys)
	room := min(s.lctx.NCtxSeq(), s.lctx.NCtx()) - n
	if maxTok < 0 {
		maxTok = min(s.cfg.MaxTokens, room)
	}
	if room < 1 || maxTok > room {
		return nil, badRequest("context_length_exceeded", "the prompt takes %d positions and max_tokens %d more, the context window has %d (lower max_tokens, shorten the prompt or restart the server with a larger -c)",
			n, maxTok, min(s.lctx.NCtxSeq(), s.lctx.NCtx()))
	}
	opts = in.turn.SamplerOptions(opts) // the plug's length prior where its rows go
	smp, err := s.cfg.Model.NewBiasedSampler(opts, bias)
	if err != nil {
		return nil, samplerError(err)
	}
	dec, err := llama.NewSequence(llama.SequenceOptions{Sampler: smp, MaxTokens: maxTok, IgnoreEOG: p.IgnoreEOS,
		Stop: append(append([]string(nil), p.Stop...), in.turn.Stops...), Logprobs: p.logprobs.on, TopLogprobs: p.logprobs.top})
	if err != nil {
		smp.Close()
		return nil, badRequest("", "%v", err)
	}
	j := &job{ctx: ctx, inputs: in.inputs, nPos: n, maxTokens: maxTok, sampler: smp, dec: dec, out: newOutput(),
		keys: in.keys, noReuse: p.CachePrompt != nil && !*p.CachePrompt}
	return &prepared{job: j, mode: in.mode, stream: p.Stream, usage: p.StreamOptions != nil && p.StreamOptions.IncludeUsage,
		user: user, created: time.Now().Unix()}, nil
}

// personalInput is a request's model input: the method it asks for, the
// user's persona for its query, the rendered prompt laid out with the rows.
type personalInput struct {
	turn   *persona.Turn
	mode   string // X-PPlug-Persona: the method, and why a user got none
	inputs []llama.Input
	keys   []uint64 // one per position (see inputKeys)
}

func (s *Server) personalInput(ctx context.Context, user string, o *pplugOptions, query string, lay layFunc) (personalInput, *apiError) {
	var in personalInput
	method, aerr := s.method(o)
	if aerr != nil {
		return in, aerr
	}
	req, why, err := s.pers.personalize(ctx, user, method, query)
	if err != nil {
		return in, databaseError("persona", err)
	}
	in.mode = string(req.Method)
	if why != "" {
		in.mode += "; reason=" + why
		s.logNoPersona(user, why)
	}
	if in.turn, err = lay(req); err != nil {
		if errors.Is(err, persona.ErrEmptyInput) {
			return in, badRequest("", "the prompt is empty")
		}
		return in, badRequest("", "lay out the prompt: %v", err)
	}
	if in.inputs, in.keys, err = s.turnInputs(in.turn); err != nil {
		return in, errf(http.StatusInternalServerError, "server_error", "", "%v", err)
	}
	if len(in.keys) == 0 {
		return in, badRequest("", "the prompt is empty")
	}
	return in, nil
}

// turnInputs are a turn's inputs and the keys of their positions for the
// prefix cache (inputKeys).
func (s *Server) turnInputs(t *persona.Turn) ([]llama.Input, []uint64, error) {
	in := t.Inputs()
	keys := inputKeys(s.cfg.Model, t.Rows, t.Tokens, t.At)
	if n := llama.InputsLen(in, s.cfg.Model.NEmbd()); n != len(keys) {
		return nil, nil, fmt.Errorf("the input takes %d positions but has %d prefix keys (a layout the prefix cache does not know)", n, len(keys))
	}
	return in, keys, nil
}

// method is the personalisation a request asks for ("pplug": {"method"})
// or the server's default.
func (s *Server) method(o *pplugOptions) (persona.Method, *apiError) {
	if o == nil || o.Method == "" {
		return s.pers.pz.Method, nil
	}
	m, err := persona.ParseMethod(o.Method)
	if err == nil && s.pers.methods[m] == nil {
		err = errors.New("this server has no plug for it (serve --plug)")
	}
	if err != nil {
		return "", withParam(badRequest("", "pplug.method %q: %v; this server serves %s", o.Method, err, s.methodNames()), "pplug.method")
	}
	return m, nil
}

// methodNames lists the methods requests may ask for.
func (s *Server) methodNames() string {
	var names []string
	for _, m := range persona.Methods() {
		if s.pers.methods[m] != nil {
			names = append(names, string(m))
		}
	}
	return strings.Join(names, ", ")
}

// logNoPersona says that a request's user gets no persona: a warning for
// a user the store does not know (a typo, or a client sending OpenAI's
// user field for its own ends), a debug line for a user without history.
func (s *Server) logNoPersona(user, why string) {
	level := slog.LevelDebug
	if why == reasonUnknownUser {
		level = slog.LevelWarn
	}
	s.log.Log(context.Background(), level, "the request's user gets no persona", "user", user, "reason", why)
}
