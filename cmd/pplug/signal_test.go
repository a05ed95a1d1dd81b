package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pplug/pplug/internal/testenv"
)

// proc is pplug running in its own process (the test binary, TestMain)
// with its standard input on a pipe that the test keeps open.
type proc struct {
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	lines    chan string // standard output, line by line
	errLines chan string // standard error, line by line
	stderr   lockedBuffer
	done     chan error
}

// lockedBuffer is standard error as read so far.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.WriteString(line + "\n")
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startPplug(t *testing.T, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(os.Args[0], args...), lines: make(chan string, 1<<16),
		errLines: make(chan string, 1<<16), done: make(chan error, 1)}
	p.cmd.Env = append(os.Environ(), "PPLUG_RUN_MAIN=1")
	var err error
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	errOut, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		scanLines(errOut, func(l string) { p.stderr.add(l); p.errLines <- l })
	}()
	go func() {
		defer wg.Done()
		scanLines(out, func(l string) { p.lines <- l })
		close(p.lines)
	}()
	go func() {
		wg.Wait() // Wait closes the pipes: read them to the end first
		p.done <- p.cmd.Wait()
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		p.stdin.Close()
	})
	return p
}

// scanLines calls f with each line of r, however long.
func scanLines(r io.Reader, f func(string)) {
	br := bufio.NewReader(r)
	for {
		l, err := br.ReadString('\n')
		if l != "" {
			f(strings.TrimSuffix(l, "\n"))
		}
		if err != nil {
			return
		}
	}
}

// waitErr waits for a line of standard error that contains s.
func (p *proc) waitErr(t *testing.T, s string, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case l := <-p.errLines:
			if strings.Contains(l, s) {
				return
			}
		case <-deadline:
			t.Fatalf("no %q on stderr within %s:\n%s", s, within, p.stderr.String())
		}
	}
}

// line waits for the next line of standard output.
func (p *proc) line(t *testing.T, within time.Duration) string {
	t.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			t.Fatalf("pplug ended early:\n%s", p.stderr.String())
		}
		return l
	case <-time.After(within):
		t.Fatalf("no output within %s:\n%s", within, p.stderr.String())
	}
	return ""
}

// stop sends SIGTERM and returns the exit status and how long the process
// took to end (it is killed after limit).
func (p *proc) stop(t *testing.T, limit time.Duration) (int, time.Duration) {
	t.Helper()
	t0 := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(limit):
		p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("still running %s after SIGTERM:\n%s", limit, p.stderr.String())
	}
	return p.cmd.ProcessState.ExitCode(), time.Since(t0)
}

// TestChatIdleSIGTERM: chat waiting for its next line on a pipe ends on
// SIGTERM with status 143 (it used to wait for input that never came).
func TestChatIdleSIGTERM(t *testing.T) {
	model := testenv.Stories260K(t)
	p := startPplug(t, "chat", "-m", model, "-n", "4", "-t", "1")
	fmt.Fprintln(p.stdin, "/help")
	p.line(t, 30*time.Second) // the empty line of a command: chat reads on
	code, took := p.stop(t, 5*time.Second)
	if code != 143 || took > 2*time.Second || !strings.Contains(p.stderr.String(), "stopped by terminated") {
		t.Fatalf("exit %d after %s:\n%s", code, took, p.stderr.String())
	}
}

