package persona

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/pplug/pplug/persona/profile"
)

// TestPersonasPrepareOncePerRevision: a user's persona is prepared once
// per revision, a held persona outlives its replacement and eviction
// until released, and the cache stays within Max.
func TestPersonasPrepareOncePerRevision(t *testing.T) {
	pz := &Personalizer{Method: MethodBM25}
	prepared := 0
	prep := func(text string) func(context.Context) (*Persona, error) {
		return func(context.Context) (*Persona, error) {
			prepared++
			return pz.PrepareEncoded([]profile.Item{{Text: text}}, nil)
		}
	}
	c := &Personas{Max: 2}
	ctx := context.Background()
	a1, err := c.Acquire(ctx, "a", 1, prep("one"))
	if err != nil {
		t.Fatal(err)
	}
	again, _ := c.Acquire(ctx, "a", 1, prep("never"))
	if again != a1 || prepared != 1 {
		t.Fatalf("the same revision was prepared %d times", prepared)
	}
	again.Release()
	a2, _ := c.Acquire(ctx, "a", 2, prep("two"))
	if a2 == a1 || prepared != 2 || c.Live() != 2 {
		t.Fatalf("a new revision: prepared %d, live %d", prepared, c.Live())
	}
	if a1.Persona.Items()[0].Text != "one" {
		t.Fatal("a held persona changed under its request")
	}
	a1.Release()
	a2.Release()
	if c.Live() != 1 {
		t.Fatalf("after release %d personas live, want 1", c.Live())
	}
	for i := range 5 {
		h, _ := c.Acquire(ctx, fmt.Sprint("u", i), 1, prep("x"))
		h.Release()
	}
	if c.Len() != 2 || c.Live() != 2 {
		t.Fatalf("Max 2: %d cached, %d live", c.Len(), c.Live())
	}
	none, err := c.Acquire(ctx, "empty", 1, func(context.Context) (*Persona, error) { return nil, nil })
	if none != nil || err != nil {
		t.Fatalf("a user without items: %v %v", none, err)
	}
	none.Release()
	c.Close()
	if c.Len() != 0 || c.Live() != 0 {
		t.Fatalf("after Close: %d cached, %d live", c.Len(), c.Live())
	}
}

// TestPersonasConcurrent: many requests on a few users keep the counts
// right (run with -race).
func TestPersonasConcurrent(t *testing.T) {
	pz := &Personalizer{Method: MethodBM25}
	c := &Personas{Max: 3}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				id, rev := fmt.Sprint("u", (g+i)%5), int64(i%3)
				h, err := c.Acquire(context.Background(), id, rev, func(context.Context) (*Persona, error) {
					return pz.PrepareEncoded([]profile.Item{{Text: id}}, nil)
				})
				if err != nil {
					t.Error(err)
					return
				}
				if h.Persona.Items()[0].Text != id {
					t.Errorf("user %s got %s's persona", id, h.Persona.Items()[0].Text)
				}
				h.Release()
			}
		}()
	}
	wg.Wait()
	c.Close()
	if c.Live() != 0 {
		t.Fatalf("%d personas live after Close", c.Live())
	}
}
