package server

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/pplug/pplug/llama"
	"github.com/pplug/pplug/persona"
)

// Handler returns the routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", s.health)
	mux.Handle("POST /v1/chat/completions", s.authed(s.chat))
	mux.Handle("POST /v1/completions", s.authed(s.completions))
	mux.Handle("GET /v1/models", s.authed(s.models))
	mux.Handle("GET /v1/models/{id}", s.authed(s.model))
	mux.Handle("POST /v1/embeddings", s.authed(s.embeddings))
	s.userRoutes(mux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Unknown routes and methods get OpenAI's error shape too.
		if _, pattern := mux.Handler(r); pattern == "" {
			writeError(w, errf(http.StatusNotFound, "invalid_request_error", "unknown_url", "no route %s %s", r.Method, r.URL.Path))
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// decode reads a JSON body into v.
func decode(r *http.Request, v any) *apiError {
	body, aerr := readBody(r)
	if aerr != nil {
		return aerr
	}
	return unmarshalBody(body, v)
}

// decodeCompletion reads a completion request's body into v and refuses
// the OpenAI fields the server does not implement.
func decodeCompletion(r *http.Request, v any) *apiError {
	body, aerr := readBody(r)
	if aerr != nil {
		return aerr
	}
	if aerr := unmarshalBody(body, v); aerr != nil {
		return aerr
	}
	return checkUnsupported(body)
}

func readBody(r *http.Request) ([]byte, *apiError) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errf(http.StatusRequestEntityTooLarge, "invalid_request_error", "request_too_large", "the request body exceeds %d bytes", mbe.Limit)
		}
		return nil, badRequest("", "read the request body: %v", err)
	}
	return body, nil
}

func unmarshalBody(body []byte, v any) *apiError {
	if err := json.Unmarshal(body, v); err != nil {
		return badRequest("invalid_json", "the request body is not valid JSON for this route: %v", err)
	}
	return nil
}

func (s *Server) health(w http.ResponseWriter, _ *http.Request) {
	active, queued := s.sched.stats()
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "slots": s.NSeq(), "cache_slots": s.NCacheSlots(),
		"method": s.pers.pz.Method, "methods": strings.Split(s.methodNames(), ", "), "slots_busy": active, "queued": queued})
}

func (s *Server) modelObject() map[string]any {
	return map[string]any{"id": s.cfg.ModelName, "object": "model", "created": s.created, "owned_by": "pplug"}
}

func (s *Server) models(w http.ResponseWriter, _ *http.Request, _ caller) *apiError {
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": []any{s.modelObject()}})
	return nil
}

func (s *Server) model(w http.ResponseWriter, r *http.Request, _ caller) *apiError {
	if err := s.checkModel(r.PathValue("id")); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.modelObject())
	return nil
}

func (s *Server) checkModel(name string) *apiError {
	if name != "" && name != s.cfg.ModelName {
		return withParam(errf(http.StatusNotFound, "invalid_request_error", "model_not_found",
			"the model %q does not exist; this server serves %q", name, s.cfg.ModelName), "model")
	}
	return nil
}

