// Package scripts_test checks the shell scripts of scripts/ and the C
// baseline they drive (bench/cbaseline).
package scripts_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pplug/pplug/internal/testenv"
)

func repoRoot(t *testing.T) string {
	t.Helper()
	root, ok := testenv.RepoRoot()
	if !ok {
		t.Fatal("repository root (go.mod) not found")
	}
	return root
}

// runTool runs a program and returns its stdout, stderr and exit status.
func runTool(t *testing.T, env []string, name string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return stdout.String(), stderr.String(), ee.ExitCode()
	case err != nil:
		t.Fatalf("%s: %v", name, err)
	}
	return stdout.String(), stderr.String(), 0
}

func TestBenchCPUUsage(t *testing.T) {
	model := testenv.Stories260K(t)
	cases := []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "no MODEL given"},
		{[]string{model, "-p", "x"}, 2, "-p x: want a whole number >= 0"},
		{[]string{model, "-t", "0"}, 2, "-t 0: want a whole number >= 1"},
		{[]string{model, "-r", "99999999999999999999"}, 2, "want a whole number >= 1"},
		{[]string{model, "-r"}, 2, "-r needs a value"},
		{[]string{model, "--rounds", "0"}, 2, "--rounds 0: want a whole number >= 1"},
		{[]string{model, "--bogus", "1"}, 2, "unknown option --bogus"},
		{[]string{model, model}, 2, "one MODEL only"},
		{[]string{model, "-p", "0", "-n", "0"}, 2, "nothing to run"},
		{[]string{"/nonexistent/m.gguf"}, 1, "model /nonexistent/m.gguf not found"},
		{[]string{model}, 1, "/nonexistent/pplug not found: run 'make build'"},
	}
	for _, c := range cases {
		_, stderr, code := runTool(t, []string{"PPLUG=/nonexistent/pplug"}, "scripts/bench-cpu.sh", c.args...)
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("bench-cpu.sh %q: exit %d, stderr %q; want exit %d and %q", c.args, code, stderr, c.code, c.want)
		}
	}
}

// stubTool writes a fake benchmark that prints canned JSONL: its k-th call
// the k-th set of lines (the last set once they run out); it records its
// arguments and how many of the script's spinning processes it saw.
func stubTool(t *testing.T, dir, name string, calls ...[]string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	script := `#!/usr/bin/env bash
set -eu
d=$(dirname "$0"); n=$(basename "$0")
echo "$*" >>"$d/$n.args"
pgrep -c -f " spin $PPID\$" >>"$d/$n.spins" || true
k=$(wc -l <"$d/$n.args")
case $k in
`
	for i, lines := range calls {
		pat := strconv.Itoa(i + 1)
		if i == len(calls)-1 {
			pat = "*"
		}
		script += pat + ") cat <<'EOF'\n" + strings.Join(lines, "\n") + "\nEOF\n;;\n"
	}
	script += "esac\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func jsonl(test string, ts, sd float64) string {
	b, _ := json.Marshal(map[string]any{"test": test, "test_time": "2026-01-01T00:00:00Z", "avg_ts": ts, "stddev_ts": sd, "samples_ns": []int{1, 2}})
	return string(b)
}

