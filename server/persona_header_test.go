package server

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/pplug/pplug/persona"
	"github.com/pplug/pplug/persona/store"
)

// lockedBuffer is a bytes.Buffer safe for the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// captureLog sends the default logger (which a server without a Logger
// uses) to a buffer for the test.
func captureLog(t *testing.T) *lockedBuffer {
	t.Helper()
	var buf lockedBuffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { slog.SetDefault(old) })
	return &buf
}

// A request whose user gets no persona says so: the X-PPlug-Persona header
// gives the reason (a user the store does not know, or one without
// history) and the server logs it; a request without a user is plain none.
func TestNoPersonaSaysWhy(t *testing.T) {
	logs := captureLog(t)
	ts := startServer(t, 1, "")
	if _, err := ts.st.CreateUser(context.Background(), "newbie", store.NewKey()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ user, header, log string }{
		{"lily", string(persona.MethodPPlug), ""},
		{"", "none", ""},
		{"nobody", "none; reason=unknown-user", `user=nobody reason=unknown-user`},
		{"not a valid id!", "none; reason=unknown-user", `reason=unknown-user`},
		{"newbie", "none; reason=no-history", `user=newbie reason=no-history`},
	} {
		for _, stream := range []bool{false, true} {
			req := map[string]any{"prompt": "Once", "max_tokens": 2, "user": tc.user, "stream": stream}
			r, b := ts.post(t, "/v1/completions", "", req)
			if r.StatusCode != 200 || r.Header.Get("X-PPlug-Persona") != tc.header {
				t.Errorf("user %q (stream %v): %d, X-PPlug-Persona %q, want %q: %s", tc.user, stream, r.StatusCode, r.Header.Get("X-PPlug-Persona"), tc.header, b)
			}
		}
		if tc.log != "" && !strings.Contains(logs.String(), tc.log) {
			t.Errorf("user %q: no log line with %q in:\n%s", tc.user, tc.log, logs.String())
		}
	}
}