func newID(prefix string) string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// chat serves /v1/chat/completions. A conversation is personalised by its
// first user message: the rows (after BOS, at the conversation's start)
// and the retrieved items (in that message) are those of its opening, so
// that turn N's input is the start of turn N+1's and a slot's KV serves
// the next turn (see cache.go). A single-turn request is personalised by
// its one message, as generate does.
func (s *Server) chat(w http.ResponseWriter, r *http.Request, c caller) *apiError {
	var req chatRequest
	if err := decodeCompletion(r, &req); err != nil {
		return err
	}
	lp, aerr := chatLogprobsRequest(req.Logprobs, req.TopLogprobs)
	if aerr != nil {
		return aerr
	}
	req.logprobs = lp
	msgs, first, last, aerr := chatMessages(req.Messages)
	if aerr != nil {
		return aerr
	}
	query, latest := "", ""
	if first >= 0 {
		query, latest = msgs[first].Content, msgs[last].Content
	}
	lay := func(pr persona.Request) (*persona.Turn, error) {
		return s.chatTurns.Lay(opening(pr, msgs, first, last))
	}
	if aerr := s.checkRemember(r.Context(), c, &req, latest); aerr != nil {
		return aerr
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	p, aerr := s.prepare(ctx, c, req.samplingParams, query, lay)
	if aerr != nil {
		return aerr
	}
	aerr = s.run(w, r, p, cancel, s.chatAnswer(p, req.samplingParams.logprobs))
	if aerr == nil && req.Remember && r.Context().Err() == nil {
		s.remember(r.Context(), p.user, latest)
	}
	return aerr
}

// chatMessages checks a request's messages and returns them with the
// indexes of the first and the last user message (-1: none).
func chatMessages(in []chatMessage) (msgs []llama.ChatMessage, first, last int, aerr *apiError) {
	if len(in) == 0 {
		return nil, -1, -1, withParam(badRequest("", "messages must not be empty"), "messages")
	}
	msgs = make([]llama.ChatMessage, len(in))
	first, last = -1, -1
	for i, m := range in {
		switch m.Role {
		case "system", "developer", "user", "assistant":
		default:
			return nil, -1, -1, withParam(badRequest("", "messages[%d]: role %q is not supported (system, developer, user, assistant)", i, m.Role), "messages")
		}
		role := m.Role
		if role == "developer" {
			role = "system"
		}
		if !utf8.ValidString(string(m.Content)) {
			return nil, -1, -1, withParam(badRequest("", "messages[%d]: content is not valid UTF-8", i), "messages")
		}
		msgs[i] = llama.ChatMessage{Role: role, Content: string(m.Content)}
		if role == "user" {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	return msgs, first, last, nil
}

func (s *Server) completions(w http.ResponseWriter, r *http.Request, c caller) *apiError {
	var req completionRequest
	if err := decodeCompletion(r, &req); err != nil {
		return err
	}
	lp, aerr := completionLogprobsRequest(req.Logprobs)
	if aerr != nil {
		return aerr
	}
	req.logprobs = lp
	if len(req.Prompt) != 1 {
		return withParam(badRequest("", "prompt must be one string (got %d)", len(req.Prompt)), "prompt")
	}
	prompt := req.Prompt[0]
	if !utf8.ValidString(prompt) {
		return withParam(badRequest("", "prompt is not valid UTF-8"), "prompt")
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	p, aerr := s.prepare(ctx, c, req.samplingParams, prompt, s.layCompletion)
	if aerr != nil {
		return aerr
	}
	return s.run(w, r, p, cancel, s.completionAnswer(p, req.samplingParams.logprobs))
}

// layCompletion lays out a completion's prompt as the persona package
// does: BOS, the retrieved items (pplug+bm25), the rows, the rest.
func (s *Server) layCompletion(pr persona.Request) (*persona.Turn, error) {
	return s.promptTurns.Lay(pr, persona.Conversation{Prompt: pr.Prompt})
}

// opening is what the turn builder lays out for a chat request personalised
// by its first user message (see chat): that message becomes the
// request's prompt text (its retrieved items first), and the last one is
// answered as it is. A conversation without a user message keeps its
// system messages as the system prompt and answers an empty user turn.
func opening(req persona.Request, msgs []llama.ChatMessage, first, last int) (persona.Request, persona.Conversation) {
	if first < 0 {
		var sys []string
		for _, m := range msgs {
			if m.Role == "system" {
				sys = append(sys, m.Content)
			}
		}
		return req, persona.Conversation{System: strings.Join(sys, "\n\n")}
	}
	sent := slices.Clone(msgs)
	sent[first].Content = req.Prompt
	req.Prompt = sent[last].Content
	return req, persona.Conversation{Messages: sent}
}

func (s *Server) embeddings(w http.ResponseWriter, r *http.Request, _ caller) *apiError {
	var req embeddingRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if err := s.checkModel(req.Model); err != nil {
		return err
	}
	if s.cfg.Encoder == nil {
		return errf(http.StatusNotImplemented, "invalid_request_error", "", "this server has no encoder")
	}
	if len(req.Input) == 0 || len(req.Input) > 256 {
		return withParam(badRequest("", "input must hold 1 to 256 strings"), "input")
	}
	if req.EncodingFormat != "" && req.EncodingFormat != "float" && req.EncodingFormat != "base64" {
		return withParam(badRequest("", "encoding_format %q is not supported: give float or base64", req.EncodingFormat), "encoding_format")
	}
	for i, t := range req.Input {
		if t == "" || !utf8.ValidString(t) {
			return withParam(badRequest("", "input[%d] is empty or not valid UTF-8", i), "input")
		}
	}
	vecs, err := s.pers.encode(r.Context(), req.Input)
	if err != nil {
		return errf(http.StatusInternalServerError, "server_error", "", "encode: %v", err)
	}
	data := make([]any, len(vecs))
	ntok := 0
	for i, v := range vecs {
		data[i] = map[string]any{"object": "embedding", "index": i, "embedding": encodeEmbedding(v, req.EncodingFormat)}
		if toks, err := s.cfg.Encoder.Model().Tokenize(req.Input[i], true, false); err == nil {
			ntok += len(toks)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data, "model": s.cfg.ModelName,
		"usage": map[string]int{"prompt_tokens": ntok, "total_tokens": ntok}})
	return nil
}

// encodeEmbedding is a vector as OpenAI sends it: a list of numbers, or
// for "base64" its little-endian float32 bytes in standard base64 (what
// the openai npm and Python SDKs ask for by default).
func encodeEmbedding(v []float32, format string) any {
	if format != "base64" {
		return v
	}
	b := make([]byte, 0, 4*len(v))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return base64.StdEncoding.EncodeToString(b)
}
