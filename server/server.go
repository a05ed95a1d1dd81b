// Package server is pplug's OpenAI-compatible HTTP server: chat and text
// completions (streamed as server-sent events or not), models, embeddings
// and health, where a request's "user" field selects that user's persona.
// Profiles live in a persona/store database with routes to manage users
// and their history items. One scheduler runs every request on -np
// sequences of one llama.cpp context.
package server

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pplug/pplug/llama"
	"github.com/pplug/pplug/persona"
	"github.com/pplug/pplug/persona/profile"
	"github.com/pplug/pplug/persona/store"
)

// Config configures New.
type Config struct {
	Model     *llama.Model
	ModelName string // the id /v1/models lists and requests name
	// Personalizer decides how a user's requests are personalised (its
	// LLM is Model); nil serves personas by retrieval (the top RetrieveK
	// BM25 items put into the prompt).
	Personalizer *persona.Personalizer
	// Encoder embeds history items and /v1/embeddings inputs (the
	// Personalizer's encoder when it has one).
	Encoder *persona.Encoder
	Store   *store.Store
	// Context configures the llama.cpp context; NSeqMax is -np. KVUnified
	// is always on: the sequences share one KV buffer.
	Context llama.ContextOptions
	// APIKey, when set, is required as "Authorization: Bearer KEY" (users
	// may use their own key for their own data and completions).
	APIKey       string
	MaxBodyBytes int64 // default 1 MiB
	MaxTokens    int   // most tokens one request may generate; default 1024
	MaxQueue     int   // requests waiting beyond -np; default 256
	RetrieveK    int   // history items in the prompt in retrieval mode; default persona.DefaultTopK
	MaxItems     int   // most recent history items per user; default profile.DefaultMaxItems
	// WriteTimeout bounds each write to a client; a client that stops
	// reading longer than this is dropped and its sequence freed. Default 30 s.
	WriteTimeout time.Duration
	Logger       *slog.Logger
}

// Server serves the routes of the package documentation.
type Server struct {
	cfg     Config
	lctx    *llama.Context
	sched   *scheduler
	pers    *personalizer
	tmpl    string // chat template (model's own or llama.cpp's chatml)
	stops   []string
	eog     []llama.Token // the vocabulary's end-of-generation tokens (ignore_eos)
	log     *slog.Logger
	created int64
}

// New creates the context and starts the scheduler.
func New(cfg Config) (*Server, error) {
	if cfg.Model == nil || cfg.Store == nil {
		return nil, errors.New("server: a model and a profile store are required")
	}
	if err := CheckAPIKey(cfg.APIKey); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.MaxTokens <= 0 {
		cfg.MaxTokens = 1024
	}
	if cfg.MaxQueue <= 0 {
		cfg.MaxQueue = 256
	}
	if cfg.RetrieveK <= 0 {
		cfg.RetrieveK = persona.DefaultTopK
	}
	if cfg.MaxItems <= 0 {
		cfg.MaxItems = profile.DefaultMaxItems
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ModelName == "" {
		cfg.ModelName = "pplug"
	}
	if cfg.Personalizer == nil {
		cfg.Personalizer = &persona.Personalizer{Method: persona.MethodBM25, K: cfg.RetrieveK}
	}
	pz := cfg.Personalizer.WithMethod(cfg.Personalizer.Method)
	pz.LLM = cfg.Model
	if cfg.Encoder == nil {
		cfg.Encoder = pz.Encoder
	}
	if err := pz.Check(); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	co := cfg.Context
	co.NSeqMax = max(co.NSeqMax, 1)
	co.KVUnified = true
	co.Embeddings = false
	lctx, err := cfg.Model.NewContext(co)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, lctx: lctx, log: cfg.Logger, created: time.Now().Unix(), eog: eogTokens(cfg.Model)}
	s.tmpl = cfg.Model.Info().ChatTemplate
	if s.tmpl != "" {
		if _, err := llama.ApplyChatTemplate(s.tmpl, []llama.ChatMessage{{Role: "user", Content: "hi"}}, true); err != nil {
			s.tmpl = ""
		}
	}
	if s.tmpl == "" {
		// What llama-server does for a model without a usable template.
		s.tmpl, s.stops = "chatml", []string{"<|im_end|>", "<|im_start|>"}
		s.log.Info("the model has no chat template llama.cpp can apply: using chatml")
	}
	s.pers = &personalizer{pz: pz, enc: cfg.Encoder, st: cfg.Store, maxItems: cfg.MaxItems, users: map[string]*preparedUser{}}
	s.sched = newScheduler(lctx, cfg.MaxQueue, cfg.Logger)
	return s, nil
}

// eogTokens lists the tokens that end generation.
func eogTokens(m *llama.Model) []llama.Token {
	var eog []llama.Token
	for t := range llama.Token(m.NVocab()) {
		if m.IsEOG(t) {
			eog = append(eog, t)
		}
	}
	return eog
}

// Close stops the scheduler (ending requests in flight) and frees the context.
func (s *Server) Close() error {
	s.sched.close()
	s.pers.close()
	return s.lctx.Close()
}

// NSeq is the number of parallel sequences.
func (s *Server) NSeq() int { return s.lctx.NSeqMax() }

