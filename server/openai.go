package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// The OpenAI wire types the server reads and writes (the fields it uses;
// unknown request fields are ignored, as OpenAI clients send many, and
// known ones it does not implement are refused: params.go).

type chatMessage struct {
	Role    string      `json:"role"`
	Content textContent `json:"content"`
}

// textContent is a message content: a string or an array of parts, of
// which the text parts are joined.
type textContent string

func (c *textContent) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*c = textContent(s)
		return nil
	}
	if string(b) == "null" {
		*c = ""
		return nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(b, &parts); err != nil {
		return errors.New("content must be a string or an array of text parts")
	}
	var sb strings.Builder
	for _, p := range parts {
		if p.Type != "text" {
			return fmt.Errorf("content part of type %q is not supported (text only)", p.Type)
		}
		sb.WriteString(p.Text)
	}
	*c = textContent(sb.String())
	return nil
}

// stringList is a string or an array of strings (stop, prompt, input).
type stringList []string

func (l *stringList) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*l = nil
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*l = stringList{s}
		return nil
	}
	var a []string
	if err := json.Unmarshal(b, &a); err != nil {
		return errors.New("must be a string or an array of strings")
	}
	*l = a
	return nil
}

// samplingParams are the fields both completion routes share.
type samplingParams struct {
	Model               string     `json:"model"`
	Stream              bool       `json:"stream"`
	StreamOptions       *streamOpt `json:"stream_options"`
	Temperature         *float64   `json:"temperature"`
	TopP                *float64   `json:"top_p"`
	MaxTokens           *int       `json:"max_tokens"`
	MaxCompletionTokens *int       `json:"max_completion_tokens"`
	Seed                *int64     `json:"seed"`
	FrequencyPenalty    *float64   `json:"frequency_penalty"`
	PresencePenalty     *float64   `json:"presence_penalty"`
	Stop                stringList `json:"stop"`
	User                string     `json:"user"`
	// LogitBias maps token ids (as strings) to biases in [-100, 100].
	LogitBias      map[string]float64 `json:"logit_bias"`
	ResponseFormat *responseFormat    `json:"response_format"`
	// IgnoreEOS (llama-server's) generates past end-of-generation tokens.
	IgnoreEOS bool `json:"ignore_eos"`
	// CachePrompt (llama-server's cache_prompt, default true) reuses the
	// KV a slot kept of an earlier request that starts the same way;
	// false decodes the whole prompt.
	CachePrompt *bool `json:"cache_prompt"`
	// PPlug holds pplug's own request options.
	PPlug *pplugOptions `json:"pplug"`

	logprobs logprobsRequest // from the route's own logprobs fields
}

// pplugOptions is the request body's "pplug" object.
type pplugOptions struct {
	// Method personalises this request with another of the server's
	// methods (GET /health lists them) than its default.
	Method string `json:"method"`
}

type streamOpt struct {
	IncludeUsage bool `json:"include_usage"`
}

type chatRequest struct {
	samplingParams
	Messages    []chatMessage `json:"messages"`
	Logprobs    *bool         `json:"logprobs"`
	TopLogprobs *int          `json:"top_logprobs"`
	// Remember (a pplug extension) appends the last user message to the
	// user's history items after the answer, as `pplug chat --remember`.
	Remember bool `json:"remember"`
}

type completionRequest struct {
	samplingParams
	Prompt stringList `json:"prompt"`
	// Logprobs is the number of top alternatives per token (legacy form).
	Logprobs *int `json:"logprobs"`
}

type embeddingRequest struct {
	Model          string     `json:"model"`
	Input          stringList `json:"input"`
	EncodingFormat string     `json:"encoding_format"`
}

type usage struct {
	PromptTokens     int           `json:"prompt_tokens"`
	CompletionTokens int           `json:"completion_tokens"`
	TotalTokens      int           `json:"total_tokens"`
	PromptDetails    promptDetails `json:"prompt_tokens_details"`
}

// promptDetails is OpenAI's usage.prompt_tokens_details: CachedTokens are
// the prompt positions whose KV a slot kept from an earlier request (see
// cache.go), which were not decoded again.
type promptDetails struct {
	CachedTokens int `json:"cached_tokens"`
}

type outMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type chatChoice struct {
	Index        int           `json:"index"`
	Message      *outMessage   `json:"message,omitempty"`
	Delta        *outDelta     `json:"delta,omitempty"`
	FinishReason *string       `json:"finish_reason"`
	Logprobs     *chatLogprobs `json:"logprobs"`
}

type outDelta struct {
	Role    string  `json:"role,omitempty"`
	Content *string `json:"content,omitempty"`
}

type chatResponse struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []chatChoice `json:"choices"`
	Usage   *usage       `json:"usage,omitempty"`
}

type completionChoice struct {
	Index        int                 `json:"index"`
	Text         string              `json:"text"`
	FinishReason *string             `json:"finish_reason"`
	Logprobs     *completionLogprobs `json:"logprobs"`
}

type completionResponse struct {
	ID      string             `json:"id"`
	Object  string             `json:"object"`
	Created int64              `json:"created"`
	Model   string             `json:"model"`
	Choices []completionChoice `json:"choices"`
	Usage   *usage             `json:"usage,omitempty"`
}

// apiError is OpenAI's error object with the HTTP status it goes with.
type apiError struct {
	status  int
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
	// retryAfter, when positive, is sent as Retry-After (seconds).
	retryAfter int
}

func (e *apiError) Error() string { return e.Message }

func errf(status int, typ, code, format string, a ...any) *apiError {
	e := &apiError{status: status, Message: fmt.Sprintf(format, a...), Type: typ}
	if code != "" {
		e.Code = &code
	}
	return e
}

func badRequest(code, format string, a ...any) *apiError {
	return errf(http.StatusBadRequest, "invalid_request_error", code, format, a...)
}

func withParam(e *apiError, p string) *apiError {
	e.Param = &p
	return e
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, e *apiError) {
	setRetryAfter(w, e)
	writeJSON(w, e.status, map[string]any{"error": e})
}
