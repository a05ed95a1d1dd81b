package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
)

func TestItemsSurviveRestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "p.db")
	st, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	key := NewKey()
	if _, err := st.CreateUser(ctx, "ann", key); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateUser(ctx, "ann", NewKey()); !errors.Is(err, ErrExists) {
		t.Fatalf("second create: %v", err)
	}
	if _, err := st.CreateUser(ctx, "bad id!", NewKey()); !errors.Is(err, ErrBadUserID) {
		t.Fatalf("bad id: %v", err)
	}
	added, err := st.AddItems(ctx, "ann", []NewItem{{ID: "1", Text: "first"}, {Text: "second", Date: "2024-01-02T00:00:00Z"}})
	if err != nil || len(added) != 2 {
		t.Fatal(added, err)
	}
	// All or nothing: an empty text refuses the whole batch.
	if _, err := st.AddItems(ctx, "ann", []NewItem{{Text: "third"}, {Text: " "}}); err == nil {
		t.Fatal("an empty item was accepted")
	}
	if _, err := st.AddItems(ctx, "nobody", []NewItem{{Text: "x"}}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("items for a missing user: %v", err)
	}
	u0, _ := st.User(ctx, "ann")
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if ok, err := st.IntegrityCheck(ctx); err != nil || ok != "ok" {
		t.Fatalf("integrity_check: %q %v", ok, err)
	}
	items, err := st.Items(ctx, "ann")
	if err != nil || len(items) != 2 || items[0].Text != "first" || items[1].Date != "2024-01-02T00:00:00Z" {
		t.Fatalf("items after reopening: %+v %v", items, err)
	}
	if id, err := st.UserByKey(ctx, key); err != nil || id != "ann" {
		t.Fatalf("key: %q %v", id, err)
	}
	// Replacing an item by id bumps the revision.
	if _, err := st.AddItems(ctx, "ann", []NewItem{{ID: "1", Text: "first, edited"}}); err != nil {
		t.Fatal(err)
	}
	if u, _ := st.User(ctx, "ann"); u.Rev == u0.Rev || u.Items != 2 {
		t.Fatalf("user after replace: %+v (before %+v)", u, u0)
	}
	if err := st.DeleteItem(ctx, "ann", "1"); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteItem(ctx, "ann", "1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleting twice: %v", err)
	}
	if err := st.DeleteUser(ctx, "ann"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Items(ctx, "ann"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("items of a deleted user: %v", err)
	}
}

// TestRevisionsNeverRepeat and ReplaceItems: a user deleted and made again
// never has a revision seen before, and a replaced history keeps the
// user's key.
func TestRevisionsNeverRepeatAndReplace(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, filepath.Join(t.TempDir(), "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	seen := map[int64]bool{}
	rev := func() int64 {
		t.Helper()
		u, err := st.User(ctx, "ann")
		if err != nil {
			t.Fatal(err)
		}
		if seen[u.Rev] {
			t.Fatalf("revision %d given out twice", u.Rev)
		}
		seen[u.Rev] = true
		return u.Rev
	}
	key := NewKey()
	for range 3 {
		if _, err := st.CreateUser(ctx, "ann", key); err != nil {
			t.Fatal(err)
		}
		rev()
		if _, err := st.AddItems(ctx, "ann", []NewItem{{ID: "1", Text: "first"}}); err != nil {
			t.Fatal(err)
		}
		rev()
		if err := st.DeleteUser(ctx, "ann"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.CreateUser(ctx, "ann", key); err != nil {
		t.Fatal(err)
	}
	st.AddItems(ctx, "ann", []NewItem{{ID: "1", Text: "old one"}, {ID: "2", Text: "old two"}})
	rev()
	if _, err := st.ReplaceItems(ctx, "ann", []NewItem{{Text: "new"}}); err != nil {
		t.Fatal(err)
	}
	rev()
	items, _ := st.Items(ctx, "ann")
	if len(items) != 1 || items[0].Text != "new" {
		t.Fatalf("after replace: %+v", items)
	}
	if id, err := st.UserByKey(ctx, key); err != nil || id != "ann" {
		t.Fatalf("the key after replace: %q %v", id, err)
	}
	// A failed replace (an empty item) keeps the old history.
	if _, err := st.ReplaceItems(ctx, "ann", []NewItem{{Text: "x"}, {Text: ""}}); err == nil {
		t.Fatal("an empty item was accepted")
	}
	if items, _ := st.Items(ctx, "ann"); len(items) != 1 || items[0].Text != "new" {
		t.Fatalf("after a failed replace: %+v", items)
	}
}
