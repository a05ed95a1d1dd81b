//go:build heavy

package store

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// kill -9 during writes: every acknowledged item is there and the file is intact.
func TestKill9DuringWrites(t *testing.T) { forEachStore(t, testKill9DuringWrites) }

func testKill9DuringWrites(t *testing.T, path string) {
	ctx := context.Background()
	st, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateUser(ctx, "w", NewKey()); err != nil {
		t.Fatal(err)
	}
	st.Close()
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "PPLUG_STORE_WRITER="+path, "PPLUG_STORE_WRITER_ROUND="+strconv.Itoa(round))
		out, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var acked []string
		sc := bufio.NewScanner(out)
		// The writer runs for a while after its first item (a loaded
		// machine may take long to start it), then is killed mid-write.
		var deadline time.Time
		for sc.Scan() {
			acked = append(acked, sc.Text())
			if len(acked) == 1 {
				deadline = time.Now().Add(time.Duration(300+round*200) * time.Millisecond)
			}
			if time.Now().After(deadline) {
				break
			}
		}
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		if len(acked) == 0 {
			t.Fatalf("round %d: the writer acknowledged no item: the round tested nothing", round)
		}
		st, err := Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		if v, err := st.IntegrityCheck(ctx); err != nil || v != "ok" {
			t.Fatalf("round %d: integrity_check %q %v", round, v, err)
		}
		items, err := st.Items(ctx, "w")
		if err != nil {
			t.Fatal(err)
		}
		have := map[string]bool{}
		for _, it := range items {
			have[it.ID] = true
		}
		for _, id := range acked {
			if !have[id] || !have[id+"b"] {
				t.Fatalf("round %d: acknowledged item %s lost (%d acknowledged, %d stored)", round, id, len(acked), len(items))
			}
		}
		// Transactions: items come in pairs, never half a pair.
		if len(items)%2 != 0 {
			t.Fatalf("round %d: %d items, a transaction was half applied", round, len(items))
		}
		t.Logf("round %d: %d acknowledged, %d items stored", round, len(acked), len(items))
		st.Close()
	}
}
