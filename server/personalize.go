package server

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"

	"github.com/pplug/pplug/persona"
	"github.com/pplug/pplug/persona/profile"
	"github.com/pplug/pplug/persona/store"
)

// This file keeps the server's prepared personas: a user's history from the
// store (the newest Config.MaxItems by profile.KeepRecent, the one max-items
// rule), made into a persona.Persona by the Personalizer of the request's
// method (which decides, as everywhere else, how a request is
// personalised; item embeddings come from its persona.Cache, the one
// embedding cache every command shares) and kept in a persona.Personas for
// as long as the user's items do not change.

type personalizer struct {
	pz       *persona.Personalizer // the default method's
	methods  map[persona.Method]*persona.Personalizer
	enc      *persona.Encoder // history items and /v1/embeddings (nil: none)
	st       *store.Store
	maxItems int
	held     persona.Personas // keyed by personaKey
	made     madeRequests

	// seen, when set (tests), gets every personalised request.
	seen func(user string, req persona.Request)
}

// newPersonalizer serves pz's method by default and every method that
// pz's parts allow on request (see methodsFor).
func newPersonalizer(pz *persona.Personalizer, enc *persona.Encoder, st *store.Store, maxItems int) *personalizer {
	p := &personalizer{pz: pz, enc: enc, st: st, maxItems: maxItems, methods: map[persona.Method]*persona.Personalizer{}}
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

// personaKey names a user's persona for one method in the Personas.
func personaKey(id string, m persona.Method) string { return string(m) + "\x00" + id }

// forget takes a user out of the cache (their personas are freed once the
// requests using them end).
func (p *personalizer) forget(id string) {
	for m := range p.methods {
		p.held.Forget(personaKey(id, m))
	}
}

func (p *personalizer) close() { p.held.Close() }

// cached is the number of prepared personas in the cache (tests).
func (p *personalizer) cached() int { return p.held.Len() }

// live is the number of prepared personas not freed yet (tests).
func (p *personalizer) live() int { return p.held.Live() }

// acquire returns the prepared persona of a user for a method (nil when
// the user has no items; store.ErrNotFound when the store does not know
// them); release it after use.
func (p *personalizer) acquire(ctx context.Context, id string, method persona.Method) (*persona.HeldPersona, error) {
	pz := p.methods[method]
	if pz == nil {
		return nil, fmt.Errorf("method %s is not served here", method)
	}
	u, err := p.st.User(ctx, id)
	if err != nil {
		return nil, err // store.ErrNotFound for an unknown user
	}
	return p.held.Acquire(ctx, personaKey(id, method), u.Rev, func(ctx context.Context) (*persona.Persona, error) {
		return p.prepare(ctx, pz, id)
	})
}

// prepare makes a user's persona for pz from the store's items (nil: the
// user has none, or was deleted since it was read).
func (p *personalizer) prepare(ctx context.Context, pz *persona.Personalizer, id string) (*persona.Persona, error) {
	items, err := p.st.Items(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	kept, _ := profile.KeepRecent(store.ProfileItems(items), p.maxItems)
	if len(kept) == 0 {
		return nil, nil
	}
	pers, _, err := pz.Prepare(ctx, kept, nil)
	if err != nil {
		return nil, fmt.Errorf("user %q: %w", id, err)
	}
	return pers, nil
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
	defer pu.Release()
	key := madeKey{pu, sha256.Sum256([]byte(query))}
	req, ok := p.made.get(key)
	if !ok {
		if req, err = pu.Persona.Personalize(ctx, query); err != nil {
			return none, "", fmt.Errorf("persona of %q: %w", user, err)
		}
		p.made.put(key, req)
	}
	if p.seen != nil {
		p.seen(user, req)
	}
	return req, "", nil
}

// madeRequests keeps the requests personalised last, by prepared persona
// and query: every turn of a conversation is personalised by its first
// user message, whose request (retrieval, the query's encoding, the rows)
// is the same each time for one revision of the user's items. Requests
// are read-only once made.
type madeRequests struct {
	mu    sync.Mutex
	byKey map[madeKey]persona.Request
	order []madeKey // oldest first
	hits  int       // tests
}

// madeKey names a request: the persona held for one revision of a user's
// items and method (a new revision is a new one), and the query's hash.
type madeKey struct {
	held  *persona.HeldPersona
	query [sha256.Size]byte
}

// maxMadeRequests bounds the requests kept.
const maxMadeRequests = 256

func (m *madeRequests) get(k madeKey) (persona.Request, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.byKey[k]
	if ok {
		m.hits++
	}
	return r, ok
}

func (m *madeRequests) put(k madeKey, r persona.Request) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.byKey == nil {
		m.byKey = map[madeKey]persona.Request{}
	}
	if _, ok := m.byKey[k]; ok {
		return
	}
	if len(m.order) >= maxMadeRequests {
		delete(m.byKey, m.order[0])
		m.order[0] = madeKey{}
		m.order = m.order[1:]
	}
	m.byKey[k] = r
	m.order = append(m.order, k)
}

// encode embeds texts with the history encoder (for /v1/embeddings).
func (p *personalizer) encode(ctx context.Context, texts []string) ([][]float32, error) {
	return p.enc.Encode(ctx, texts, "", nil)
}
