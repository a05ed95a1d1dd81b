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
	pz       *persona.Personalizer
	enc      *persona.Encoder // history items and /v1/embeddings (nil: none)
	st       *store.Store
	maxItems int

	mu    sync.Mutex
	users map[string]*preparedUser
	live  int // prepared personas not closed yet

	// seen, when set (tests), gets every personalised request.
	seen func(user string, req persona.Request)
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

// forgetLocked takes a user out of the cache (p.mu held).
func (p *personalizer) forgetLocked(id string) {
	if u := p.users[id]; u != nil {
		delete(p.users, id)
		p.unrefLocked(u)
	}
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
	for id := range p.users {
		p.forgetLocked(id)
	}
}

// cached is the number of prepared users in the cache (tests).
func (p *personalizer) cached() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.users)
}

// acquire returns the prepared persona of a user (nil when the user has
// no items; store.ErrNotFound when the store does not know them); release
// it after use. Item embeddings missing from the Personalizer's cache are
// computed once and stored there.
func (p *personalizer) acquire(ctx context.Context, id string) (*preparedUser, error) {
	u, err := p.st.User(ctx, id)
	if err != nil {
		return nil, err // store.ErrNotFound for an unknown user
	}
	p.mu.Lock()
	if c := p.users[id]; c != nil && c.rev == u.Rev {
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
	pers, _, err := p.pz.Prepare(ctx, store.ProfileItems(items), nil)
	if err != nil {
		return nil, fmt.Errorf("user %q: %w", id, err)
	}
	pu := &preparedUser{rev: u.Rev, p: pers, refs: 2} // the cache's and the caller's
	p.mu.Lock()
	defer p.mu.Unlock()
	p.live++
	p.forgetLocked(id)
	for other := range p.users {
		if len(p.users) < maxCachedUsers {
			break
		}
		p.forgetLocked(other)
	}
	p.users[id] = pu
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
	req, _, err := p.personalize(ctx, user, query)
	return req, err
}

// personalize is forQuery that also says why a named user got no persona
// (reasonUnknownUser, reasonNoHistory; "" otherwise).
func (p *personalizer) personalize(ctx context.Context, user, query string) (persona.Request, string, error) {
	none := persona.Request{Method: persona.MethodNone, Prompt: query}
	if user == "" {
		return none, "", nil
	}
	pu, err := p.acquire(ctx, user)
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
// prompt text already in it): BOS, the request's rows, the prompt's tokens;
// and the keys of its positions for the prefix cache (inputKeys).
func (p *personalizer) inputs(req persona.Request, prompt string) ([]llama.Input, []uint64, error) {
	m := p.pz.LLM
	toks, err := m.Tokenize(prompt, true, true)
	if err != nil {
		return nil, nil, err
	}
	in := persona.Inputs(m, req.Rows, toks)
	keys := inputKeys(m, req.Rows, toks)
	if n := llama.InputsLen(in, m.NEmbd()); n != len(keys) {
		return nil, nil, fmt.Errorf("the input takes %d positions but has %d prefix keys (a layout the prefix cache does not know)", n, len(keys))
	}
	return in, keys, nil
}

// encode embeds texts with the history encoder (for /v1/embeddings).
func (p *personalizer) encode(ctx context.Context, texts []string) ([][]float32, error) {
	return p.enc.Encode(ctx, texts, "", nil)
}
