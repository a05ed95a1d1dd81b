// Package server is pplug's OpenAI-compatible HTTP server: chat and text
// completions (streamed as server-sent events or not), models, embeddings
// and health, where a request's "user" field selects that user's persona.
// Profiles live in a persona/store database with routes to manage users
// and their history items. One scheduler runs every request on -np
// sequences of one llama.cpp context.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

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
	// CacheSlots are sequences beyond the NSeqMax running ones that keep
	// the KV of ended requests: up to NSeqMax+CacheSlots conversations
	// keep their prefix, and a request that starts like one of them (its
	// next turn) decodes only the rest (see cache.go). The KV cache (-c)
	// bounds them too: idle prefixes are evicted least recently used
	// first when a request needs room. 0: no prefix is kept.
	CacheSlots int
	// Method is the personalisation requests get unless they name one
	// ("pplug": {"method": ...}); empty: the plug's best (see bestMethod).
	Method persona.Method
	// WriteTimeout bounds each write to a client; a client that stops
	// reading longer than this is dropped and its sequence freed. Default 30 s.
	WriteTimeout time.Duration
	Logger       *slog.Logger
}

// Server serves the routes of the package documentation.
type Server struct {
	cfg         Config
	lctx        *llama.Context
	sched       *scheduler
	pers        *personalizer
	chatTurns   *persona.Builder // chat turns: the model's template or the one fallback
	promptTurns *persona.Builder // completions: the prompt as it is
	eog         []llama.Token    // the vocabulary's end-of-generation tokens (ignore_eos)
	log         *slog.Logger
	created     int64
}

// New creates the context and starts the scheduler.
func New(cfg Config) (*Server, error) {
	if cfg.Model == nil || cfg.Store == nil {
		return nil, errors.New("server: a model and a profile store are required")
	}
	if err := CheckAPIKey(cfg.APIKey); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	cfg.setDefaults()
	pz, err := cfg.personalizer()
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	co := cfg.Context
	parallel := max(co.NSeqMax, 1)
	if cfg.CacheSlots < 0 || parallel+cfg.CacheSlots > maxSequences {
		return nil, fmt.Errorf("server: %d sequences and %d cache slots: give at most %d in all", parallel, cfg.CacheSlots, maxSequences)
	}
	co.NSeqMax = parallel + cfg.CacheSlots
	co.KVUnified = true
	co.Embeddings = false
	lctx, err := cfg.Model.NewContext(co)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, lctx: lctx, log: cfg.Logger, created: time.Now().Unix(), eog: eogTokens(cfg.Model)}
	tmpl, err := persona.ChooseTemplate(cfg.Model, "")
	if err != nil {
		lctx.Close()
		return nil, fmt.Errorf("server: %w", err)
	}
	if tmpl.Notice != "" {
		s.log.Info(tmpl.Notice)
	}
	s.chatTurns = &persona.Builder{LLM: cfg.Model, Template: &tmpl}
	s.promptTurns = &persona.Builder{LLM: cfg.Model}
	s.pers = newPersonalizer(pz, cfg.Encoder, cfg.Store, cfg.MaxItems)
	s.sched = newScheduler(lctx, parallel, cfg.CacheSlots > 0, cfg.MaxQueue, cfg.Logger)
	return s, nil
}

func (cfg *Config) setDefaults() {
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
}

// personalizer is the Personalizer of the default method (Config.Method,
// or the plug's best: see bestMethod), checked.
func (cfg *Config) personalizer() (*persona.Personalizer, error) {
	method := cfg.Method
	if method == "" {
		method = bestMethod(cfg.Personalizer)
	}
	pz := cfg.Personalizer.WithMethod(method)
	pz.LLM = cfg.Model
	if cfg.Encoder == nil {
		cfg.Encoder = pz.Encoder
	}
	return pz, pz.Check()
}

// bestMethod is what a server serves by default: with a plug, the method
// it was trained for (persona.Plug.Method: pplug+bm25 for a plug trained
// with --retrieve-k, pplug otherwise); without one, the Personalizer's.
func bestMethod(pz *persona.Personalizer) persona.Method {
	if pz.Plug == nil {
		return pz.Method
	}
	return pz.Plug.Method()
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

// Method is the personalisation requests get unless they name one.
func (s *Server) Method() persona.Method { return s.pers.pz.Method }

// maxSequences bounds NSeqMax+CacheSlots (llama.cpp's LLAMA_MAX_SEQ).
const maxSequences = 256

// NSeq is the number of requests decoded in parallel.
func (s *Server) NSeq() int { return s.sched.parallel }

// NCacheSlots is the number of sequences beyond NSeq that keep prefixes.
func (s *Server) NCacheSlots() int { return s.lctx.NSeqMax() - s.sched.parallel }

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
