//go:build heavy

package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pplug/pplug/internal/testenv"
	"github.com/pplug/pplug/persona/store"
)

// TestServeKill9KeepsItems: `pplug serve` killed with SIGKILL while clients
// add history items loses none of the items it acknowledged, and its
// database is intact when it starts again.
func TestServeKill9KeepsItems(t *testing.T) {
	model := testenv.Stories260K(t)
	db := filepath.Join(t.TempDir(), "profiles.db")
	start := func() (string, func()) {
		t.Helper()
		return startServeProcess(t, "-m", model, "--profiles", db, "-np", "2", "-t", "1")
	}
	url, kill := start()
	if status, body := httpJSON(t, "POST", url+"/v1/users", map[string]any{"id": "w"}); status != 201 {
		t.Fatalf("create user: %d %s", status, body)
	}
	acked := map[string]bool{}
	for round := range 3 {
		var mu sync.Mutex
		stop := make(chan struct{})
		before := len(acked)
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					id := fmt.Sprintf("r%d-w%d-%d", round, w, i)
					status, err := tryPost(url+"/v1/users/w/items", fmt.Sprintf(`{"id": %q, "text": "item %s %s"}`, id, id, strings.Repeat("word ", 40)))
					if err != nil {
						return // the server is gone
					}
					if status == 201 {
						mu.Lock()
						acked[id] = true
						mu.Unlock()
					}
				}
			}()
		}
		// Kill while writes go on: after the round's first acknowledged
		// item (a loaded machine may take long for it), then a while more.
		waitUntil(heavyWait, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(acked) > before
		})
		time.Sleep(time.Duration(300+200*round) * time.Millisecond)
		kill()
		close(stop)
		wg.Wait()

		st, err := store.Open(context.Background(), db)
		if err != nil {
			t.Fatal(err)
		}
		if v, err := st.IntegrityCheck(context.Background()); err != nil || v != "ok" {
			t.Fatalf("round %d: integrity check %q %v", round, v, err)
		}
		items, err := st.Items(context.Background(), "w")
		st.Close()
		if err != nil {
			t.Fatal(err)
		}
		have := map[string]bool{}
		for _, it := range items {
			have[it.ID] = true
		}
		for id := range acked {
			if !have[id] {
				t.Fatalf("round %d: acknowledged item %s is lost after kill -9 (%d acknowledged, %d stored)", round, id, len(acked), len(items))
			}
		}
		t.Logf("round %d: %d items acknowledged in all, %d stored", round, len(acked), len(items))
		if len(acked) == before {
			t.Fatalf("round %d: no item was acknowledged in %s: the round tested nothing", round, heavyWait)
		}
		url, kill = start()
	}
	kill()
}

// startServeProcess runs `pplug serve ARGS` as a process on a free
// loopback port and returns its URL and a function that kills it with
// SIGKILL.
func startServeProcess(t *testing.T, args ...string) (string, func()) {
	t.Helper()
	listening := regexp.MustCompile(`listening on (http://[0-9.:]+)`)
	cmd := runPplug(context.Background(), "", append([]string{"serve", "--port", "0"}, args...)...)
	errs, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(errs)
	deadline := time.Now().Add(heavyWait)
	var said []string
	for sc.Scan() && time.Now().Before(deadline) {
		said = append(said, sc.Text())
		if m := listening.FindStringSubmatch(sc.Text()); m != nil {
			go func() {
				for sc.Scan() {
				}
			}()
			return m[1], func() { cmd.Process.Signal(syscall.SIGKILL); cmd.Wait() }
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	t.Fatalf("serve did not start:\n%s", strings.Join(said, "\n"))
	return "", nil
}

// heavyWait bounds every wait of the heavy tests for something that
// normally takes a second or two (a server to listen, a chat to answer): on
// a loaded machine it takes many times longer, and a wait ends as soon as
// what it waits for happens.
const heavyWait = 5 * time.Minute

// waitUntil polls ok every 10 ms until it holds or d has passed.
func waitUntil(d time.Duration, ok func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if ok() {
			return true
		}
	}
	return ok()
}

// tryPost posts JSON and returns the status, or the error of a server that
// is gone.
func tryPost(url, body string) (int, error) {
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}
