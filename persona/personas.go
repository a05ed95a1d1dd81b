package persona

import (
	"context"
	"sync"
)

// Personas keeps the prepared personas of many users (a server's), each
// valid for one revision of the user's items: a request acquires a user's
// persona, which is prepared once per revision, and releases it after
// use. A persona replaced or evicted while requests use it is closed when
// the last of them releases it. At most Max users are kept (0: 256); a
// new one evicts another. It is safe for concurrent use.
type Personas struct {
	Max int

	mu    sync.Mutex
	users map[string]*HeldPersona
	live  int // personas prepared and not closed yet
}

// HeldPersona is a user's persona held by the cache and its users.
type HeldPersona struct {
	Persona *Persona
	rev     int64
	refs    int
	owner   *Personas
}

// DefaultMaxPersonas bounds a Personas without Max.
const DefaultMaxPersonas = 256

// Acquire returns user id's persona for revision rev of their items,
// preparing it with prepare when the cache has none of that revision
// (prepare may return nil: the user has nothing to personalise with, and
// Acquire returns nil). Release the result after use.
func (c *Personas) Acquire(ctx context.Context, id string, rev int64, prepare func(context.Context) (*Persona, error)) (*HeldPersona, error) {
	c.mu.Lock()
	if h := c.users[id]; h != nil && h.rev == rev {
		h.refs++
		c.mu.Unlock()
		return h, nil
	}
	c.mu.Unlock()
	p, err := prepare(ctx)
	if err != nil || p == nil {
		return nil, err
	}
	h := &HeldPersona{Persona: p, rev: rev, refs: 2, owner: c} // the cache's and the caller's
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.users == nil {
		c.users = map[string]*HeldPersona{}
	}
	c.live++
	c.forgetLocked(id)
	max := c.Max
	if max <= 0 {
		max = DefaultMaxPersonas
	}
	for other := range c.users {
		if len(c.users) < max {
			break
		}
		c.forgetLocked(other)
	}
	c.users[id] = h
	return h, nil
}

// Release lets go of an acquired persona. It is safe on nil.
func (h *HeldPersona) Release() {
	if h == nil {
		return
	}
	h.owner.mu.Lock()
	defer h.owner.mu.Unlock()
	h.owner.unrefLocked(h)
}

func (c *Personas) unrefLocked(h *HeldPersona) {
	h.refs--
	if h.refs == 0 {
		_ = h.Persona.Close()
		c.live--
	}
}

func (c *Personas) forgetLocked(id string) {
	if h := c.users[id]; h != nil {
		delete(c.users, id)
		c.unrefLocked(h)
	}
}

// Forget takes a user out of the cache (their persona is closed once the
// requests using it release it).
func (c *Personas) Forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.forgetLocked(id)
}

// Close forgets every user.
func (c *Personas) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id := range c.users {
		c.forgetLocked(id)
	}
}

// Len is the number of users in the cache.
func (c *Personas) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.users)
}

// Live is the number of prepared personas not closed yet (in the cache or
// still held by a request).
func (c *Personas) Live() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.live
}