// NCtx is the KV cache size shared by the sequences.
func (s *Server) NCtx() int { return s.lctx.NCtx() }

// Serve serves HTTP on ln until ctx ends, then shuts down gracefully
// (in-flight requests get up to 5 s).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		_ = hs.Close()
	}
	return nil
}

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

// caller is who a request comes from: the operator (the server's API key,
// or anyone when none is set) or one user (by their own key).
type caller struct {
	admin bool
	user  string
}

func (c caller) mayAccess(user string) bool { return c.admin || c.user == user }

type handler func(w http.ResponseWriter, r *http.Request, c caller) *apiError

func (s *Server) authed(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
		c, aerr := s.authenticate(r)
		if aerr == nil {
			aerr = h(w, r, c)
		}
		if aerr != nil {
			if aerr.status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="pplug"`)
			}
			writeError(w, aerr)
		}
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
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "slots": s.lctx.NSeqMax(), "slots_busy": active, "queued": queued})
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

// prepare validates the sampling fields, resolves the user, builds the
// model input (through the personalisation glue) and the sampler.
func (s *Server) prepare(ctx context.Context, c caller, p samplingParams, query string, render func(persona.Request) (string, error), extraStops []string) (*prepared, *apiError) {
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
	req, why, err := s.pers.personalize(ctx, user, query)
	if err != nil {
		return nil, databaseError("persona", err)
	}
	mode := string(req.Method)
	if why != "" {
		mode += "; reason=" + why
		s.logNoPersona(user, why)
	}
	text, err := render(req)
	if err != nil {
		return nil, badRequest("", "%v", err)
	}
	inputs, n, err := s.pers.inputs(req, text)
	if err != nil {
		return nil, badRequest("", "tokenize the prompt: %v", err)
	}
	if n == 0 {
		return nil, badRequest("", "the prompt is empty")
	}
	room := min(s.lctx.NCtxSeq(), s.lctx.NCtx()) - n
	if maxTok < 0 {
		maxTok = min(s.cfg.MaxTokens, room)
	}
	if room < 1 || maxTok > room {
		return nil, badRequest("context_length_exceeded", "the prompt takes %d positions and max_tokens %d more, the context window has %d (lower max_tokens, shorten the prompt or restart the server with a larger -c)",
			n, maxTok, min(s.lctx.NCtxSeq(), s.lctx.NCtx()))
	}
	opts.EOSBias = req.EOSBias // the plug's length prior where its rows go
	smp, err := s.cfg.Model.NewBiasedSampler(opts, bias)
	if err != nil {
		return nil, samplerError(err)
	}
	stops := append(append([]string(nil), p.Stop...), extraStops...)
	j := &job{ctx: ctx, inputs: inputs, nPos: n, maxTokens: maxTok, sampler: smp, stops: stops, out: newOutput(),
		logprobs: p.logprobs, ignoreEOS: p.IgnoreEOS}
	return &prepared{job: j, mode: mode, stream: p.Stream, usage: p.StreamOptions != nil && p.StreamOptions.IncludeUsage,
		user: user, created: time.Now().Unix()}, nil
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
		j.sampler.Close()
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
	writeJSON(w, http.StatusOK, a.whole(text.String(), probs, finish, usage{j.nPos, gen, j.nPos + gen}))
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
	u := usage{j.nPos, gen, j.nPos + gen}
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
	if len(req.Messages) == 0 {
		return withParam(badRequest("", "messages must not be empty"), "messages")
	}
	msgs := make([]llama.ChatMessage, len(req.Messages))
	last := -1
	for i, m := range req.Messages {
		switch m.Role {
		case "system", "developer", "user", "assistant":
		default:
			return withParam(badRequest("", "messages[%d]: role %q is not supported (system, developer, user, assistant)", i, m.Role), "messages")
		}
		role := m.Role
		if role == "developer" {
			role = "system"
		}
		if !utf8.ValidString(string(m.Content)) {
			return withParam(badRequest("", "messages[%d]: content is not valid UTF-8", i), "messages")
		}
		msgs[i] = llama.ChatMessage{Role: role, Content: string(m.Content)}
		if role == "user" {
			last = i
		}
	}
	query := ""
	if last >= 0 {
		query = msgs[last].Content
	}
	render := func(pr persona.Request) (string, error) {
		sent := append([]llama.ChatMessage(nil), msgs...)
		if last >= 0 {
			sent[last].Content = pr.Prompt
		}
		return llama.ApplyChatTemplate(s.tmpl, sent, true)
	}
	if aerr := s.checkRemember(r.Context(), c, &req, query); aerr != nil {
		return aerr
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	p, aerr := s.prepare(ctx, c, req.samplingParams, query, render, s.stops)
	if aerr != nil {
		return aerr
	}
	aerr = s.run(w, r, p, cancel, s.chatAnswer(p, req.samplingParams.logprobs))
	if aerr == nil && req.Remember && r.Context().Err() == nil {
		s.remember(r.Context(), p.user, query)
	}
	return aerr
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
	p, aerr := s.prepare(ctx, c, req.samplingParams, prompt, func(pr persona.Request) (string, error) { return pr.Prompt, nil }, nil)
	if aerr != nil {
		return aerr
	}
	return s.run(w, r, p, cancel, s.completionAnswer(p, req.samplingParams.logprobs))
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
