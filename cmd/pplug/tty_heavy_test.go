//go:build heavy

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pplug/pplug/cgo"
	"github.com/pplug/pplug/internal/testenv"
	"github.com/pplug/pplug/llama/synth"
)

// tmux drives pplug chat in a real terminal: prompt, streaming, Ctrl-C
// during an answer, Ctrl-D to leave.
func TestChatInTerminal(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("tmux is missing (.ci/run installs it)")
		}
		t.Skip("tmux is not installed")
	}
	dir := t.TempDir()
	// A random-weight model slow enough to interrupt mid-answer, with the
	// Phi-3 vocabulary and chat template.
	model := filepath.Join(dir, "slow.gguf")
	err := synth.Write(model, testenv.Phi3Vocab(t), synth.Spec{
		Arch: "llama", NEmbd: 512, NLayer: 12, NHead: 8, NFF: 1536, NCtx: 4096, Type: cgo.TypeF16, Seed: 3,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	session := fmt.Sprintf("pplug-test-%d", os.Getpid())
	cmd := fmt.Sprintf("PPLUG_RUN_MAIN=1 HOME=%s %s chat -m %s -n 2000 -c 4096 --seed 1 -t 1; echo CHAT-EXITED-$?; sleep 30", dir, exe, model)
	tmux := func(args ...string) string {
		out, err := exec.Command("tmux", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	tmux("new-session", "-d", "-s", session, "-x", "160", "-y", "50", cmd)
	defer exec.Command("tmux", "kill-session", "-t", session).Run()
	screen := func() string { return tmux("capture-pane", "-p", "-t", session, "-S", "-200") }
	waitFor := func(what string, ok func(string) bool) string {
		deadline := time.Now().Add(heavyWait)
		for time.Now().Before(deadline) {
			if s := screen(); ok(s) {
				return s
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("timed out waiting for %s; screen:\n%s", what, screen())
		return ""
	}
	prompt := regexp.MustCompile(`(?m)^>\s*$`) // capture-pane drops trailing blanks
	waitFor("the prompt", func(s string) bool { return prompt.MatchString(s) && strings.Contains(s, "/help") })
	tmux("send-keys", "-t", session, "tell me a very long story", "Enter")
	// Streaming: text appears after the message while the answer runs.
	var answering string
	waitFor("the answer to stream", func(s string) bool {
		i := strings.Index(s, "tell me a very long story")
		if i < 0 {
			return false
		}
		answering = strings.TrimSpace(s[i+len("tell me a very long story"):])
		return len(answering) > 20
	})
	time.Sleep(300 * time.Millisecond)
	grown := screen()
	if !strings.Contains(grown, answering) {
		t.Fatalf("the streamed text changed instead of growing:\n%s", grown)
	}
	tmux("send-keys", "-t", session, "C-c")
	s := waitFor("the answer to stop", func(s string) bool {
		return strings.Contains(s, "[stopped]") && strings.HasSuffix(strings.TrimRight(s, "\n "), ">")
	})
	if strings.Contains(s, "CHAT-EXITED") {
		t.Fatalf("Ctrl-C ended the program:\n%s", s)
	}
	// The chat still answers, then Ctrl-D leaves it with status 0.
	tmux("send-keys", "-t", session, "/help", "Enter")
	waitFor("the help", func(s string) bool { return strings.Contains(s, "/persona on|off") })
	tmux("send-keys", "-t", session, "C-d")
	waitFor("the exit", func(s string) bool { return strings.Contains(s, "CHAT-EXITED-0") })
}
