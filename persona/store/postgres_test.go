package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pplug/pplug/internal/pgtest"
)

// A PostgreSQL database that cannot be opened says which (without the
// password) and what to do.
func TestPostgresOpenSaysWhy(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.Shared(t)
	foreign := srv.NewDatabase()
	conn, err := pgx.Connect(ctx, foreign)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE users (name TEXT)"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	cases := []struct {
		name, url string
		want      []string
	}{
		{"nobody listens", "postgres://ann:s3cret@127.0.0.1:1/db?connect_timeout=2", []string{"profile database postgres://ann:xxxxx@127.0.0.1:1/db", "cannot reach it", "start the database"}},
		{"bad port", "postgresql://127.0.0.1:port/db", []string{"profile database postgresql://", "give a URL like"}},
		{"another program's tables", foreign, []string{"not a pplug profile table", "search_path"}},
	}
	for _, tc := range cases {
		st, err := Open(ctx, tc.url)
		if err == nil {
			st.Close()
			t.Errorf("%s: opened", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q lacks %q", tc.name, err, w)
			}
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: %q shows the password", tc.name, err)
		}
	}
}

// A database that goes away: calls fail soon with ErrUnavailable, and the
// same Store works again once the server is back (pgxpool reconnects).
func TestPostgresOutageAndRecovery(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.Start(t)
	st, err := Open(ctx, srv.NewDatabase())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.CreateUser(ctx, "ann", NewKey()); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AddItems(ctx, "ann", []NewItem{{ID: "1", Text: "before"}}); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	down := map[string]func() error{
		"user":   func() error { _, err := st.User(ctx, "ann"); return err },
		"key":    func() error { _, err := st.UserByKey(ctx, "pk-x"); return err },
		"items":  func() error { _, err := st.Items(ctx, "ann"); return err },
		"add":    func() error { _, err := st.AddItems(ctx, "ann", []NewItem{{ID: "2", Text: "lost"}}); return err },
		"create": func() error { _, err := st.CreateUser(ctx, "bob", NewKey()); return err },
		"delete": func() error { return st.DeleteItem(ctx, "ann", "1") },
	}
	for name, call := range down {
		start := time.Now()
		err := call()
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s with the database down: %v, want ErrUnavailable", name, err)
		}
		if d := time.Since(start); d > 2*pgConnectTimeout {
			t.Errorf("%s took %v to fail", name, d)
		}
	}
	srv.Restart()
	if _, err := st.AddItems(ctx, "ann", []NewItem{{ID: "3", Text: "after"}}); err != nil {
		t.Fatalf("after the restart: %v", err)
	}
	if got := texts(t, st, "ann"); got != "1=before,3=after" {
		t.Fatalf("items after the restart: %s", got)
	}
	if v, err := st.IntegrityCheck(ctx); err != nil || v != "ok" {
		t.Fatalf("integrity: %q %v", v, err)
	}
}

// Acknowledged writes are durable whatever the server's default: every
// session of the store commits synchronously, also on a database whose
// default is synchronous_commit=off.
func TestPostgresCommitsSynchronously(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.Shared(t)
	where := srv.NewDatabase()
	conn, err := pgx.Connect(ctx, where)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+conn.Config().Database+" SET synchronous_commit = off"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	st, err := Open(ctx, where)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var v string
	if err := st.db.QueryRowContext(ctx, "SHOW synchronous_commit").Scan(&v); err != nil || v != "on" {
		t.Fatalf("synchronous_commit of the store's session: %q %v", v, err)
	}
}