// writeTranscript writes a /save transcript of n messages.
func writeTranscript(t testing.TB, n int) string {
	msgs := make([]map[string]string, n)
	for i := range msgs {
		if i%2 == 0 {
			msgs[i] = map[string]string{"role": "user", "content": fmt.Sprintf("Tell me about the dog number %d in the park.", i)}
		} else {
			msgs[i] = map[string]string{"role": "assistant", "content": fmt.Sprintf("The dog %d ran in the park and played with a ball.", i)}
		}
	}
	b, err := json.Marshal(map[string]any{"pplug_transcript": 1, "model": "m", "method": "none", "settings": "", "saved": "", "messages": msgs})
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), fmt.Sprintf("t%d.json", n))
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// loadAndAnswer times /load of an n-message transcript and the answer to
// the next message; before the window search, 1,000 messages took 15 s
// and 10,000 more than two minutes.
func loadAndAnswer(t *testing.T, n int, limit time.Duration) {
	model := testenv.Stories260K(t)
	f := writeTranscript(t, n)
	p := startPplug(t, "chat", "-m", model, "-n", "4", "-t", "1", "--temp", "0")
	t0 := time.Now()
	fmt.Fprintf(p.stdin, "/load %s\nhello\n", f)
	p.line(t, limit)
	answer := p.line(t, limit-time.Since(t0))
	took := time.Since(t0)
	t.Logf("%d messages: /load and an answer in %s", n, took.Round(time.Millisecond))
	if answer == "" || !strings.Contains(p.stderr.String(), fmt.Sprintf("loaded %d messages", n)) {
		t.Fatalf("answer %q:\n%s", answer, p.stderr.String())
	}
	p.stdin.Close()
	if err := <-p.done; err != nil {
		t.Fatalf("%v:\n%s", err, p.stderr.String())
	}
}

func TestChatLoadLongTranscript(t *testing.T) {
	loadAndAnswer(t, 10000, 30*time.Second)
}

// TestChatLoadSIGTERM: SIGTERM while chat works through a long transcript
// stops it within seconds.
func TestChatLoadSIGTERM(t *testing.T) {
	model := testenv.Stories260K(t)
	f := writeTranscript(t, 20000)
	p := startPplug(t, "chat", "-m", model, "-n", "4", "-t", "1")
	fmt.Fprintf(p.stdin, "/load %s\nhello\n", f)
	time.Sleep(300 * time.Millisecond)
	if code, took := p.stop(t, 5*time.Second); code != 143 || took > 3*time.Second {
		t.Fatalf("exit %d after %s:\n%s", code, took, p.stderr.String())
	}
}

// TestBenchSIGTERM: SIGTERM in the middle of each kind of bench test ends
// the run within 2 s with status 143 (it took 27 s: the C loop and the
// repetitions did not look at the signal).
func TestBenchSIGTERM(t *testing.T) {
	model := testenv.Stories260K(t)
	prof := filepath.Join(t.TempDir(), "me.jsonl")
	os.WriteFile(prof, []byte(`{"id":"1","text":"I like cats."}`+"\n"+`{"id":"2","text":"Tom has a red ball."}`+"\n"), 0o644)
	long := []string{"--progress", "-t", "1"}
	for _, tc := range []struct {
		name string
		args []string
		wait string // the progress line to interrupt
	}{
		{"C loop", []string{"-p", "0", "-n", "1500", "-r", "2"}, "tg1500 (C loop): run 1/"},
		{"tg", []string{"-p", "0", "-n", "1500", "-r", "2", "--no-c-loop"}, "tg1500: run 1/"},
		{"pp", []string{"-p", "2000", "-n", "0", "-b", "2000", "-r", "5"}, "pp2000: run 1/"},
		{"pg at depth", []string{"-p", "0", "-n", "0", "-pg", "100,1500", "-d", "500", "-r", "2"}, "pp100+tg1500 @ d500: run 1/"},
		{"persona", []string{"-p", "0", "-n", "0", "-r", "3", "--profile", prof, "--agg-items", "100000"}, "persona aggregate N=100000: warmup"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startPplug(t, append(append([]string{"bench", "-m", model}, long...), tc.args...)...)
			p.waitErr(t, tc.wait, 60*time.Second)
			time.Sleep(50 * time.Millisecond) // into the run
			code, took := p.stop(t, 10*time.Second)
			if code != 143 || took > 2*time.Second {
				t.Fatalf("exit %d after %s:\n%s", code, took, p.stderr.String())
			}
		})
	}
}
