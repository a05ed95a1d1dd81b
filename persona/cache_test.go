package persona

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/pplug/pplug/internal/testenv"
)

// encodeTwice runs EncodeCached twice with cache and returns the warnings
// its Warn heard and the error, if any.
func encodeTwice(t *testing.T, enc *Encoder, cache *Cache) ([]string, error) {
	t.Helper()
	var warned []string
	cache.Warn = func(err error) { warned = append(warned, err.Error()) }
	for range 2 {
		vecs, _, err := EncodeCached(context.Background(), enc, cache, "user-1", historyTexts[:3], nil)
		if err != nil {
			return warned, err
		}
		if len(vecs) != 3 || len(vecs[0]) != enc.Dim() {
			t.Fatalf("%d vectors", len(vecs))
		}
	}
	return warned, nil
}

// TestOptionalCacheUnusable: an optional cache that cannot be used (a file
// where the folder should be, a folder that cannot be written, a full
// disk) is left out after one warning; a required one fails.
func TestOptionalCacheUnusable(t *testing.T) {
	m := loadModel(t, testenv.Stories260K(t))
	enc, err := NewEncoder(m, EncoderOptions{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	if dir := os.Getenv("PPLUG_TEST_FSIZE_CACHE"); dir != "" {
		// The child: files cannot grow past one byte, as on a full disk.
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: 1, Max: 1}); err != nil {
			t.Fatal(err)
		}
		warned, err := encodeTwice(t, enc, &Cache{Dir: dir, Optional: true})
		fmt.Printf("warnings: %d %q, error: %v\n", len(warned), warned, err)
		_, err = encodeTwice(t, enc, &Cache{Dir: dir})
		fmt.Printf("required: %v\n", err)
		return
	}

	file := filepath.Join(t.TempDir(), "cache")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{file, "/proc/self/pplug-cache"} {
		warned, err := encodeTwice(t, enc, &Cache{Dir: dir, Optional: true})
		if err != nil || len(warned) != 1 || !strings.Contains(warned[0], dir) {
			t.Errorf("optional cache in %s: %v, warnings %q", dir, err, warned)
		}
		if _, err := encodeTwice(t, enc, &Cache{Dir: dir}); err == nil {
			t.Errorf("a required cache in %s did not fail", dir)
		}
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestOptionalCacheUnusable$")
	cmd.Env = append(os.Environ(), "PPLUG_TEST_FSIZE_CACHE="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "warnings: 1 ") || !strings.Contains(string(out), "file too large") ||
		!strings.Contains(string(out), "error: <nil>") || strings.Contains(string(out), "required: <nil>") {
		t.Errorf("with a file size limit:\n%s", out)
	}
}
