package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/pplug/pplug/internal/pgtest"
)

// call sends a request with the admin key and returns its status, its
// Retry-After and its error code.
func (ts *testServer) call(t *testing.T, method, path string, body any) (int, string, string) {
	t.Helper()
	js, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, ts.url+path, bytes.NewReader(js))
	req.Header.Set("Authorization", "Bearer admin-key")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v (the server must answer, not fail)", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e struct{ Error apiError }
	_ = json.Unmarshal(b, &e)
	return resp.StatusCode, resp.Header.Get("Retry-After"), code(e.Error)
}

// A PostgreSQL profile database that goes away: every route that needs it
// answers 503 database_unavailable with Retry-After (OpenAI's error shape),
// requests without a user are still served, and the same server serves
// users again once the database is back.
func TestDatabaseOutageGives503(t *testing.T) {
	pg := pgtest.Start(t)
	ts := startServerOn(t, 1, "admin-key", pg.NewDatabase())
	chat := func(user string) map[string]any {
		m := map[string]any{"messages": []map[string]string{{"role": "user", "content": "Once upon a time"}}, "max_tokens": 4, "temperature": 0}
		if user != "" {
			m["user"] = user
		}
		return m
	}
	if st, _, c := ts.call(t, "POST", "/v1/chat/completions", chat("lily")); st != 200 {
		t.Fatalf("before the outage: %d %s", st, c)
	}
	pg.Stop()
	needDB := []struct {
		method, path string
		body         any
	}{
		{"POST", "/v1/chat/completions", chat("lily")},
		{"GET", "/v1/users/lily", nil},
		{"GET", "/v1/users/lily/items", nil},
		{"POST", "/v1/users", map[string]string{"id": "zoe"}},
		{"POST", "/v1/users/lily/items", map[string]string{"text": "lost"}},
		{"DELETE", "/v1/users/tom", nil},
	}
	for _, r := range needDB {
		st, retry, c := ts.call(t, r.method, r.path, r.body)
		if st != http.StatusServiceUnavailable || retry == "" || c != "database_unavailable" {
			t.Errorf("%s %s with the database down: %d Retry-After %q code %q, want 503 with Retry-After, database_unavailable", r.method, r.path, st, retry, c)
		}
	}
	if st, _, c := ts.call(t, "POST", "/v1/chat/completions", chat("")); st != 200 {
		t.Errorf("a request without a user while the database is down: %d %s", st, c)
	}
	pg.Restart()
	if st, _, c := ts.call(t, "POST", "/v1/users/lily/items", map[string]string{"text": "Lily came back."}); st != http.StatusCreated && st != 200 {
		t.Fatalf("after the restart: %d %s", st, c)
	}
	if st, _, c := ts.call(t, "POST", "/v1/chat/completions", chat("lily")); st != 200 {
		t.Fatalf("chat after the restart: %d %s", st, c)
	}
}
