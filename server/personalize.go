package server

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/pplug/pplug/llama"
	"github.com/pplug/pplug/persona"
	"github.com/pplug/pplug/persona/store"
)

// This file keeps the server's prepared personas: a user's history from the
// store, made into a persona.Persona by the server's persona.Personalizer
// (which decides, as everywhere else, how a request is personalised) and
// cached for as long as the user's items do not change.

// maxCachedUsers bounds the prepared users kept in memory.
const maxCachedUsers = 256

type personalizer struct {
	pz       *persona.Personalizer // the default method's
	methods  map[persona.Method]*persona.Personalizer
	enc      *persona.Encoder // history items and /v1/embeddings (nil: none)
	st       *store.Store
	maxItems int

	mu    sync.Mutex
	users map[userMethod]*preparedUser
	live  int // prepared personas not closed yet

	// seen, when set (tests), gets every personalised request.
	seen func(user string, req persona.Request)
}

// userMethod keys the prepared personas: one per user and method.
type userMethod struct {
	id     string
	method persona.Method
}

// newPersonalizer serves pz's method by default and every method that
// pz's parts allow on request (see methodsFor).
func newPersonalizer(pz *persona.Personalizer, enc *persona.Encoder, st *store.Store, maxItems int) *personalizer {
	p := &personalizer{pz: pz, enc: enc, st: st, maxItems: maxItems, users: map[userMethod]*preparedUser{},
		methods: map[persona.Method]*persona.Personalizer{}}
	for _, m := range methodsFor(pz) {
		p.methods[m] = pz.WithMethod(m)
	}
	p.methods[pz.Method] = pz
	return p
}

// methodsFor are the methods a Personalizer's parts can serve: those
// without a plug always, the PPlug ones with a plug and its encoder.
func methodsFor(pz *persona.Personalizer) []persona.Method {
	var out []persona.Method
	for _, m := range persona.Methods() {
		if !m.NeedsPlug() || pz.Plug != nil && pz.Encoder != nil && pz.Backend != nil {
			out = append(out, m)
		}
	}
	return out
}

// preparedUser is a user's persona, valid for one revision of the user's
// items. refs counts its holders: the cache (while the entry is in it) and
// every request using it; the last to let go closes it.
type preparedUser struct {
	rev  int64
	p    *persona.Persona
	refs int
}

// unrefLocked drops one reference (p.mu held).
func (p *personalizer) unrefLocked(u *preparedUser) {
	u.refs--
	if u.refs == 0 {
		_ = u.p.Close()
		p.live--
	}
}

func (p *personalizer) release(u *preparedUser) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.unrefLocked(u)
}

// forgetLocked takes a user's personas out of the cache (p.mu held).
func (p *personalizer) forgetLocked(id string) {
	for k, u := range p.users {
		if k.id == id {
			p.dropLocked(k, u)
		}
	}
}

func (p *personalizer) dropLocked(k userMethod, u *preparedUser) {
	delete(p.users, k)
	p.unrefLocked(u)
}

// forget takes a user out of the cache (their persona is freed once the
// requests using it end).
func (p *personalizer) forget(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.forgetLocked(id)
}

func (p *personalizer) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, u := range p.users {
		p.dropLocked(k, u)
	}
}

// cached is the number of prepared users in the cache (tests).
func (p *personalizer) cached() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.users)
}

