package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/pplug/pplug/persona/store"
)

// do sends a request with the admin key ("admin-key") and a JSON body.
func (ts *testServer) do(t *testing.T, method, path string, body any) (int, apiError, []byte) {
	t.Helper()
	st, e, b, err := ts.send(method, path, body)
	if err != nil {
		t.Fatal(err)
	}
	return st, e, b
}

// send is do for any goroutine: it returns its error.
func (ts *testServer) send(method, path string, body any) (int, apiError, []byte, error) {
	var r io.Reader
	if s, ok := body.(string); ok {
		r = strings.NewReader(s)
	} else if body != nil {
		js, _ := json.Marshal(body)
		r = bytes.NewReader(js)
	}
	req, _ := http.NewRequest(method, ts.url+path, r)
	req.Header.Set("Authorization", "Bearer admin-key")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, apiError{}, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e struct{ Error apiError }
	_ = json.Unmarshal(b, &e)
	return resp.StatusCode, e.Error, b, nil
}

func code(e apiError) string {
	if e.Code == nil {
		return ""
	}
	return *e.Code
}

func param(e apiError) string {
	if e.Param == nil {
		return ""
	}
	return *e.Param
}

func (ts *testServer) itemTexts(t *testing.T, user string) string {
	t.Helper()
	_, _, b := ts.do(t, "GET", "/v1/users/"+user+"/items", nil)
	var l struct{ Data []store.Item }
	if err := json.Unmarshal(b, &l); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	var out []string
	for _, it := range l.Data {
		out = append(out, it.ID+"="+it.Text)
	}
	return strings.Join(out, ",")
}

// An id names one item: POST refuses an id the user has (409 naming it,
// the old text stays) and a batch with one id twice (400 naming both);
// PUT replaces or creates the one item it names.
func TestItemIDsOverHTTP(t *testing.T) {
	ts := startServer(t, 1, "admin-key")
	add := func(body any) (int, apiError) {
		st, e, _ := ts.do(t, "POST", "/v1/users/tom/items", body)
		return st, e
	}
	if st, e := add(map[string]any{"id": "a", "text": "Tom has a red kite."}); st != 201 {
		t.Fatalf("add: %d %+v", st, e)
	}
	st, e := add(map[string]any{"id": "a", "text": "Tom lost his kite."})
	if st != 409 || code(e) != "item_exists" || !strings.Contains(e.Message, `item "a"`) || !strings.Contains(e.Message, "PUT") {
		t.Errorf("existing id: %d %+v", st, e)
	}
	st, e = add(map[string]any{"items": []map[string]string{{"id": "b", "text": "x"}, {"id": "b", "text": "y"}}})
	if st != 400 || param(e) != "items" || !strings.Contains(e.Message, `items 0 and 1 both have id "b"`) {
		t.Errorf("duplicate in a batch: %d %+v", st, e)
	}
	if got := ts.itemTexts(t, "tom"); !strings.HasSuffix(got, ",a=Tom has a red kite.") || strings.Contains(","+got, ",b=") {
		t.Fatalf("after refused adds: %s", got)
	}
	st, e, b := ts.do(t, "PUT", "/v1/users/tom/items/a", map[string]any{"text": "Tom lost his kite."})
	if st != 200 || !strings.Contains(string(b), "lost his kite") {
		t.Fatalf("put: %d %s", st, b)
	}
	if st, e, _ = ts.do(t, "PUT", "/v1/users/tom/items/c", map[string]any{"text": "Tom found a shell."}); st != 200 {
		t.Fatalf("put a new item: %d %+v", st, e)
	}
	if st, e, _ = ts.do(t, "PUT", "/v1/users/tom/items/c", map[string]any{"id": "d", "text": "x"}); st != 400 || param(e) != "id" {
		t.Errorf("put with another id in the body: %d %+v", st, e)
	}
	if got := ts.itemTexts(t, "tom"); !strings.HasSuffix(got, ",a=Tom lost his kite.,c=Tom found a shell.") || strings.Contains(got, "red kite") {
		t.Fatalf("after put: %s", got)
	}
	// Items without ids keep getting fresh ones.
	for range 2 {
		if st, e := add(map[string]any{"text": "Tom sang."}); st != 201 {
			t.Fatalf("add without id: %d %+v", st, e)
		}
	}
}

