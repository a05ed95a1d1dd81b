package store

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/pplug/pplug/persona/profile"
)

func openTest(t *testing.T, where string) *Store {
	t.Helper()
	st, err := Open(context.Background(), where)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func texts(t *testing.T, st *Store, user string) string {
	t.Helper()
	items, err := st.Items(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, it := range items {
		out = append(out, it.ID+"="+it.Text)
	}
	return strings.Join(out, ",")
}

// An id names one item of a user: adding an id the user has is refused
// (the old text stays), a batch never holds an id twice, a bad id or an
// oversized text refuses the batch; only UpsertItems replaces by id.
func TestItemIDRule(t *testing.T) { forEachStore(t, testItemIDRule) }

func testItemIDRule(t *testing.T, where string) {
	ctx := context.Background()
	st := openTest(t, where)
	if _, err := st.CreateUser(ctx, "ann", NewKey()); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AddItems(ctx, "ann", []NewItem{{ID: "1", Text: "old"}}); err != nil {
		t.Fatal(err)
	}
	_, err := st.AddItems(ctx, "ann", []NewItem{{ID: "2", Text: "two"}, {ID: "1", Text: "new"}})
	if !errors.Is(err, ErrItemExists) || !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), `item "1"`) {
		t.Fatalf("existing id: %v", err)
	}
	bad := map[string]struct {
		items []NewItem
		want  error
		msg   string
	}{
		"duplicate": {[]NewItem{{ID: "a", Text: "x"}, {Text: "y"}, {ID: "a", Text: "z"}}, profile.ErrDuplicateID, `items 0 and 2 both have id "a"`},
		"long id":   {[]NewItem{{ID: strings.Repeat("i", 1<<20), Text: "x"}}, profile.ErrBadID, "item 0"},
		"control":   {[]NewItem{{Text: "x"}, {ID: "a\tb", Text: "x"}}, profile.ErrBadID, "item 1"},
		"too large": {[]NewItem{{Text: strings.Repeat("w", MaxItemBytes+1)}}, ErrItemTooLarge, "65536 bytes"},
		"blank":     {[]NewItem{{Text: " "}}, ErrEmptyText, "item 0"},
		// PostgreSQL's text holds no NUL: both stores refuse it alike.
		"nul text": {[]NewItem{{Text: "a\x00b"}}, ErrEmptyText, "item 0"},
		"nul date": {[]NewItem{{Text: "x"}, {Text: "y", Date: "2024\x00"}}, ErrBadDate, "item 1"},
	}
	for name, tc := range bad {
		for mode, write := range map[string]func(context.Context, string, []NewItem) ([]Item, error){
			"add": st.AddItems, "upsert": st.UpsertItems, "replace": st.ReplaceItems,
		} {
			_, err := write(ctx, "ann", tc.items)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) || len(err.Error()) > 300 {
				t.Errorf("%s %s: %v, want %v naming %q", mode, name, err, tc.want, tc.msg)
			}
		}
	}
	if got := texts(t, st, "ann"); got != "1=old" {
		t.Fatalf("after refused writes: %s", got)
	}
	if _, err := st.AddItems(ctx, "ann", []NewItem{{Text: strings.Repeat("w", MaxItemBytes)}}); err != nil {
		t.Fatalf("an item of exactly the limit: %v", err)
	}
	if _, err := st.UpsertItems(ctx, "ann", []NewItem{{ID: "1", Text: "new"}, {ID: "3", Text: "three"}}); err != nil {
		t.Fatal(err)
	}
	if got := texts(t, st, "ann"); !strings.HasSuffix(got, ",1=new,3=three") || strings.Contains(got, "old") {
		t.Fatalf("after upsert: %s", got)
	}
}

// Creating and deleting one user from many goroutines: a create either
// makes the user or finds it there (ErrExists), a delete either removes it
// or finds none; never another answer (a create once said "not found"
// when a delete came between its insert and its read).
func TestConcurrentCreateDelete(t *testing.T) { forEachStore(t, testConcurrentCreateDelete) }

func testConcurrentCreateDelete(t *testing.T, where string) {
	ctx := context.Background()
	st := openTest(t, where)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 150 {
				if g%2 == 0 {
					u, err := st.CreateUser(ctx, "ann", NewKey())
					if err != nil && !errors.Is(err, ErrExists) || err == nil && u.ID != "ann" {
						errs <- err
						return
					}
				} else if err := st.DeleteUser(ctx, "ann"); err != nil && !errors.Is(err, ErrNotFound) {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("unexpected answer: %v", err)
	}
}

// A delete right after a create commits does not turn the create's answer
// into "not found": the created user comes from the create's transaction.
func TestCreateAnswersWhatItCreated(t *testing.T) { forEachStore(t, testCreateAnswersWhatItCreated) }

func testCreateAnswersWhatItCreated(t *testing.T, where string) {
	ctx := context.Background()
	st := openTest(t, where)
	testHookCreated = func(s *Store, id string) {
		if err := s.DeleteUser(ctx, id); err != nil {
			t.Errorf("delete: %v", err)
		}
	}
	defer func() { testHookCreated = func(*Store, string) {} }()
	u, err := st.CreateUser(ctx, "ann", NewKey())
	if err != nil || u.ID != "ann" || u.Rev == 0 || u.Created.IsZero() {
		t.Fatalf("create: %+v %v", u, err)
	}
}
