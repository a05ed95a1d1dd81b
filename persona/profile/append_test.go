package profile

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// shortWriter lets the first n bytes of a write through, then fails as a
// full disk does.
type shortWriter struct {
	*os.File
	n int
}

func (w *shortWriter) Write(b []byte) (int, error) {
	k, err := w.File.Write(b[:min(w.n, len(b))])
	if err != nil {
		return k, err
	}
	return k, fmt.Errorf("write %s: %w", w.Name(), syscall.ENOSPC)
}

func checkUnchanged(t *testing.T, path, want string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != want {
		t.Fatalf("the failed append changed the file:\n%q\nwant\n%q", b, want)
	}
	if _, err := Load(path, Options{Strict: true}); err != nil {
		t.Fatalf("the profile no longer loads: %v", err)
	}
}

func TestAppendFailedWriteLeavesFileAsItWas(t *testing.T) {
	for _, content := range []string{
		"{\"id\":\"1\",\"text\":\"first\"}\n",
		"{\"id\":\"1\",\"text\":\"first\"}", // no final newline: the record starts with one
	} {
		path := filepath.Join(t.TempDir(), "p.jsonl")
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, n := range []int{0, 1, 10} {
			openAppendFile = func(path string) (appendFile, error) {
				f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
				return &shortWriter{File: f, n: n}, err
			}
			err := Append(path, FormatJSONL, map[string]string{"id": "2", "text": "second message"})
			openAppendFile = func(path string) (appendFile, error) { return os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0) }
			if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), path) {
				t.Fatalf("append on a full disk: %v", err)
			}
			checkUnchanged(t, path, content)
		}
		// The next append works.
		if err := Append(path, FormatJSONL, map[string]string{"id": "2", "text": "second"}); err != nil {
			t.Fatal(err)
		}
		if p, err := Load(path, Options{Strict: true}); err != nil || len(p.Items) != 2 {
			t.Fatalf("after a good append: %v %v", p, err)
		}
	}
}

// TestAppendFileSizeLimit appends in a child process whose file size limit
// (RLIMIT_FSIZE) stops the write part-way, as a full disk does.
func TestAppendFileSizeLimit(t *testing.T) {
	if path := os.Getenv("PPLUG_TEST_FSIZE_APPEND"); path != "" {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		lim := uint64(st.Size()) + 10
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: lim, Max: lim}); err != nil {
			t.Fatal(err)
		}
		err = Append(path, FormatJSONL, map[string]string{"id": "2", "text": "a message longer than ten bytes"})
		fmt.Printf("append error: %v\n", err)
		if err == nil {
			t.Fatal("the append went past the file size limit")
		}
		return
	}
	for _, content := range []string{"{\"id\":\"1\",\"text\":\"first\"}\n", "[{\"id\":\"1\",\"text\":\"first\"}]\n"} {
		path := filepath.Join(t.TempDir(), "p.jsonl")
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestAppendFileSizeLimit$", "-test.v")
		cmd.Env = append(os.Environ(), "PPLUG_TEST_FSIZE_APPEND="+path)
		out, err := cmd.CombinedOutput()
		t.Logf("child: %s", out)
		if err != nil || !strings.Contains(string(out), "append error: ") {
			t.Fatalf("child: %v", err)
		}
		if content[0] == '{' {
			checkUnchanged(t, path, content)
		}
	}
}

func TestLoadDamagedLastLine(t *testing.T) {
	dir := t.TempDir()
	good := "{\"id\":\"1\",\"text\":\"first\"}\n{\"id\":\"2\",\"text\":\"second\"}\n"
	for i, tc := range []struct {
		content string
		items   int
		warn    string // "" means Load fails
	}{
		{good + `{"id":"3","te`, 2, "line 3 is an incomplete record"},
		{good + "{\"id\":\"3\",\"text\":\"thi\n\n  \n", 2, "line 3 is an incomplete record"},
		{good + "\n" + `{"id":"3"`, 2, "line 4 is an incomplete record"},
		// Not the last line: the file is damaged, not merely cut short.
		{`{"id":"0","te` + "\n" + good, 0, ""},
		// Nothing left without the last line.
		{`{"id":"3","te`, 0, ""},
	} {
		path := filepath.Join(dir, fmt.Sprintf("p%d.jsonl", i))
		if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := Load(path, Options{})
		if tc.warn == "" {
			if err == nil {
				t.Errorf("%q loaded: %v", tc.content, p.Items)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.content, err)
			continue
		}
		if len(p.Items) != tc.items || !strings.Contains(warnings(p), tc.warn) {
			t.Errorf("%q: %d items, warnings %q", tc.content, len(p.Items), warnings(p))
		}
		if _, err := Load(path, Options{Strict: true}); err == nil {
			t.Errorf("%q: strict mode accepted the damaged line", tc.content)
		}
		// Append does not bury the damaged line.
		if err := Append(path, FormatJSONL, map[string]string{"text": "x"}); !errors.Is(err, ErrDamagedLastLine) {
			t.Errorf("%q: append after a damaged last line: %v", tc.content, err)
		}
		if b, _ := os.ReadFile(path); string(b) != tc.content {
			t.Errorf("%q: the refused append changed the file to %q", tc.content, b)
		}
	}
}

