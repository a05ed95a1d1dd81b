package server

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/pplug/pplug/llama"
	"github.com/pplug/pplug/persona"
	"github.com/pplug/pplug/persona/profile"
	"github.com/pplug/pplug/persona/store"
)

// This file is the server's personalisation glue: from a user id to the
// model input, the way `pplug generate --profile --plug` builds it (the
// query's persona rows, then persona.Inputs; retrieval when no plug is
// loaded). It is meant to move into a persona.Personalizer.

// Persona modes, reported in the X-PPlug-Persona response header.
const (
	modeNone      = "none"
	modePPlug     = "pplug"
	modeRetrieval = "retrieval"
)

// maxCachedUsers bounds the prepared users kept in memory.
const maxCachedUsers = 256

type personalizer struct {
	m        *llama.Model
	rt       *persona.Runtime // nil: no plug, retrieval
	enc      *persona.Encoder // the history encoder (nil: none)
	st       *store.Store
	topK     int
	maxItems int

	encMu sync.Mutex // an Encoder is not safe for concurrent use

	mu    sync.Mutex
	users map[string]*preparedUser
}

// preparedUser is a user's history ready for queries, valid for one
// revision of the user's items.
type preparedUser struct {
	rev     int64
	items   []profile.Item
	user    *persona.User      // PPlug
	retr    *persona.Retrieval // retrieval
	refs    int
	evicted bool
}

func (p *personalizer) release(u *preparedUser) {
	p.mu.Lock()
	defer p.mu.Unlock()
	u.refs--
	if u.evicted && u.refs == 0 && u.user != nil {
		_ = u.user.Close()
	}
}

func (p *personalizer) evictLocked(id string) {
	if u := p.users[id]; u != nil {
		delete(p.users, id)
		u.evicted = true
		if u.refs == 0 && u.user != nil {
			_ = u.user.Close()
		}
	}
}

func (p *personalizer) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id := range p.users {
		p.evictLocked(id)
	}
}

// acquire returns the prepared history of a user (nil when the user is
// unknown or has no items). Item embeddings missing for this encoder are
// computed once and stored.
func (p *personalizer) acquire(ctx context.Context, id string) (*preparedUser, error) {
	u, err := p.st.User(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	if c := p.users[id]; c != nil && c.rev == u.Rev {
		c.refs++
		p.mu.Unlock()
		return c, nil
	}
	p.mu.Unlock()

	items, err := p.st.Items(ctx, id)
	if err != nil {
		return nil, err
	}
	if len(items) > p.maxItems {
		items = items[len(items)-p.maxItems:] // the most recent
	}
	if len(items) == 0 {
		return nil, nil
	}
	pu := &preparedUser{rev: u.Rev, items: store.ProfileItems(items), refs: 1}
	if p.rt == nil {
		pu.retr = persona.NewRetrieval(pu.items)
	} else {
		keys, err := p.embeddings(ctx, id, items)
		if err != nil {
			return nil, err
		}
		if pu.user, err = p.rt.Plug.NewUser(p.rt.Backend, pu.items, keys); err != nil {
			return nil, fmt.Errorf("user %q: %w", id, err)
		}
	}
	p.mu.Lock()
	p.evictLocked(id)
	if len(p.users) >= maxCachedUsers {
		for other := range p.users {
			p.evictLocked(other)
			break
		}
	}
	p.users[id] = pu
	pu.refs++
	p.mu.Unlock()
	return pu, nil
}

// embeddings reads the items' vectors for the encoder, encoding (in one
// call, like EncodeCached) and storing those that are missing.
func (p *personalizer) embeddings(ctx context.Context, user string, items []store.Item) ([][]float32, error) {
	have, err := p.st.Embeddings(ctx, user, p.enc.ID())
	if err != nil {
		return nil, err
	}
	keys := make([][]float32, len(items))
	var missing []int
	for i, it := range items {
		if v := have[it.Seq]; len(v) == p.enc.Dim() {
			keys[i] = v
		} else {
			missing = append(missing, i)
		}
	}
	if len(missing) == 0 {
		return keys, nil
	}
	texts := make([]string, len(missing))
	seqs := make([]int64, len(missing))
	for k, i := range missing {
		texts[k], seqs[k] = items[i].Text, items[i].Seq
	}
	p.encMu.Lock()
	vecs, err := p.enc.Encode(ctx, texts, "", nil)
	p.encMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("encode the history of %q: %w", user, err)
	}
	for k, i := range missing {
		keys[i] = vecs[k]
	}
	if err := p.st.PutEmbeddings(ctx, p.enc.ID(), seqs, vecs); err != nil {
		return nil, err
	}
	return keys, nil
}

// personaInput is what a user's persona contributes to one request.
type personaInput struct {
	mode string
	rows []float32 // PPlug rows for the query
	// augment rewrites the text the persona looks at (retrieval puts the
	// top history items in front of it); identity otherwise.
	augment func(string) string
}

// forQuery prepares the persona of user for a query text.
func (p *personalizer) forQuery(ctx context.Context, user, query string) (personaInput, error) {
	none := personaInput{mode: modeNone, augment: func(s string) string { return s }}
	if user == "" {
		return none, nil
	}
	pu, err := p.acquire(ctx, user)
	if err != nil || pu == nil {
		return none, err
	}
	defer p.release(pu)
	if pu.retr != nil {
		top := pu.retr.Top(query, p.topK)
		items := pu.items
		return personaInput{mode: modeRetrieval, augment: func(s string) string { return persona.RetrievalPrompt(items, top, s) }}, nil
	}
	p.encMu.Lock()
	rows, _, err := p.rt.QueryRows(ctx, pu.user, query)
	p.encMu.Unlock()
	if err != nil {
		return none, fmt.Errorf("persona of %q: %w", user, err)
	}
	return personaInput{mode: modePPlug, rows: rows, augment: none.augment}, nil
}

// inputs lays out the model input of a prompt (the already augmented
// text): BOS, the persona rows, the prompt's tokens.
func (p *personalizer) inputs(pi personaInput, prompt string) ([]llama.Input, int, error) {
	toks, err := p.m.Tokenize(prompt, true, true)
	if err != nil {
		return nil, 0, err
	}
	in := persona.Inputs(p.m, pi.rows, toks)
	return in, llama.InputsLen(in, p.m.NEmbd()), nil
}

// encode embeds texts with the history encoder (for /v1/embeddings).
func (p *personalizer) encode(ctx context.Context, texts []string) ([][]float32, error) {
	p.encMu.Lock()
	defer p.encMu.Unlock()
	return p.enc.Encode(ctx, texts, "", nil)
}
