package store

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestItemsSurviveRestart(t *testing.T) { forEachStore(t, testItemsSurviveRestart) }

func testItemsSurviveRestart(t *testing.T, path string) {
	ctx := context.Background()
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
	if _, err := st.UpsertItems(ctx, "ann", []NewItem{{ID: "1", Text: "first, edited"}}); err != nil {
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
	forEachStore(t, testRevisionsNeverRepeatAndReplace)
}

func testRevisionsNeverRepeatAndReplace(t *testing.T, where string) {
	ctx := context.Background()
	st, err := Open(ctx, where)
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

// TestOpenSaysWhy: a database that cannot be opened says the real cause and
// the fix; only a file that is not a pplug database is told to be moved
// away.
func TestOpenSaysWhy(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	file := filepath.Join(dir, "notes.txt")
	os.WriteFile(file, []byte("my notes, not a database\n"), 0o644)
	other := filepath.Join(dir, "other.db")
	db, err := sql.Open("sqlite", other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE items (x INTEGER)"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	type openCase struct {
		name, path string
		want       []string
	}
	cases := []openCase{
		{"missing folder", filepath.Join(dir, "no", "such", "p.db"), []string{"folder " + filepath.Join(dir, "no", "such") + " does not exist", "mkdir -p"}},
		{"folder is a file", filepath.Join(file, "p.db"), []string{file + " is not a folder"}},
		{"database is a folder", dir, []string{"is a folder: give a file in it"}},
		{"not a database", file, []string{"not a SQLite database", "move it away"}},
		{"another program's database", other, []string{"not a pplug profile database", "move it away"}},
	}
	if runtime.GOOS == "linux" {
		// sysfs refuses new files even to root.
		cases = append(cases, openCase{"read-only folder (sysfs)", "/sys/pplug-profiles.db", []string{"cannot create files in /sys", "writable"}})
	}
	if os.Geteuid() != 0 {
		ro := filepath.Join(dir, "ro")
		os.Mkdir(ro, 0o755)
		os.WriteFile(filepath.Join(ro, "p.db"), nil, 0o444)
		os.Chmod(ro, 0o555)
		defer os.Chmod(ro, 0o755)
		cases = append(cases, openCase{"read-only file", filepath.Join(ro, "p.db"), []string{"cannot be written", "permission denied"}},
			openCase{"read-only folder", filepath.Join(ro, "new.db"), []string{"cannot create files in " + ro, "permission denied"}})
	}
	for _, tc := range cases {
		st, err := Open(ctx, tc.path)
		if err == nil {
			st.Close()
			t.Errorf("%s: opened", tc.name)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "profile database "+tc.path+": ") {
			t.Errorf("%s: %q does not name the database", tc.name, msg)
		}
		for _, w := range tc.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: %q lacks %q", tc.name, msg, w)
			}
		}
		if foreign := strings.HasPrefix(tc.name, "not a") || strings.HasPrefix(tc.name, "another"); foreign != strings.Contains(msg, "move it away") {
			t.Errorf("%s: %q blames the file", tc.name, msg)
		}
	}
}
