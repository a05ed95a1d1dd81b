package llama

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/pplug/pplug/internal/testenv"
)

// withNRot writes a copy of stories260K (head size 8) whose
// llama.rope.dimension_count is nRot, which llama.cpp refuses.
func withNRot(t *testing.T, nRot byte) string {
	t.Helper()
	b, err := os.ReadFile(testenv.Stories260K(t))
	if err != nil {
		t.Fatal(err)
	}
	key := []byte("llama.rope.dimension_count")
	i := bytes.Index(b, key)
	if i < 0 {
		t.Fatal("stories260K has no llama.rope.dimension_count")
	}
	i += len(key) + 4 // the uint32 type tag, then the value
	if b[i] != 8 {
		t.Fatalf("n_rot is %d, the test expects 8", b[i])
	}
	b[i] = nRot
	p := filepath.Join(t.TempDir(), fmt.Sprintf("nrot%d.gguf", nRot))
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// A load failure carries llama.cpp's reason, with llama.cpp's log silenced.
func TestLoadErrorSaysWhy(t *testing.T) {
	SetLogger(nil, 0)
	p := withNRot(t, 4)
	_, err := LoadModel(context.Background(), p, ModelOptions{})
	if err == nil {
		t.Fatal("loaded a model with a bad n_rot")
	}
	if !strings.Contains(err.Error(), "invalid n_rot: 4, expected 8") || !strings.Contains(err.Error(), p) {
		t.Fatalf("error %q lacks the reason or the file", err)
	}
}

// Concurrent failing loads each report their own reason.
func TestLoadErrorsConcurrent(t *testing.T) {
	SetLogger(nil, 0)
	paths := map[byte]string{2: withNRot(t, 2), 4: withNRot(t, 4)}
	var wg sync.WaitGroup
	errs := make(chan string, 16)
	for i := range 16 {
		nRot := byte(2 + 2*(i%2))
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := LoadModel(context.Background(), paths[nRot], ModelOptions{})
			want := fmt.Sprintf("invalid n_rot: %d, expected 8", nRot)
			if err == nil || !strings.Contains(err.Error(), want) {
				errs <- fmt.Sprintf("load of n_rot %d: %v (want %q)", nRot, err, want)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
