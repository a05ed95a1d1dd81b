package atomicfile

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
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
