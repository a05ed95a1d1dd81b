package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pplug/pplug/internal/pgtest"
)

// TestMain lets the test binary act as a writer process for the kill test,
// and stops the package's PostgreSQL server at the end.
func TestMain(m *testing.M) {
	if where := os.Getenv("PPLUG_STORE_WRITER"); where != "" {
		os.Exit(writer(where))
	}
	code := m.Run()
	pgtest.StopShared()
	os.Exit(code)
}

// forEachStore runs test on a new, empty database of every backend: a
// SQLite file, and a database of the package's PostgreSQL server (which
// the first such test starts). The store's rules are one suite.
func forEachStore(t *testing.T, test func(t *testing.T, where string)) {
	t.Run("sqlite", func(t *testing.T) { test(t, filepath.Join(t.TempDir(), "p.db")) })
	t.Run("postgres", func(t *testing.T) { test(t, pgtest.Shared(t).NewDatabase()) })
}

// writer appends items forever, printing each committed item's id. Ids
// carry the round ($PPLUG_STORE_WRITER_ROUND): an id the user already has
// is refused, and every round starts a new writer.
func writer(where string) int {
	prefix := "r" + os.Getenv("PPLUG_STORE_WRITER_ROUND") + "-it-"
	ctx := context.Background()
	st, err := Open(ctx, where)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for i := 0; ; i++ {
		id := prefix + strconv.Itoa(i)
		if _, err := st.AddItems(ctx, "w", []NewItem{{ID: id, Text: strings.Repeat("text ", 50) + id}, {ID: id + "b", Text: "pair " + id}}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println(id)
	}
}
