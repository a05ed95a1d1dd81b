package llama

import (
	"context"
	"testing"
)

// TestPooledDecodeMarksAllOutputs: on a context that pools embeddings, a
// decode that asks for the last row only (DecodeInputs' default) gives the
// pooled vector of all rows. llama.cpp's pooling graph aborted the process
// (GGML_ASSERT in ggml_mul_mat) when a row was not an output.
func TestPooledDecodeMarksAllOutputs(t *testing.T) {
	m := loadStories(t)
	toks, err := m.Tokenize("Once upon a time there was a dog", true, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, pool := range []Pooling{PoolingMean, PoolingCLS, PoolingLast} {
		t.Run(pool.String(), func(t *testing.T) {
			c := newCtx(t, m, ContextOptions{NCtx: 256, Threads: 1, Embeddings: true, Pooling: pool})
			if _, err := c.DecodeInputs(context.Background(), []Input{TokenInput(toks...)}, DecodeOptions{Output: OutputLast}); err != nil {
				t.Fatal(err)
			}
			last, err := c.SeqEmbeddings(0)
			if err != nil {
				t.Fatal(err)
			}
			// The same rows, every one an output.
			if err := c.ClearMemory(); err != nil {
				t.Fatal(err)
			}
			if err := c.Decode(context.Background(), seqBatch(toks)); err != nil {
				t.Fatal(err)
			}
			all, err := c.SeqEmbeddings(0)
			if err != nil {
				t.Fatal(err)
			}
			if len(last) != m.NEmbd() || len(all) != len(last) {
				t.Fatalf("vectors of %d and %d values, want %d", len(last), len(all), m.NEmbd())
			}
			for i := range all {
				if last[i] != all[i] {
					t.Fatalf("value %d: %g with the last row as output, %g with all", i, last[i], all[i])
				}
			}
		})
	}
}
