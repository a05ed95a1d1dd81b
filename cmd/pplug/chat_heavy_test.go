//go:build heavy

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pplug/pplug/internal/testenv"
)

// TestChatLongWithPlug: a 300-message chat with persona rows in a
// 256-position window runs to the end, old turns dropped as it fills
// (answers as long as the window allows: the default -n).
func TestChatLongWithPlug(t *testing.T) {
	model := testenv.Stories260K(t)
	dir := t.TempDir()
	plug := filepath.Join(dir, "init.plug.gguf")
	if code, _, errs := pplug(t, "", "plug", "init", "-m", model, "-o", plug); code != 0 {
		t.Fatalf("plug init: %s", errs)
	}
	prof := filepath.Join(dir, "me.jsonl")
	os.WriteFile(prof, []byte(`{"id":"1","text":"I like cats."}`+"\n"+`{"id":"2","text":"Tom has a red ball."}`+"\n"), 0o644)
	const n = 300
	var msgs []string
	for i := range n {
		msgs = append(msgs, fmt.Sprintf("Tell me story number %d about Tom and his dog.", i))
	}
	code, out, errs := pplug(t, strings.Join(msgs, "\n")+"\n", "chat", "-m", model, "-c", "256", "-t", "1", "--seed", "1",
		"--profile", prof, "--plug", plug, "--cache-dir", dir)
	if code != 0 {
		t.Fatalf("exit %d after %d answers: %s", code, strings.Count(out, "\n"), lastLines(errs, 5))
	}
	if got := strings.Count(out, "\n"); got != n {
		t.Fatalf("%d answer lines for %d messages", got, n)
	}
	if !strings.Contains(errs, "dropped") {
		t.Fatal("the window never filled")
	}
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}
