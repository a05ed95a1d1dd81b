package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"reflect"
	"slices"
	"strconv"

	"github.com/pplug/pplug/llama"
)

// This file checks the OpenAI request fields beyond the plain sampling
// ones: those the server refuses, logit_bias, response_format, ignore_eos
// and logprobs.

// unsupportedField is an OpenAI field the server does not implement: a
// request may send it only with a value that asks for nothing (or null).
type unsupportedField struct {
	name     string
	harmless []string // JSON values that ask for nothing
	why      string
}

// unsupportedFields are refused rather than ignored, since ignoring them
// would answer something other than what was asked. Fields the server
// does not know at all are ignored, as OpenAI does.
var unsupportedFields = []unsupportedField{
	{"n", []string{`1`}, "one choice per request: send n 1 or leave it out"},
	{"best_of", []string{`1`}, "one candidate per request: send best_of 1 or leave it out"},
	{"echo", []string{`false`}, "the prompt is not echoed: leave echo out"},
	{"suffix", []string{`""`}, "no insertion after a suffix: leave suffix out"},
	{"tools", []string{`[]`}, "no tool calls: leave tools out"},
	{"tool_choice", []string{`"none"`}, "no tool calls: leave tool_choice out"},
	{"functions", []string{`[]`}, "no function calls: leave functions out"},
	{"function_call", []string{`"none"`}, "no function calls: leave function_call out"},
	{"audio", nil, "text only: leave audio out"},
	{"modalities", []string{`["text"]`}, `text only: send ["text"] or leave modalities out`},
	{"prediction", nil, "no predicted outputs: leave prediction out"},
	{"web_search_options", nil, "no web search: leave web_search_options out"},
}

// checkUnsupported refuses a body that asks for an unsupported field.
func checkUnsupported(body []byte) *apiError {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return badRequest("invalid_json", "the request body is not a JSON object: %v", err)
	}
	for _, f := range unsupportedFields {
		raw, ok := fields[f.name]
		if !ok || f.asksNothing(raw) {
			continue
		}
		return withParam(errf(http.StatusBadRequest, "invalid_request_error", "unsupported_parameter",
			"%s %s is not supported by pplug serve (%s)", f.name, raw, f.why), f.name)
	}
	return nil
}

func (f unsupportedField) asksNothing(raw json.RawMessage) bool {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return false
	}
	if v == nil {
		return true
	}
	for _, h := range f.harmless {
		var hv any
		_ = json.Unmarshal([]byte(h), &hv)
		if reflect.DeepEqual(v, hv) {
			return true
		}
	}
	return false
}

// responseFormat is OpenAI's response_format.
type responseFormat struct {
	Type       string `json:"type"`
	JSONSchema *struct {
		Name   string          `json:"name"`
		Schema json.RawMessage `json:"schema"`
	} `json:"json_schema"`
}

// grammar is the GBNF grammar a response format asks for ("" for text).
func (rf *responseFormat) grammar() (string, *apiError) {
	bad := func(format string, a ...any) *apiError {
		return withParam(badRequest("", format, a...), "response_format")
	}
	var schema []byte
	switch {
	case rf == nil || rf.Type == "text":
		return "", nil
	case rf.Type == "json_object":
		schema = []byte(`{"type": "object"}`)
	case rf.Type == "json_schema":
		if rf.JSONSchema == nil || len(rf.JSONSchema.Schema) == 0 || string(rf.JSONSchema.Schema) == "null" {
			return "", bad(`response_format json_schema needs {"json_schema": {"name": ..., "schema": {...}}}`)
		}
		schema = rf.JSONSchema.Schema
	default:
		return "", bad("response_format type %q is not supported: give text, json_object or json_schema", rf.Type)
	}
	g, err := llama.JSONSchemaGrammar(schema)
	if err != nil {
		return "", bad("response_format: %v", err)
	}
	return g, nil
}

// maxLogitBias is OpenAI's bound on a logit_bias value.
const maxLogitBias = 100

