//go:build heavy

package store

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary act as a writer process for the kill test.
func TestMain(m *testing.M) {
	if path := os.Getenv("PPLUG_STORE_WRITER"); path != "" {
		os.Exit(writer(path))
	}
	os.Exit(m.Run())
}

// writer appends items forever, printing each committed item's id. Ids
// carry the round ($PPLUG_STORE_WRITER_ROUND): an id the user already has
// is refused, and every round starts a new writer.
func writer(path string) int {
	prefix := "r" + os.Getenv("PPLUG_STORE_WRITER_ROUND") + "-it-"
	ctx := context.Background()
	st, err := Open(ctx, path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for i := 0; ; i++ {
		id := prefix + strconv.Itoa(i)
		if _, err := st.AddItems(ctx, "w", []NewItem{{ID: id, Text: strings.Repeat("text ", 50) + id}, {ID: id + "b", Text: "pair " + id}}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println(id)
	}
}

// kill -9 during writes: every acknowledged item is there and the file is intact.
func TestKill9DuringWrites(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "p.db")
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