// TestAppendConcurrent appends from several goroutines, each call with its
// own file handles (as separate processes have): nothing may be lost.
func TestAppendConcurrent(t *testing.T) {
	const writers, each = 3, 20
	for _, tc := range []struct {
		name, content string
		format        Format
	}{
		{"p.json", "[{\"id\":\"0\",\"text\":\"first\"}]\n", FormatArray},
		{"p.jsonl", "{\"id\":\"0\",\"text\":\"first\"}\n", FormatJSONL},
	} {
		path := filepath.Join(t.TempDir(), tc.name)
		if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, writers*each)
		for w := range writers {
			wg.Go(func() {
				for i := range each {
					id := fmt.Sprintf("w%d-%d", w, i)
					if err := Append(path, tc.format, map[string]string{"id": id, "text": "message " + id}); err != nil {
						errs <- err
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		p, err := Load(path, Options{MaxItems: -1, Strict: true})
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, it := range p.Items {
			seen[it.ID] = true
		}
		if len(p.Items) != 1+writers*each || len(seen) != 1+writers*each {
			t.Errorf("%s: %d items (%d distinct) after %d appends to 1", tc.name, len(p.Items), len(seen), writers*each)
		}
	}
}

func TestOutputsFileIsNoProfile(t *testing.T) {
	_, err := parseString(t, `{"task": "LaMP_7", "golds": [{"id": "1", "output": "a"}, {"id": "2", "output": "b"}]}`, Options{})
	if !errors.Is(err, ErrOutputsFile) || !strings.Contains(err.Error(), "LaMP_7") || !strings.Contains(err.Error(), "questions file") {
		t.Fatalf("outputs file as a profile: %v", err)
	}
	// An item that merely has a "golds" string field is an item.
	if p, err := parseString(t, `{"text": "a", "golds": "x"}`, Options{}); err != nil || len(p.Items) != 1 {
		t.Fatalf("%v %v", p, err)
	}
}

// TestAppendBOM: a profile an editor saved with a UTF-8 byte order mark
// loads, and grows (the append used to fail on the mark: "invalid
// character 'ï'" for an array, "incomplete record" for JSON Lines).
func TestAppendBOM(t *testing.T) {
	for _, tc := range []struct {
		name, content string
		format        Format
	}{
		{"p.json", "\xef\xbb\xbf[{\"id\":\"1\",\"text\":\"first\"}]\n", FormatArray},
		{"p.jsonl", "\xef\xbb\xbf{\"id\":\"1\",\"text\":\"first\"}\n", FormatJSONL},
		{"one.jsonl", "\xef\xbb\xbf{\"id\":\"1\",\"text\":\"first\"}", FormatJSONL},
	} {
		path := filepath.Join(t.TempDir(), tc.name)
		if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
			t.Fatal(err)
		}
		if p, err := Load(path, Options{Strict: true}); err != nil || p.Format != tc.format || len(p.Items) != 1 {
			t.Fatalf("%s: load: %v", tc.name, err)
		}
		if err := Append(path, tc.format, map[string]string{"id": "2", "text": "second"}); err != nil {
			t.Fatalf("%s: append: %v", tc.name, err)
		}
		p, err := Load(path, Options{Strict: true})
		if err != nil || len(p.Items) != 2 || p.Items[1].Text != "second" {
			t.Fatalf("%s: after the append: %v", tc.name, err)
		}
		if b, _ := os.ReadFile(path); !strings.HasPrefix(string(b), "\xef\xbb\xbf") {
			t.Errorf("%s: the byte order mark is gone:\n%q", tc.name, b)
		}
	}
}