// TestBenchCPUTable runs the script with fake tools: both run in each
// condition with the same tests, the table pairs pplug's rows with the
// baseline's, and the busy processes run during the busy condition only and
// are gone afterwards.
func TestBenchCPUTable(t *testing.T) {
	model := testenv.Stories260K(t)
	dir := t.TempDir()
	cb := stubTool(t, dir, "cbench",
		[]string{jsonl("pp32", 200, 2), jsonl("tg8", 40, 1)},
		[]string{jsonl("pp32", 100, 5), jsonl("tg8", 10, 1)})
	pp := stubTool(t, dir, "pplug",
		[]string{jsonl("pp32", 180, 3), jsonl("tg8", 38, 1), jsonl("tg8 (C loop)", 36, 1)},
		[]string{jsonl("pp32", 90, 4), jsonl("tg8", 4, 0.5), jsonl("tg8 (C loop)", 9, 1)})
	out := filepath.Join(dir, "out")
	stdout, stderr, code := runTool(t, []string{"PPLUG=" + pp, "CBENCH=" + cb, "OUT=" + out},
		"scripts/bench-cpu.sh", model, "-p", "32", "-n", "8", "-t", "2", "-r", "1", "--rounds", "1")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	for _, want := range []string{
		`quiet +pp32 +200\.00 \+/- +2\.00 +180\.00 \+/- +3\.00 +0\.90x`,
		`quiet +tg8 +40\.00 \+/- +1\.00 +38\.00 \+/- +1\.00 +0\.95x`,
		`quiet +tg8 \(C loop\) +40\.00 \+/- +1\.00 +36\.00 \+/- +1\.00 +0\.90x`,
		`busy2 +pp32 +100\.00 \+/- +5\.00 +90\.00 \+/- +4\.00 +0\.90x`,
		`busy2 +tg8 +10\.00 \+/- +1\.00 +4\.00 \+/- +0\.50 +0\.40x`,
		`busy2 +tg8 \(C loop\) +10\.00 \+/- +1\.00 +9\.00 \+/- +1\.00 +0\.90x`,
	} {
		if !regexp.MustCompile(want).MatchString(stdout) {
			t.Errorf("table lacks %q:\n%s", want, stdout)
		}
	}
	checkStubFile(t, dir, "cbench.args", "-m "+model+" -p 32 -n 8 -t 2 -r 1\n-m "+model+" -p 32 -n 8 -t 2 -r 1\n")
	checkStubFile(t, dir, "pplug.args", "bench -m "+model+" -o jsonl -p 32 -n 8 -t 2 -r 1\nbench -m "+model+" -o jsonl -p 32 -n 8 -t 2 -r 1\n")
	checkStubFile(t, dir, "cbench.spins", "0\n2\n")
	checkStubFile(t, dir, "pplug.spins", "0\n2\n")
	if _, err := os.Stat(filepath.Join(out, "table.txt")); err != nil {
		t.Errorf("the table is not kept in OUT: %v", err)
	}
	if n := spinners(t); n != 0 {
		t.Errorf("%d busy processes left after the script", n)
	}
}

// TestBenchCPURounds: with three rounds the tools alternate (baseline
// first, then pplug first, then baseline first), and the table gives the
// medians, the ratio of the medians and the range of the rounds' ratios.
func TestBenchCPURounds(t *testing.T) {
	model := testenv.Stories260K(t)
	dir := t.TempDir()
	cb := stubTool(t, dir, "cbench",
		[]string{jsonl("tg8", 40, 1)}, []string{jsonl("tg8", 20, 1)}, []string{jsonl("tg8", 30, 1)},
		[]string{jsonl("tg8", 10, 1)})
	pp := stubTool(t, dir, "pplug",
		[]string{jsonl("tg8", 40, 1)}, []string{jsonl("tg8", 18, 1)}, []string{jsonl("tg8", 33, 1)},
		[]string{jsonl("tg8", 9, 1)})
	order := filepath.Join(dir, "order")
	for _, tool := range []string{cb, pp} {
		b, _ := os.ReadFile(tool)
		b = bytes.Replace(b, []byte("set -eu\n"), []byte("set -eu\necho \"$(basename \"$0\")\" >>"+order+"\n"), 1)
		if err := os.WriteFile(tool, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	stdout, stderr, code := runTool(t, []string{"PPLUG=" + pp, "CBENCH=" + cb, "OUT=" + filepath.Join(dir, "out")},
		"scripts/bench-cpu.sh", model, "-p", "0", "-n", "8", "-r", "1", "--rounds", "3", "--busy", "1")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	// quiet: baseline 40, 20, 30 (median 30, sd 10); pplug 40, 18, 33
	// (median 33); ratios 1.00, 0.90, 1.10. busy: 10 and 9 every round.
	for _, want := range []string{
		`quiet +tg8 +30\.00 \+/- +10\.00 +33\.00 \+/- +11\.24 +1\.10x +0\.90-1\.10`,
		`busy1 +tg8 +10\.00 \+/- +0\.00 +9\.00 \+/- +0\.00 +0\.90x +0\.90-0\.90`,
	} {
		if !regexp.MustCompile(want).MatchString(stdout) {
			t.Errorf("table lacks %q:\n%s", want, stdout)
		}
	}
	checkStubFile(t, dir, "order", "cbench\npplug\npplug\ncbench\ncbench\npplug\ncbench\npplug\npplug\ncbench\ncbench\npplug\n")
	checkStubFile(t, dir, "cbench.spins", "0\n0\n0\n1\n1\n1\n")
}

func checkStubFile(t *testing.T, dir, name, want string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil || string(b) != want {
		t.Errorf("%s = %q (%v), want %q", name, b, err, want)
	}
}

// spinners counts the script's busy processes still running (any parent).
func spinners(t *testing.T) int {
	t.Helper()
	files, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err == nil && bytes.Contains(b, []byte("kill -0 \"$1\"")) && bytes.Contains(b, []byte("\x00spin\x00")) {
			n++
		}
	}
	return n
}

// cbench returns the built llama-cbench, or skips: it takes `make
// cpu-baseline` (10-25 minutes on 2 cores) to exist.
func cbench(t *testing.T) string {
	t.Helper()
	stdout, stderr, code := runTool(t, nil, "make", "-s", "--no-print-directory", "cpu-baseline-path")
	if code != 0 {
		t.Fatalf("make cpu-baseline-path: exit %d: %s", code, stderr)
	}
	path := strings.TrimSpace(stdout)
	if _, err := os.Stat(path); err != nil {
		t.Skipf("the C baseline is not built (%s): run make cpu-baseline", path)
	}
	return path
}

func TestCBenchRuns(t *testing.T) {
	bin := cbench(t)
	model := testenv.Stories260K(t)
	stdout, stderr, code := runTool(t, nil, bin, "-m", model, "-p", "16", "-n", "4", "-t", "1", "-r", "2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 JSON lines (pp16, tg4), got:\n%s", stdout)
	}
	for i, want := range []struct {
		test        string
		np, ng      int
		nSamplesNs  int
		buildCommit string
	}{{"pp16", 16, 0, 2, "ec98e2002"}, {"tg4", 0, 4, 2, "ec98e2002"}} {
		var r struct {
			Test        string    `json:"test"`
			NPrompt     int       `json:"n_prompt"`
			NGen        int       `json:"n_gen"`
			NThreads    int       `json:"n_threads"`
			AvgTs       float64   `json:"avg_ts"`
			StddevTs    *float64  `json:"stddev_ts"`
			SamplesNs   []float64 `json:"samples_ns"`
			BuildCommit string    `json:"build_commit"`
		}
		if err := json.Unmarshal([]byte(lines[i]), &r); err != nil {
			t.Fatalf("line %d is not JSON: %v\n%s", i, err, lines[i])
		}
		if r.Test != want.test || r.NPrompt != want.np || r.NGen != want.ng || r.NThreads != 1 ||
			r.AvgTs <= 0 || r.StddevTs == nil || len(r.SamplesNs) != want.nSamplesNs || r.BuildCommit != want.buildCommit {
			t.Errorf("line %d = %s; want test %s, n_prompt %d, n_gen %d, n_threads 1, avg_ts > 0, stddev_ts, 2 samples",
				i, lines[i], want.test, want.np, want.ng)
		}
	}
}

