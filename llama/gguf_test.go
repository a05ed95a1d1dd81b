package llama

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A GGUF written with GGUFWriter reads back through GGUFFile: typed keys,
// the tensor table and the data where the table says; a getter of the
// wrong type and data of the wrong size are errors, not aborts.
func TestGGUFRoundTrip(t *testing.T) {
	w := NewGGUFWriter()
	defer w.Close()
	w.SetString("a.name", "plug")
	w.SetUint32("a.n", 7)
	w.SetFloat32("a.x", 1.5)
	data := []float32{1, 2, 3, 4, 5, 6}
	if err := w.AddTensor("t", TensorF32, []int64{3, 2}); err != nil {
		t.Fatal(err)
	}
	if err := w.AddTensor("t", TensorF32, []int64{3}); err == nil {
		t.Error("declared tensor t twice")
	}
	var buf bytes.Buffer
	raw := func(i int, out io.Writer) error {
		_, err := out.Write(leFloatBytes(data))
		return err
	}
	if err := w.Write(&buf, raw); err != nil {
		t.Fatal(err)
	}
	short := func(i int, out io.Writer) error { _, err := out.Write([]byte{1, 2}); return err }
	if err := w.Write(io.Discard, short); err == nil || !strings.Contains(err.Error(), "tensor t") {
		t.Errorf("2 bytes for a 3x2 f32 tensor: %v", err)
	}
	path := filepath.Join(t.TempDir(), "x.gguf")
	if err := os.WriteFile(path, buf.Bytes(), 0o666); err != nil {
		t.Fatal(err)
	}
	f, err := OpenGGUF(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	checkGGUFKeys(t, f)
	i := f.FindTensor("t")
	ti := f.Tensor(i)
	if i < 0 || f.NTensors() != 1 || ti.Type != TensorF32 || ti.Type.String() != "f32" || !slices.Equal(ti.Shape, []int64{3, 2}) || ti.Size != 24 {
		t.Fatalf("tensor %d of %d: %+v", i, f.NTensors(), ti)
	}
	at := f.DataOffset() + ti.Offset
	if !bytes.Equal(buf.Bytes()[at:at+ti.Size], leFloatBytes(data)) {
		t.Error("the tensor's data is not where the table says")
	}
	for range 2 {
		if err := f.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	if _, err := OpenGGUF(filepath.Join(t.TempDir(), "none.gguf")); err == nil {
		t.Error("opened a missing file")
	}
}

func checkGGUFKeys(t *testing.T, f *GGUFFile) {
	t.Helper()
	name, err1 := f.String(f.FindKey("a.name"))
	n, err2 := f.Uint32(f.FindKey("a.n"))
	x, err3 := f.Float32(f.FindKey("a.x"))
	if err := errors.Join(err1, err2, err3); err != nil || name != "plug" || n != 7 || x != 1.5 {
		t.Fatalf("keys %q %d %v: %v", name, n, x, err)
	}
	if _, err := f.Uint32(f.FindKey("a.name")); err == nil {
		t.Error("read a string key as uint32")
	}
	if f.FindKey("a.none") != -1 || f.ValueString(f.FindKey("a.n")) != "7" || f.Key(f.FindKey("a.x")) != "a.x" || f.NKV() < 3 {
		t.Error("FindKey, ValueString, Key or NKV disagree with what was written")
	}
}

// Perf counts the prompt's positions and the tokens decoded one by one,
// with their times. llama.cpp counts a decode when it synchronises with it
// (reading its logits or the next decode), so the last one may be missing.
func TestPerfCounters(t *testing.T) {
	m := loadStories(t)
	c := newCtx(t, m, ContextOptions{NCtx: 128, Threads: 1})
	toks := storiesPrompt(t, m)
	res, err := c.Generate(context.Background(), greedy(t), []Input{TokenInput(toks...)}, 0, GenerateOptions{MaxTokens: 5})
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.Perf()
	if err != nil {
		t.Fatal(err)
	}
	if p.PromptTokens != len(toks) || p.EvalTokens < res.Stats.GenTokens-1 || p.EvalTokens > res.Stats.GenTokens || p.Prompt <= 0 || p.Eval <= 0 {
		t.Fatalf("perf %+v after a prompt of %d and %d generated tokens", p, len(toks), res.Stats.GenTokens)
	}
}

// leFloatBytes is f's bytes in little-endian order.
func leFloatBytes(f []float32) []byte {
	b := make([]byte, 0, 4*len(f))
	for _, x := range f {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}
