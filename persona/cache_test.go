package persona

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
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
		vecs, _, err := EncodeCached(context.Background(), enc, cache, historyTexts[:3], nil)
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

// newTestEncoder is stories260K as its own encoder.
func newTestEncoder(t *testing.T) *Encoder {
	t.Helper()
	m := loadModel(t, testenv.Stories260K(t))
	enc, err := NewEncoder(m, EncoderOptions{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { enc.Close() })
	return enc
}

// encodeCounted runs EncodeCached and returns the vectors, the stats and
// the number of texts the encoder encoded meanwhile.
func encodeCounted(t *testing.T, enc *Encoder, cache *Cache, texts []string) ([][]float32, EncodeStats, int64) {
	t.Helper()
	n0 := enc.Texts()
	vecs, st, err := EncodeCached(context.Background(), enc, cache, texts, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(vecs) != len(texts) {
		t.Fatalf("%d vectors for %d texts", len(vecs), len(texts))
	}
	return vecs, st, enc.Texts() - n0
}

// The cache is addressed by content: a text is encoded once per encoder,
// whichever profile asks for it; repeated texts within a call are encoded
// once; a changed item re-encodes only itself.
func TestCacheEncodesEachTextOnce(t *testing.T) {
	enc := newTestEncoder(t)
	for _, cache := range []*Cache{{Dir: t.TempDir()}, nil} {
		texts := append(append([]string(nil), historyTexts...), historyTexts[0], historyTexts[2])
		first, st, n := encodeCounted(t, enc, cache, texts)
		if n != int64(len(historyTexts)) || st.Encoded != len(historyTexts) || st.Distinct != len(historyTexts) || st.Items != len(texts) {
			t.Fatalf("cache %v: %d texts with %d distinct: encoded %d, %+v", cache != nil, len(texts), len(historyTexts), n, st)
		}
		if maxDiff(first[0], first[len(historyTexts)]) != 0 {
			t.Fatal("a repeated text got another vector")
		}
	}
	cache := &Cache{Dir: t.TempDir()}
	encodeCounted(t, enc, cache, historyTexts[:4])
	// Another profile sharing two items: only its own two are encoded.
	other := []string{historyTexts[2], "A new item about a cat.", historyTexts[3], "A changed item about a robot."}
	vecs, st, n := encodeCounted(t, enc, cache, other)
	if n != 2 || st.Encoded != 2 || st.Cached != 2 {
		t.Fatalf("a profile sharing 2 of 4 items: encoded %d, %+v", n, st)
	}
	again, st, n := encodeCounted(t, enc, cache, other)
	if n != 0 || st.Cached != 4 {
		t.Fatalf("an unchanged profile: encoded %d, %+v", n, st)
	}
	for i := range vecs {
		if maxDiff(vecs[i], again[i]) != 0 {
			t.Fatalf("cached vector %d differs", i)
		}
	}
}

// A damaged or truncated file, or a file of another text, encoder or
// width, is detected, encoded again and rewritten, never trusted.
func TestCacheRebuildsDamage(t *testing.T) {
	enc := newTestEncoder(t)
	cache := &Cache{Dir: t.TempDir()}
	texts := historyTexts[:3]
	want, _, _ := encodeCounted(t, enc, cache, texts)
	path := cache.Path(enc.ID(), TextKey(texts[1]))
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := os.ReadFile(cache.Path(enc.ID(), TextKey(texts[0])))
	flip := append([]byte(nil), good...)
	flip[len(flip)/2] ^= 0x40
	damage := map[string][]byte{"flipped bit": flip, "truncated": good[:len(good)-7], "empty": nil, "another text's file": other}
	for what, b := range damage {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := cache.Get(enc.ID(), TextKey(texts[1]), enc.Dim()); !errors.Is(err, ErrCacheCorrupt) {
			t.Fatalf("%s: Get gave %v", what, err)
		}
		vecs, st, n := encodeCounted(t, enc, cache, texts)
		if n != 1 || st.Rebuilt != 1 || st.Cached != 2 || maxDiff(vecs[1], want[1]) > 1e-6 {
			t.Fatalf("%s: encoded %d, %+v", what, n, st)
		}
		if v, err := cache.Get(enc.ID(), TextKey(texts[1]), enc.Dim()); err != nil || maxDiff(v, vecs[1]) != 0 {
			t.Fatalf("%s: the file was not rewritten: %v", what, err)
		}
	}
	if v, err := cache.Get("another encoder", TextKey(texts[1]), enc.Dim()); v != nil || err != nil {
		t.Fatalf("another encoder's cache: %v %v", v, err)
	}
	if _, err := cache.Get(enc.ID(), TextKey(texts[1]), enc.Dim()+1); !errors.Is(err, ErrCacheCorrupt) {
		t.Fatalf("another width: %v", err)
	}
}

// Goroutines and processes writing the same texts at once leave only
// whole, valid files.
func TestCacheConcurrentWriters(t *testing.T) {
	if dir := os.Getenv("PPLUG_TEST_CACHE_WRITER"); dir != "" {
		enc := newTestEncoder(t)
		concurrentEncodes(t, enc, &Cache{Dir: dir})
		return
	}
	enc := newTestEncoder(t)
	dir := t.TempDir()
	var cmds []*exec.Cmd
	for range 2 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCacheConcurrentWriters$")
		cmd.Env = append(os.Environ(), "PPLUG_TEST_CACHE_WRITER="+dir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	concurrentEncodes(t, enc, &Cache{Dir: dir})
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("writer process: %v", err)
		}
	}
	_, st, n := encodeCounted(t, enc, &Cache{Dir: dir}, historyTexts)
	if n != 0 || st.Rebuilt != 0 || st.Cached != len(historyTexts) {
		t.Fatalf("after concurrent writers: encoded %d, %+v", n, st)
	}
	tmp, _ := filepath.Glob(filepath.Join(dir, "*", "*", "*", ".*"))
	if len(tmp) != 0 {
		t.Fatalf("temporary files left: %v", tmp)
	}
}

// concurrentEncodes encodes overlapping slices of historyTexts from 4
// goroutines, 5 times each, with a fresh cache folder view every time.
func concurrentEncodes(t *testing.T, enc *Encoder, cache *Cache) {
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				if _, _, err := EncodeCached(context.Background(), enc, cache, historyTexts[g%2:], nil); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
