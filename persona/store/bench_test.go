package store

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/pplug/pplug/internal/pgtest"
)

// BenchmarkPersonaLookup times what the server reads of a user for a
// personalised request, on each store in one run: "rev" is the revision
// check of every request (User), "items" the history a cache miss reads
// (Items of a user with 50 items). PostgreSQL is on loopback TCP. Besides
// ns/op it reports the p50 and p95 of the single calls.
//
//	go test -run '^$' -bench PersonaLookup -benchtime 2000x ./persona/store/
func BenchmarkPersonaLookup(b *testing.B) {
	stores := map[string]func(b *testing.B) string{
		"sqlite":   func(b *testing.B) string { return filepath.Join(b.TempDir(), "p.db") },
		"postgres": func(b *testing.B) string { return pgtest.Shared(b).NewDatabase() },
	}
	for _, name := range []string{"sqlite", "postgres"} {
		b.Run(name, func(b *testing.B) {
			st := benchStore(b, stores[name](b))
			ctx := context.Background()
			b.Run("rev", func(b *testing.B) {
				timeCalls(b, func() error { _, err := st.User(ctx, "u7"); return err })
			})
			b.Run("items", func(b *testing.B) {
				timeCalls(b, func() error { _, err := st.Items(ctx, "u7"); return err })
			})
		})
	}
}

// benchStore opens a store with 20 users of 50 items each.
func benchStore(b *testing.B, where string) *Store {
	ctx := context.Background()
	st, err := Open(ctx, where)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	for u := range 20 {
		id := fmt.Sprintf("u%d", u)
		if _, err := st.CreateUser(ctx, id, NewKey()); err != nil {
			b.Fatal(err)
		}
		items := make([]NewItem, 50)
		for i := range items {
			items[i] = NewItem{Text: fmt.Sprintf("item %d of user %d: a short story about a dog and a ball in the park.", i, u)}
		}
		if _, err := st.AddItems(ctx, id, items); err != nil {
			b.Fatal(err)
		}
	}
	return st
}

// timeCalls runs call b.N times and reports the p50 and p95 of one call.
func timeCalls(b *testing.B, call func() error) {
	took := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if err := call(); err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(took[len(took)*95/100].Nanoseconds()), "p95-ns")
}
