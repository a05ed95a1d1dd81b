package persona

import (
	"context"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pplug/pplug/cgo"
	"github.com/pplug/pplug/internal/testenv"
	"github.com/pplug/pplug/llama"
	"github.com/pplug/pplug/llama/synth"
)

// nomicModel writes a small random-weight nomic-bert encoder (fused QKV,
// rotary positions, SwiGLU, mean pooling) with the BGE WordPiece vocabulary.
func nomicModel(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "nomic.gguf")
	err := synth.Write(p, testenv.BertVocab(t), synth.Spec{
		Arch: "nomic-bert", NEmbd: 64, NLayer: 2, NHead: 4, NFF: 128, NCtx: 256, RopeTheta: 1000,
		NormEps: 1e-12, Type: cgo.TypeF32, Pooling: cgo.PoolingMean, Std: 0.1, Seed: 11,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// decoderEmbedder writes a small random-weight qwen2 decoder whose metadata
// asks for the given pooling, as gte-Qwen2 and Qwen3-Embedding GGUFs do.
func decoderEmbedder(t testing.TB, pool cgo.PoolingType) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "qwen2-embed.gguf")
	err := synth.Write(p, testenv.Phi3Vocab(t), synth.Spec{
		Arch: "qwen2", NEmbd: 64, NLayer: 2, NHead: 4, NHeadKV: 2, NFF: 128, NCtx: 256,
		Type: cgo.TypeF32, Pooling: pool, Std: 0.1, Seed: 13, Tied: true,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// encoderFamilies are the history encoders beyond BERT and the LLM itself,
// with the pooling each must use by default (the model's own).
func encoderFamilies(t *testing.T) []struct {
	name, path, pool string
} {
	return []struct{ name, path, pool string }{
		{"nomic-bert", nomicModel(t), "mean"},
		{"qwen2-last", decoderEmbedder(t, cgo.PoolingLast), "last"},
		{"qwen2-mean", decoderEmbedder(t, cgo.PoolingMean), "mean"},
	}
}

// llamaCppEmbedding is the reference: one text decoded alone in a plain
// llama.cpp context with the model's own pooling, read with
// llama_get_embeddings_seq and L2-normalised.
func llamaCppEmbedding(t *testing.T, m *llama.Model, toks []llama.Token) []float32 {
	t.Helper()
	c, err := m.NewContext(llama.ContextOptions{
		NCtx: 256, NBatch: 256, NUBatch: 256, Threads: 1, Embeddings: true, Pooling: llama.PoolingDefault,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.DecodeInputs(context.Background(), []llama.Input{llama.TokenInput(toks...)}, llama.DecodeOptions{Output: llama.OutputAll}); err != nil {
		t.Fatal(err)
	}
	v, err := c.SeqEmbeddings(0)
	if err != nil {
		t.Fatal(err)
	}
	normalize(v)
	return v
}

// lastHiddenState is the last token's hidden state from a context without
// pooling: what last-token pooling must give.
func lastHiddenState(t *testing.T, m *llama.Model, toks []llama.Token) []float32 {
	t.Helper()
	c, err := m.NewContext(llama.ContextOptions{
		NCtx: 256, NBatch: 256, NUBatch: 256, Threads: 1, Embeddings: true, Pooling: llama.PoolingNone,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.DecodeInputs(context.Background(), []llama.Input{llama.TokenInput(toks...)}, llama.DecodeOptions{Output: llama.OutputAll}); err != nil {
		t.Fatal(err)
	}
	v, err := c.Embeddings(len(toks) - 1)
	if err != nil {
		t.Fatal(err)
	}
	normalize(v)
	return v
}

func TestEncoderFamiliesMatchLlamaCpp(t *testing.T) {
	ctx := context.Background()
	texts := historyTexts[:7]
	for _, f := range encoderFamilies(t) {
		t.Run(f.name, func(t *testing.T) {
			enc, err := OpenEncoder(ctx, f.path, EncoderOptions{Threads: 1, MaxSeqs: 4, BatchTokens: 256, MaxTokens: 64})
			if err != nil {
				t.Fatal(err)
			}
			defer enc.Close()
			if enc.PoolingName() != f.pool {
				t.Fatalf("pools with %s, want the model's own %s", enc.PoolingName(), f.pool)
			}
			if enc.Dim() != 64 {
				t.Fatalf("dim %d, want 64", enc.Dim())
			}
			packed, err := enc.Encode(ctx, texts, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			worstPacked, worstRef := 0.0, 0.0
			for i, text := range texts {
				one, err := enc.EncodeOne(ctx, text, "")
				if err != nil {
					t.Fatal(err)
				}
				worstPacked = math.Max(worstPacked, maxDiff(packed[i], one))
				toks, err := enc.tokens(text)
				if err != nil {
					t.Fatal(err)
				}
				worstRef = math.Max(worstRef, maxDiff(one, llamaCppEmbedding(t, enc.Model(), toks)))
				if f.pool == "last" {
					if d := maxDiff(one, lastHiddenState(t, enc.Model(), toks)); d > 1e-4 {
						t.Fatalf("text %d: last pooling differs from the last token's hidden state by %.3g", i, d)
					}
				}
			}
			t.Logf("%s (%s pooling): max |packed - one| = %.3g, max |pplug - llama.cpp| = %.3g", f.name, f.pool, worstPacked, worstRef)
			if worstPacked > 1e-4 || worstRef > 1e-4 {
				t.Fatalf("encodings differ: packed vs one %.3g, pplug vs llama.cpp %.3g (tolerance 1e-4)", worstPacked, worstRef)
			}
			if maxDiff(packed[0], packed[1]) < 1e-3 {
				t.Fatal("different texts gave the same vector")
			}
		})
	}
}

// The pooling a decoder embedder asks for is honoured: mean and last give
// different vectors for the same weights, and an explicit --pooling wins.
func TestDecoderEmbedderPoolingMatters(t *testing.T) {
	ctx := context.Background()
	path := decoderEmbedder(t, cgo.PoolingLast)
	text := historyTexts[1]
	vec := func(p llama.Pooling) ([]float32, string) {
		e, err := OpenEncoder(ctx, path, EncoderOptions{Threads: 1, Pooling: p})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		v, err := e.EncodeOne(ctx, text, "")
		if err != nil {
			t.Fatal(err)
		}
		return v, e.PoolingName()
	}
	own, ownName := vec(llama.PoolingDefault)
	last, _ := vec(llama.PoolingLast)
	mean, meanName := vec(llama.PoolingMean)
	if ownName != "last" || meanName != "mean" {
		t.Fatalf("pooling names %s and %s, want last and mean", ownName, meanName)
	}
	if d := maxDiff(own, last); d > 1e-5 {
		t.Fatalf("the model's own pooling differs from last by %.3g", d)
	}
	if d := maxDiff(own, mean); d < 1e-3 {
		t.Fatalf("mean and last pooling gave the same vector (max diff %.3g)", d)
	}
	// The two identities differ, so caches never mix them.
	a, _ := OpenEncoder(ctx, path, EncoderOptions{Threads: 1})
	b, _ := OpenEncoder(ctx, path, EncoderOptions{Threads: 1, Pooling: llama.PoolingMean})
	defer a.Close()
	defer b.Close()
	if a.ID() == b.ID() {
		t.Fatalf("mean and last encoders share the cache identity %q", a.ID())
	}
}

// A reranker (rank pooling) gives scores, not vectors: refused by name.
func TestEncoderRefusesReranker(t *testing.T) {
	p := filepath.Join(t.TempDir(), "rerank.gguf")
	err := synth.Write(p, testenv.BertVocab(t), synth.Spec{
		Arch: "bert", NEmbd: 64, NLayer: 1, NHead: 4, NFF: 128, NCtx: 128,
		Type: cgo.TypeF32, Pooling: cgo.PoolingRank, Seed: 3,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = OpenEncoder(context.Background(), p, EncoderOptions{Threads: 1})
	if err == nil || !strings.Contains(err.Error(), "reranker") {
		t.Fatalf("err = %v, want a refusal naming a reranker", err)
	}
}