// logitBias reads OpenAI's logit_bias: token ids (as strings) to biases in
// [-100, 100], -100 banning the token in practice.
func logitBias(lb map[string]float64, nVocab int) ([]llama.TokenBias, *apiError) {
	bad := func(format string, a ...any) *apiError {
		return withParam(badRequest("", format, a...), "logit_bias")
	}
	out := make([]llama.TokenBias, 0, len(lb))
	for k, v := range lb {
		id, err := strconv.Atoi(k)
		if err != nil || id < 0 || id >= nVocab {
			return nil, bad("logit_bias key %q is not a token id of this model's vocabulary (0 to %d)", k, nVocab-1)
		}
		if math.IsNaN(v) || v < -maxLogitBias || v > maxLogitBias {
			return nil, bad("logit_bias of token %d is %v, outside [-%d, %d]", id, v, maxLogitBias, maxLogitBias)
		}
		out = append(out, llama.TokenBias{Token: llama.Token(id), Bias: float32(v)})
	}
	slices.SortFunc(out, func(a, b llama.TokenBias) int { return int(a.Token - b.Token) })
	return out, nil
}

// withIgnoreEOS adds the ban of the end-of-generation tokens to lb (a bias
// the request gives for one of them adds up with it).
func withIgnoreEOS(lb []llama.TokenBias, eog []llama.Token) []llama.TokenBias {
	for _, t := range eog {
		i := slices.IndexFunc(lb, func(b llama.TokenBias) bool { return b.Token == t })
		if i < 0 {
			lb = append(lb, llama.TokenBias{Token: t, Bias: -maxLogitBias})
			continue
		}
		lb[i].Bias -= maxLogitBias
	}
	return lb
}

// maxTopLogprobs is OpenAI's bound on top_logprobs.
const maxTopLogprobs = 20

// logprobsRequest is what a request asks of logprobs: none when !on, else
// the token's and top alternatives.
type logprobsRequest struct {
	on  bool
	top int
}

// chatLogprobsRequest reads chat's logprobs (bool) and top_logprobs.
func chatLogprobsRequest(logprobs *bool, top *int) (logprobsRequest, *apiError) {
	on := logprobs != nil && *logprobs
	if top == nil {
		return logprobsRequest{on: on}, nil
	}
	if !on {
		return logprobsRequest{}, withParam(badRequest("", `top_logprobs needs "logprobs": true`), "top_logprobs")
	}
	if *top < 0 || *top > maxTopLogprobs {
		return logprobsRequest{}, withParam(badRequest("", "top_logprobs %d is outside [0, %d]", *top, maxTopLogprobs), "top_logprobs")
	}
	return logprobsRequest{on: true, top: *top}, nil
}

// completionLogprobsRequest reads the legacy logprobs (the number of top
// alternatives; 0 gives the tokens' own only).
func completionLogprobsRequest(logprobs *int) (logprobsRequest, *apiError) {
	if logprobs == nil {
		return logprobsRequest{}, nil
	}
	if *logprobs < 0 || *logprobs > maxTopLogprobs {
		return logprobsRequest{}, withParam(badRequest("", "logprobs %d is outside [0, %d]", *logprobs, maxTopLogprobs), "logprobs")
	}
	return logprobsRequest{on: true, top: *logprobs}, nil
}

// constrain puts a request's response_format into its sampler options
// and returns the logit biases of its logit_bias and ignore_eos.
func (s *Server) constrain(opts *llama.SamplerOptions, p samplingParams) ([]llama.TokenBias, *apiError) {
	lb, aerr := logitBias(p.LogitBias, s.cfg.Model.NVocab())
	if aerr != nil {
		return nil, aerr
	}
	g, aerr := p.ResponseFormat.grammar()
	if aerr != nil {
		return nil, aerr
	}
	if p.IgnoreEOS {
		if g != "" {
			return nil, withParam(badRequest("", "ignore_eos cannot go with a response_format: the format's grammar ends the answer with the end-of-generation token"), "ignore_eos")
		}
		lb = withIgnoreEOS(lb, s.eog)
	}
	opts.Grammar = g
	return lb, nil
}

// samplerError is the 400 for options llama.cpp refused.
func samplerError(err error) *apiError {
	if errors.Is(err, llama.ErrInvalidGrammar) {
		return withParam(badRequest("", "response_format: %v", err), "response_format")
	}
	return badRequest("", "%v", fmt.Errorf("sampler: %w", err))
}