// acquire returns the prepared persona of a user for a method (nil when
// the user has no items; store.ErrNotFound when the store does not know
// them); release it after use. Item embeddings missing from the
// Personalizer's cache are computed once and stored there.
func (p *personalizer) acquire(ctx context.Context, id string, method persona.Method) (*preparedUser, error) {
	pz := p.methods[method]
	if pz == nil {
		return nil, fmt.Errorf("method %s is not served here", method)
	}
	u, err := p.st.User(ctx, id)
	if err != nil {
		return nil, err // store.ErrNotFound for an unknown user
	}
	key := userMethod{id, method}
	p.mu.Lock()
	if c := p.users[key]; c != nil && c.rev == u.Rev {
		c.refs++
		p.mu.Unlock()
		return c, nil
	}
	p.mu.Unlock()

	items, err := p.st.Items(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil // deleted since it was read: no persona
	}
	if err != nil {
		return nil, err
	}
	if len(items) > p.maxItems {
		items = items[len(items)-p.maxItems:] // the most recent
	}
	if len(items) == 0 {
		return nil, nil
	}
	// The item embeddings come from the Personalizer's cache (one per
	// encoder and text, shared with every other command), made once.
	pers, _, err := pz.Prepare(ctx, store.ProfileItems(items), nil)
	if err != nil {
		return nil, fmt.Errorf("user %q: %w", id, err)
	}
	pu := &preparedUser{rev: u.Rev, p: pers, refs: 2} // the cache's and the caller's
	p.mu.Lock()
	defer p.mu.Unlock()
	p.live++
	if old := p.users[key]; old != nil {
		p.dropLocked(key, old)
	}
	for other, o := range p.users {
		if len(p.users) < maxCachedUsers {
			break
		}
		p.dropLocked(other, o)
	}
	p.users[key] = pu
	return pu, nil
}

// Why a request that names a user gets no persona.
const (
	reasonUnknownUser = "unknown-user" // the store has no such user
	reasonNoHistory   = "no-history"   // the user has no items yet
)

// forQuery personalises a query text for a user: the request's prompt
// text (the query after the retrieved items) and rows. No user, an
// unknown one or one without items gets the query alone.
func (p *personalizer) forQuery(ctx context.Context, user, query string) (persona.Request, error) {
	req, _, err := p.personalize(ctx, user, p.pz.Method, query)
	return req, err
}

// personalize is forQuery with a method that also says why a named user
// got no persona (reasonUnknownUser, reasonNoHistory; "" otherwise).
func (p *personalizer) personalize(ctx context.Context, user string, method persona.Method, query string) (persona.Request, string, error) {
	none := persona.Request{Method: persona.MethodNone, Prompt: query}
	if user == "" || method == persona.MethodNone {
		return none, "", nil
	}
	pu, err := p.acquire(ctx, user, method)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return none, reasonUnknownUser, nil
	case err != nil:
		return none, "", err
	case pu == nil:
		return none, reasonNoHistory, nil
	}
	defer p.release(pu)
	req, err := pu.p.Personalize(ctx, query)
	if err != nil {
		return none, "", fmt.Errorf("persona of %q: %w", user, err)
	}
	if p.seen != nil {
		p.seen(user, req)
	}
	return req, "", nil
}

// inputs lays out the model input of a rendered prompt (the request's
// prompt text already in it) the persona.Layout way: BOS, the prompt's
// context (the retrieved items of pplug+bm25, when the prompt starts with
// them; "" puts the rows right after BOS), the request's rows, the rest.
// It also returns the keys of its positions for the prefix cache.
func (p *personalizer) inputs(req persona.Request, prompt, context string) ([]llama.Input, []uint64, error) {
	m := p.pz.LLM
	if len(req.Rows) == 0 {
		context = "" // nothing to place: the prompt as one text
	}
	toks, at, err := persona.PromptTokens(m, context, prompt)
	if err != nil {
		return nil, nil, err
	}
	in := persona.InputsAt(m, req.Rows, toks, at)
	keys := inputKeys(m, req.Rows, toks, at)
	if n := llama.InputsLen(in, m.NEmbd()); n != len(keys) {
		return nil, nil, fmt.Errorf("the input takes %d positions but has %d prefix keys (a layout the prefix cache does not know)", n, len(keys))
	}
	return in, keys, nil
}

// encode embeds texts with the history encoder (for /v1/embeddings).
func (p *personalizer) encode(ctx context.Context, texts []string) ([][]float32, error) {
	return p.enc.Encode(ctx, texts, "", nil)
}
