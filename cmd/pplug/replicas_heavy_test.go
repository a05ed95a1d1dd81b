//go:build heavy

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pplug/pplug/internal/pgtest"
	"github.com/pplug/pplug/internal/testenv"
	"github.com/pplug/pplug/persona/store"
)

// replicaAnswer is what a replica answered a greedy chat request: the
// persona header, and the choices (text and every token's log-probability
// with its top alternatives: equal only when the rows are).
type replicaAnswer struct {
	status  int
	persona string
	choices string
}

func askReplica(t *testing.T, url, user string) replicaAnswer {
	t.Helper()
	body, _ := json.Marshal(map[string]any{
		"messages": []map[string]string{{"role": "user", "content": "Once upon a time"}},
		"user":     user, "max_tokens": 16, "temperature": 0, "logprobs": true, "top_logprobs": 3,
		// Every request decodes its whole prompt: a reused prefix was
		// decoded in another batch, which moves log-probabilities in their
		// last bits (1e-6), and these tests compare answers bit for bit.
		"cache_prompt": false,
	})
	resp, err := http.Post(url+"/v1/chat/completions", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out struct {
		Choices json.RawMessage `json:"choices"`
	}
	_ = json.Unmarshal(b, &out)
	a := replicaAnswer{status: resp.StatusCode, persona: resp.Header.Get("X-PPlug-Persona"), choices: string(out.Choices)}
	if a.status != 200 || !strings.HasPrefix(a.persona, "pplug") {
		t.Fatalf("%s for %s: %d persona %q: %s", url, user, a.status, a.persona, b)
	}
	return a
}

// startReplicaPair starts two `pplug serve` replicas of stories260K with
// one plug on a new database of the shared PostgreSQL, and returns their
// URLs and what kills the first (kill -9). Both are killed at the test's
// end, also when the second fails to start.
func startReplicaPair(t *testing.T) (a, b string, killA func()) {
	t.Helper()
	model := testenv.Stories260K(t)
	plug := replicaPlug(t, model)
	db := pgtest.Shared(t).NewDatabase()
	args := []string{"-m", model, "--plug", plug, "--profiles", db, "-np", "2", "-t", "1"}
	a, killA = startServeProcess(t, args...)
	t.Cleanup(killA)
	b, killB := startServeProcess(t, args...)
	t.Cleanup(killB)
	return a, b, killA
}

// replicaPlug is a plug for stories260K (plug init: seeded random
// weights), the same file for every replica.
func replicaPlug(t *testing.T, model string) string {
	t.Helper()
	plug := filepath.Join(t.TempDir(), "replica.plug.gguf")
	if code, _, errs := pplug(t, "", "plug", "init", "-m", model, "-o", plug, "-t", "1"); code != 0 {
		t.Fatalf("plug init: %s", errs)
	}
	return plug
}

// Two `pplug serve` processes on one PostgreSQL database: a user created
// and given items through one is served by the other with the same
// persona (identical greedy text and log-probabilities); an item added
// through the second changes the first's answer at its next request (the
// per-request revision check), and both agree again.
func TestReplicasServeEachOthersUsers(t *testing.T) {
	a, b, _ := startReplicaPair(t)
	if st, body := httpJSON(t, "POST", a+"/v1/users", map[string]any{"id": "lily"}); st != 201 {
		t.Fatalf("create through A: %d %s", st, body)
	}
	items := map[string]any{"items": []map[string]string{
		{"id": "1", "text": "Lily played with her red ball in the park."},
		{"id": "2", "text": "Lily loved her dog Max."},
	}}
	if st, body := httpJSON(t, "POST", a+"/v1/users/lily/items", items); st != 201 {
		t.Fatalf("items through A: %d %s", st, body)
	}
	fromB := askReplica(t, b, "lily") // B never saw lily
	fromA := askReplica(t, a, "lily")
	if fromA != fromB {
		t.Fatalf("the replicas answer lily differently:\nA %+v\nB %+v", fromA, fromB)
	}
	if st, body := httpJSON(t, "POST", b+"/v1/users/lily/items", map[string]string{"id": "3", "text": "Lily was afraid of the big storm."}); st != 201 {
		t.Fatalf("an item through B: %d %s", st, body)
	}
	afterA := askReplica(t, a, "lily") // A has the old persona cached
	afterB := askReplica(t, b, "lily")
	if afterA != afterB {
		t.Fatalf("after B's write the replicas differ:\nA %+v\nB %+v", afterA, afterB)
	}
	if afterA.choices == fromA.choices {
		t.Fatalf("A still serves lily's old persona after B added an item: %s", afterA.choices)
	}
}

// kill -9 of one replica while clients write through both: every item
// either replica acknowledged is in the database, and the database is
// consistent; the killed replica starts again on it.
func TestReplicaKill9KeepsItems(t *testing.T) {
	model := testenv.Stories260K(t)
	db := pgtest.Shared(t).NewDatabase()
	args := []string{"-m", model, "--profiles", db, "-np", "2", "-t", "1"}
	a, killA := startServeProcess(t, args...)
	b, killB := startServeProcess(t, args...)
	defer killB()
	if st, body := httpJSON(t, "POST", a+"/v1/users", map[string]any{"id": "w"}); st != 201 {
		t.Fatalf("create user: %d %s", st, body)
	}
	acked := &ackSet{ids: map[string]bool{}}
	for round := range 2 {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		before := acked.len()
		for w := range 4 {
			url := []string{a, b}[w%2]
			wg.Add(1)
			go func() { defer wg.Done(); writeItems(url, fmt.Sprintf("r%d-w%d", round, w), stop, acked) }()
		}
		waitUntil(heavyWait, func() bool { return acked.len() > before+8 })
		time.Sleep(300 * time.Millisecond)
		killA()
		time.Sleep(200 * time.Millisecond) // B goes on alone
		close(stop)
		wg.Wait()
		checkAcked(t, db, acked, round)
		a, killA = startServeProcess(t, args...)
	}
	killA()
}

// ackSet is the ids the replicas acknowledged.
type ackSet struct {
	mu  sync.Mutex
	ids map[string]bool
}

func (s *ackSet) add(id string) { s.mu.Lock(); s.ids[id] = true; s.mu.Unlock() }

func (s *ackSet) len() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.ids) }