func TestCBenchBadInput(t *testing.T) {
	bin := cbench(t)
	model := testenv.Stories260K(t)
	cases := []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "no model given"},
		{[]string{"-m", model, "-t", "0"}, 2, "-t 0: want 1 to 512"},
		{[]string{"-m", model, "-p", "12x"}, 2, "-p 12x: want a whole number"},
		{[]string{"-m", model, "-fa", "maybe"}, 2, "-fa maybe: want auto, on or off"},
		{[]string{"-m", model, "-r"}, 2, "-r needs a value"},
		{[]string{"-m", model, "--bogus", "1"}, 2, "unknown option --bogus"},
		{[]string{"-m", model, "-p", "0", "-n", "0"}, 2, "nothing to run"},
		{[]string{"-m", "/nonexistent/m.gguf", "-p", "8", "-n", "0"}, 1, "cannot load the model /nonexistent/m.gguf"},
	}
	for _, c := range cases {
		_, stderr, code := runTool(t, nil, bin, c.args...)
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("llama-cbench %q: exit %d, stderr %q; want exit %d and %q", c.args, code, stderr, c.code, c.want)
		}
	}
}

// TestBenchCPUBusyEndsWithScript kills the script without giving it a chance
// to run its trap, in the busy condition: its busy processes end by
// themselves.
func TestBenchCPUBusyEndsWithScript(t *testing.T) {
	model := testenv.Stories260K(t)
	dir := t.TempDir()
	cb := stubTool(t, dir, "cbench", []string{jsonl("pp8", 1, 0)}, []string{jsonl("pp8", 1, 0)})
	slow := filepath.Join(dir, "slow")
	if err := os.WriteFile(slow, []byte("#!/bin/sh\nsleep 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("scripts/bench-cpu.sh", model, "-p", "8", "-n", "0", "--rounds", "1")
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), "PPLUG="+slow, "CBENCH="+cb, "OUT="+filepath.Join(dir, "out"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the busy condition", func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "cbench.spins"))
		return strings.Count(string(b), "\n") >= 2
	})
	if n := spinners(t); n != 2 {
		t.Errorf("%d busy processes in the busy condition, want 2", n)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	waitFor(t, "the busy processes to end", func() bool { return spinners(t) == 0 })
}

// waitFor polls cond for up to 20 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}