// Ids and texts are bounded where they enter; error bodies quote a short
// prefix of what was sent.
func TestLimitsOverHTTP(t *testing.T) {
	ts := startServer(t, 1, "admin-key")
	ts.srv.cfg.MaxBodyBytes = 1 << 20 // room for an item over the item limit
	huge := strings.Repeat("u", 200<<10)
	tests := []struct {
		name, method, path string
		body               any
		status             int
		code, param, want  string
	}{
		{"user id in the path", "GET", "/v1/users/" + huge, nil, 400, "", "", "a user id is 1 to 128"},
		{"user id in items path", "POST", "/v1/users/" + huge + "/items", map[string]any{"text": "x"}, 400, "", "", "a user id is 1 to 128"},
		{"new user id", "POST", "/v1/users", map[string]any{"id": huge}, 400, "", "id", "a user id is 1 to 128"},
		{"item id", "POST", "/v1/users/tom/items", map[string]any{"id": huge, "text": "x"}, 400, "", "items", "an item id is 1 to 256 bytes"},
		{"item id unprintable", "POST", "/v1/users/tom/items", map[string]any{"id": "a\x00b", "text": "x"}, 400, "", "items", "unprintable"},
		{"item id in the path", "PUT", "/v1/users/tom/items/" + strings.Repeat("i", 300), map[string]any{"text": "x"}, 400, "", "", "an item id is 1 to 256 bytes"},
		{"item text", "POST", "/v1/users/tom/items", map[string]any{"text": strings.Repeat("w", store.MaxItemBytes+1)}, 413, "item_too_large", "items", "at most 65536 bytes"},
		{"item text by put", "PUT", "/v1/users/tom/items/a", map[string]any{"text": strings.Repeat("w", store.MaxItemBytes+1)}, 413, "item_too_large", "items", "at most 65536 bytes"},
		{"unknown user", "GET", "/v1/users/nobody" + strings.Repeat("x", 100), nil, 404, "not_found", "", "not found"},
	}
	for _, tc := range tests {
		st, e, b := ts.do(t, tc.method, tc.path, tc.body)
		if st != tc.status || code(e) != tc.code || param(e) != tc.param || !strings.Contains(e.Message, tc.want) || len(b) > 600 {
			t.Errorf("%s: %d %+v (%d bytes), want %d %q %q %q", tc.name, st, e, len(b), tc.status, tc.code, tc.param, tc.want)
		}
	}
	r, b := ts.post(t, "/v1/completions", ts.keys["lily"], map[string]any{"prompt": "Once", "max_tokens": 4, "user": huge})
	if r.StatusCode != 403 || len(b) > 600 {
		t.Errorf("another user's persona with a long id: %d, %d bytes", r.StatusCode, len(b))
	}
	if got := ts.itemTexts(t, "tom"); strings.Contains(got, "www") {
		t.Errorf("an oversized item was stored")
	}
}

// "remember": true that could store nothing is refused before any token
// is generated, naming the field.
func TestRememberNeedsAKnownUser(t *testing.T) {
	ts := startServer(t, 1, "admin-key")
	ts.srv.cfg.MaxBodyBytes = 1 << 20
	msg := func(text string) []map[string]string { return []map[string]string{{"role": "user", "content": text}} }
	tests := []struct {
		name   string
		req    map[string]any
		status int
		param  string
		want   string
	}{
		{"no user", map[string]any{"messages": msg("I like pears."), "remember": true}, 400, "user", `needs the "user" field`},
		{"unknown user", map[string]any{"messages": msg("I like pears."), "remember": true, "user": "nobody"}, 404, "user", "POST /v1/users"},
		{"no user message", map[string]any{"messages": []map[string]string{{"role": "system", "content": "Be brief."}}, "remember": true, "user": "tom"}, 400, "messages", "needs a text"},
		{"message over the item limit", map[string]any{"messages": msg(strings.Repeat("p", store.MaxItemBytes+1)), "remember": true, "user": "tom"}, 413, "messages", "at most 65536 bytes"},
	}
	for _, tc := range tests {
		tc.req["max_tokens"] = 4
		st, e, b := ts.do(t, "POST", "/v1/chat/completions", tc.req)
		if st != tc.status || param(e) != tc.param || !strings.Contains(e.Message, tc.want) {
			t.Errorf("%s: %d %s, want %d %q %q", tc.name, st, b, tc.status, tc.param, tc.want)
		}
	}
	if got := ts.itemTexts(t, "tom"); strings.Contains(got, "pears") || strings.Contains(got, "ppp") {
		t.Errorf("stored: %s", got)
	}
	st, e, _ := ts.do(t, "POST", "/v1/chat/completions", map[string]any{"messages": msg("I like pears."), "remember": true, "user": "tom", "max_tokens": 4})
	if st != 200 || !strings.Contains(ts.itemTexts(t, "tom"), "I like pears.") {
		t.Errorf("remember: %d %+v", st, e)
	}
}

// Concurrent creates and deletes of one user through the routes: a create
// answers 201 or 409, a delete 200 or 404, nothing else.
func TestConcurrentCreateDeleteOverHTTP(t *testing.T) {
	ts := startServer(t, 1, "admin-key")
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []string
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 60 {
				method, path, ok := "POST", "/v1/users", [2]int{201, 409}
				if g%2 == 1 {
					method, path, ok = "DELETE", "/v1/users/ann", [2]int{200, 404}
				}
				st, _, b, err := ts.send(method, path, map[string]any{"id": "ann"})
				if err != nil || st != ok[0] && st != ok[1] {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("%s %s: %d %s %v", method, path, st, b, err))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if len(bad) > 0 {
		t.Errorf("%d unexpected answers, first: %s", len(bad), bad[0])
	}
}