// writeItems posts items to user w until stop or the server is gone.
func writeItems(url, prefix string, stop chan struct{}, acked *ackSet) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		id := fmt.Sprintf("%s-%d", prefix, i)
		status, err := tryPost(url+"/v1/users/w/items", fmt.Sprintf(`{"id": %q, "text": "item %s %s"}`, id, id, strings.Repeat("word ", 40)))
		if err != nil {
			return
		}
		if status == 201 {
			acked.add(id)
		}
	}
}

func checkAcked(t *testing.T, db string, acked *ackSet, round int) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if v, err := st.IntegrityCheck(ctx); err != nil || v != "ok" {
		t.Fatalf("round %d: integrity %q %v", round, v, err)
	}
	items, err := st.Items(ctx, "w")
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, it := range items {
		have[it.ID] = true
	}
	acked.mu.Lock()
	defer acked.mu.Unlock()
	for id := range acked.ids {
		if !have[id] {
			t.Fatalf("round %d: acknowledged item %s lost (%d acknowledged, %d stored)", round, id, len(acked.ids), len(items))
		}
	}
	t.Logf("round %d: %d acknowledged, %d stored", round, len(acked.ids), len(items))
}

// A replica whose database stops answers 503 with Retry-After (the
// process lives on) and serves again once the database is back.
func TestReplicaOutlivesItsDatabase(t *testing.T) {
	model := testenv.Stories260K(t)
	pg := pgtest.Start(t)
	db := pg.NewDatabase()
	url, kill := startServeProcess(t, "-m", model, "--profiles", db, "-np", "1", "-t", "1")
	defer kill()
	if st, body := httpJSON(t, "POST", url+"/v1/users", map[string]any{"id": "ann"}); st != 201 {
		t.Fatalf("create: %d %s", st, body)
	}
	pg.Stop()
	resp, err := http.Get(url + "/v1/users/ann")
	if err != nil {
		t.Fatalf("the replica is gone with its database: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), `"database_unavailable"`) {
		t.Fatalf("with the database down: %d Retry-After %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	pg.Restart()
	if st, body := httpJSON(t, "GET", url+"/v1/users/ann", nil); st != 200 {
		t.Fatalf("after the database came back: %d %s", st, body)
	}
}
