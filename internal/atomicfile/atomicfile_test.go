package atomicfile

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestWriteReplaces(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.txt")
	for _, text := range []string{"one", "two"} {
		if err := Write(path, func(w io.Writer) error { _, err := io.WriteString(w, text); return err }); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(path); string(b) != text {
			t.Fatalf("read %q, want %q", b, text)
		}
	}
	// A failing writer leaves the old content and no temporary file.
	boom := errors.New("boom")
	if err := Write(path, func(w io.Writer) error { io.WriteString(w, "three"); return boom }); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "two" {
		t.Fatalf("after a failed write: %q", b)
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Fatalf("left %d files", len(ents))
	}
}

// Errors name the destination, not the hidden temporary file.
func TestErrorsNameTarget(t *testing.T) {
	dir := t.TempDir()
	check := func(what, path string, err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s: no error", what)
		}
		if !strings.Contains(err.Error(), path) || strings.Contains(err.Error(), ".tmp-") {
			t.Fatalf("%s: error %q should name %s and not the temporary file", what, err, path)
		}
		var pe *fs.PathError
		if !errors.As(err, &pe) {
			t.Fatalf("%s: %v is not a *fs.PathError", what, err)
		}
	}
	ok := func(w io.Writer) error { _, err := io.WriteString(w, "x"); return err }

	missing := filepath.Join(dir, "no", "such", "dir", "f.json")
	err := Write(missing, ok)
	check("missing folder", missing, err)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("%v does not wrap fs.ErrNotExist", err)
	}

	// The destination is a folder that is not empty: the rename fails.
	full := filepath.Join(dir, "full")
	os.MkdirAll(filepath.Join(full, "inside"), 0o755)
	check("rename over a folder", full, Write(full, ok))
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("a failed write left %d entries in %s", len(ents), dir)
	}

	// A write to the temporary file that fails reports the destination.
	f, err := os.CreateTemp(dir, ".x.tmp-*")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	target := filepath.Join(dir, "x")
	_, err = targetWriter{f: f, path: target}.Write([]byte("x"))
	check("write after close", target, err)
}

// WriteNew never replaces a file, also one created after any check the
// caller made; the temporary file goes either way.
func TestWriteNewNeverReplaces(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "t.json")
	write := func(text string) func(w io.Writer) error {
		return func(w io.Writer) error { _, err := io.WriteString(w, text); return err }
	}
	if err := WriteNew(path, write("first")); err != nil {
		t.Fatal(err)
	}
	err := WriteNew(path, write("second"))
	if !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), path) || strings.Contains(err.Error(), ".tmp-") {
		t.Fatalf("second WriteNew: %v", err)
	}
	// A file that appears between staging and committing is kept too.
	other := filepath.Join(dir, "race.json")
	st, err := Stage(other, write("staged"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(other, []byte("arrived meanwhile"), 0o644)
	if err := st.CommitNew(); !errors.Is(err, ErrExists) {
		t.Fatalf("commit over a file that arrived meanwhile: %v", err)
	}
	for name, want := range map[string]string{path: "first", other: "arrived meanwhile"} {
		if b, _ := os.ReadFile(name); string(b) != want {
			t.Errorf("%s holds %q, want %q", name, b, want)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Fatalf("%d files left, want 2 (no temporary file)", len(ents))
	}
}

// underUmask runs f with the process umask set to mask. The umask is
// process-wide: tests that use it do not run in parallel.
func underUmask(mask int, f func()) {
	old := syscall.Umask(mask)
	defer syscall.Umask(old)
	f()
}

// Every way of creating a file gives it 0666 less the umask, as os.Create
// does; replacing a file keeps its mode.
func TestNewFilesFollowUmask(t *testing.T) {
	ok := func(w io.Writer) error { _, err := io.WriteString(w, "x"); return err }
	stage := func(commit func(*Staged) error) func(string) error {
		return func(path string) error {
			st, err := Stage(path, ok)
			if err != nil {
				return err
			}
			return commit(st)
		}
	}
	ways := map[string]func(path string) error{
		"Write":           func(path string) error { return Write(path, ok) },
		"WriteNew":        func(path string) error { return WriteNew(path, ok) },
		"Stage+Commit":    stage((*Staged).Commit),
		"Stage+CommitNew": stage((*Staged).CommitNew),
	}
	for _, mask := range []int{0o077, 0o022, 0o027} {
		want := fs.FileMode(0o666 &^ mask)
		for name, write := range ways {
			path := filepath.Join(t.TempDir(), "new.json")
			var err error
			underUmask(mask, func() { err = write(path) })
			if err != nil {
				t.Fatalf("%s under umask %03o: %v", name, mask, err)
			}
			if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != want {
				t.Errorf("%s under umask %03o: mode %v (%v), want %v", name, mask, fi.Mode().Perm(), err, want)
			}
		}
	}
	path := filepath.Join(t.TempDir(), "old.json")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o604); err != nil {
		t.Fatal(err)
	}
	var err error
	underUmask(0o077, func() { err = Write(path, ok) })
	if fi, serr := os.Stat(path); err != nil || serr != nil || fi.Mode().Perm() != 0o604 {
		t.Fatalf("replacing a 0604 file under umask 077: %v %v, mode %v", err, serr, fi.Mode().Perm())
	}
}
