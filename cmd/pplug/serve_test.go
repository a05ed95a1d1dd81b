package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pplug/pplug/internal/testenv"
)

// syncBuffer is a bytes.Buffer safe for a writer and a poller.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startServe runs `pplug serve` in-process on a free loopback port and
// returns its base URL and a function that stops it (as Ctrl-C does).
func startServe(t *testing.T, args ...string) (string, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var errb syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- newApp(strings.NewReader(""), io.Discard, &errb).RunContext(ctx, append([]string{"pplug", "serve", "--port", "0"}, args...))
	}()
	re := regexp.MustCompile(`listening on (http://[0-9.:]+)`)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if m := re.FindStringSubmatch(errb.String()); m != nil {
			return m[1], func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("serve ended with %v", err)
				}
			}
		}
		select {
		case err := <-done:
			t.Fatalf("serve exited: %v\n%s", err, errb.String())
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("serve did not start:\n%s", errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func httpJSON(t *testing.T, method, url string, body any) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		js, _ := json.Marshal(body)
		r = bytes.NewReader(js)
	}
	req, _ := http.NewRequest(method, url, r)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// The server's answers (streamed and not) equal `pplug generate`'s greedy
// output for the same prompt, profile and plug; a restart loses no item.
func TestServeMatchesGenerateAndKeepsItems(t *testing.T) {
	model := testenv.Stories260K(t)
	dir := t.TempDir()
	plug := filepath.Join(dir, "p.gguf")
	db := filepath.Join(dir, "profiles.db")
	prof := filepath.Join("..", "..", "examples", "profiles", "lily.json")
	if code, _, errs := pplug(t, "", "plug", "init", "-m", model, "-o", plug); code != 0 {
		t.Fatal(errs)
	}
	code, want, errs := pplug(t, "", "generate", "-m", model, "-p", "Once upon a time", "-n", "24", "--temp", "0", "-t", "1",
		"--profile", prof, "--plug", plug, "--no-cache")
	if code != 0 {
		t.Fatal(errs)
	}
	want = strings.TrimSuffix(want, "\n")
	_, plain, _ := pplug(t, "", "generate", "-m", model, "-p", "Once upon a time", "-n", "24", "--temp", "0", "-t", "1")
	if strings.TrimSuffix(plain, "\n") == want {
		t.Fatal("the persona changed nothing: the test cannot tell it apart")
	}
	if code, out, errs := pplug(t, "", "profile", "import", "--profiles", db, "--user", "lily", "--profile", prof); code != 0 || !strings.Contains(out, "imported 8 items") {
		t.Fatalf("import: %d %s %s", code, out, errs)
	}

	url, stop := startServe(t, "-m", model, "--plug", plug, "--profiles", db, "-np", "2", "-t", "1")
	req := map[string]any{"prompt": "Once upon a time", "max_tokens": 24, "temperature": 0, "user": "lily"}
	status, body := httpJSON(t, "POST", url+"/v1/completions", req)
	var cr struct {
		Choices []struct{ Text string } `json:"choices"`
	}
	if status != 200 || json.Unmarshal(body, &cr) != nil || len(cr.Choices) != 1 {
		t.Fatalf("%d %s", status, body)
	}
	if cr.Choices[0].Text != want {
		t.Fatalf("server %q, generate %q", cr.Choices[0].Text, want)
	}
	req["stream"] = true
	status, body = httpJSON(t, "POST", url+"/v1/completions", req)
	var streamed strings.Builder
	for _, line := range strings.Split(string(body), "\n") {
		if js, ok := strings.CutPrefix(line, "data: "); ok && js != "[DONE]" {
			var ev struct {
				Choices []struct{ Text string } `json:"choices"`
			}
			_ = json.Unmarshal([]byte(js), &ev)
			for _, c := range ev.Choices {
				streamed.WriteString(c.Text)
			}
		}
	}
	if status != 200 || streamed.String() != want {
		t.Fatalf("streamed %q (%d), generate %q", streamed.String(), status, want)
	}
	if status, body := httpJSON(t, "POST", url+"/v1/users/lily/items", map[string]any{"id": "new", "text": "Lily read a book about stars."}); status != 201 {
		t.Fatalf("add item: %d %s", status, body)
	}
	stop()

	url, stop = startServe(t, "-m", model, "--plug", plug, "--profiles", db, "-np", "1", "-t", "1")
	defer stop()
	status, body = httpJSON(t, "GET", url+"/v1/users/lily/items", nil)
	var items struct {
		Data []struct{ ID string } `json:"data"`
	}
	if status != 200 || json.Unmarshal(body, &items) != nil || len(items.Data) != 9 || items.Data[8].ID != "new" {
		t.Fatalf("items after restart: %d %s", status, body)
	}
}

func TestServeRefusesOpenBindWithoutKey(t *testing.T) {
	code, _, errs := pplug(t, "", "serve", "-m", testenv.Stories260K(t), "--host", "0.0.0.0")
	if code != 2 || !strings.Contains(errs, "--api-key") {
		t.Fatalf("exit %d: %s", code, errs)
	}
	code, _, errs = pplug(t, "", "profile", "import", "--user", "x")
	if code != 2 || !strings.Contains(errs, "--profile") {
		t.Fatalf("import without a profile: exit %d: %s", code, errs)
	}
}

// A --api-key that is given must be usable: blank, empty or with white
// space it is a usage error, from the flag or from PPLUG_API_KEY.
func TestServeRefusesBlankAPIKey(t *testing.T) {
	model := testenv.Stories260K(t)
	for _, key := range []string{"  ", "", "\t", "two words"} {
		code, _, errs := pplug(t, "", "serve", "-m", model, "--port", "0", "--api-key", key)
		if code != 2 || !strings.Contains(errs, "--api-key") {
			t.Errorf("--api-key %q: exit %d: %s", key, code, errs)
		}
	}
	t.Setenv("PPLUG_API_KEY", " ")
	code, _, errs := pplug(t, "", "serve", "-m", model, "--port", "0")
	if code != 2 || !strings.Contains(errs, "PPLUG_API_KEY") {
		t.Errorf("PPLUG_API_KEY blank: exit %d: %s", code, errs)
	}
}

// --cache-slots takes 0 up to what -np leaves of llama.cpp's 256 sequences.
func TestServeRefusesBadCacheSlots(t *testing.T) {
	model := testenv.Stories260K(t)
	for _, args := range [][]string{{"--cache-slots", "-1"}, {"-np", "200", "--cache-slots", "57"}} {
		code, _, errs := pplug(t, "", append([]string{"serve", "-m", model, "--port", "0"}, args...)...)
		if code != 2 || !strings.Contains(errs, "--cache-slots") {
			t.Errorf("%v: exit %d: %s", args, code, errs)
		}
	}
}
