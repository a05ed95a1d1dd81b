package llama

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/pplug/pplug/internal/testenv"
)

func loadStories(t testing.TB) *Model {
	t.Helper()
	m, err := LoadModel(context.Background(), testenv.Stories260K(t), ModelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func newCtx(t testing.TB, m *Model, o ContextOptions) *Context {
	t.Helper()
	c, err := m.NewContext(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// seqBatch is toks as one batch of sequence 0 at positions 0.., every row
// an output.
func seqBatch(toks []Token) Batch {
	b := Batch{Tokens: toks, Pos: make([]Pos, len(toks)), Seq: make([]SeqID, len(toks)), Output: make([]bool, len(toks))}
	for i := range toks {
		b.Pos[i], b.Output[i] = Pos(i), true
	}
	return b
}

func greedy(t testing.TB) *Sampler {
	t.Helper()
	s, err := NewSampler(SamplerOptions{Temp: 0, RepeatPenalty: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// The model's real greedy continuation of "Once upon a time": a coherent
// TinyStories opening. It is the output of llama.cpp on the real weights.
const storiesGolden = ", there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball."

func generateGreedy(t *testing.T, m *Model, threads, n int) Result {
	t.Helper()
	c := newCtx(t, m, ContextOptions{NCtx: 256, Threads: threads})
	toks, err := m.Tokenize("Once upon a time", true, false)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Generate(context.Background(), greedy(t), []Input{TokenInput(toks...)}, 0, GenerateOptions{MaxTokens: n})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestGreedyGenerationIsTheModelsContinuation(t *testing.T) {
	m := loadStories(t)
	first := generateGreedy(t, m, 1, 40)
	if !strings.HasPrefix(first.Text, storiesGolden) {
		t.Fatalf("greedy continuation = %q, want it to start with %q", first.Text, storiesGolden)
	}
	if first.Stop != StopLength || first.Stats.GenTokens != 40 {
		t.Fatalf("stop %s after %d tokens, want length after 40", first.Stop, first.Stats.GenTokens)
	}
	for _, threads := range []int{1, 2} {
		for run := range 2 {
			got := generateGreedy(t, m, threads, 40)
			if !equalTokens(got.Tokens, first.Tokens) {
				t.Fatalf("threads=%d run=%d: tokens differ:\n got %v\nwant %v", threads, run, got.Tokens, first.Tokens)
			}
		}
	}
}

func equalTokens(a, b []Token) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// allLogits decodes inputs with every row as output and returns the logits
// of each position.
func allLogits(t *testing.T, c *Context, in []Input) [][]float32 {
	t.Helper()
	if err := c.ClearMemory(); err != nil {
		t.Fatal(err)
	}
	var out [][]float32
	_, err := c.DecodeInputs(context.Background(), in, DecodeOptions{
		Output: OutputAll,
		OnOutput: func(_ Pos, l []float32) error {
			out = append(out, append([]float32(nil), l...))
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func maxAbsDiff(a, b [][]float32) float64 {
	d := 0.0
	for i := range a {
		for j := range a[i] {
			d = math.Max(d, math.Abs(float64(a[i][j]-b[i][j])))
		}
	}
	return d
}

// TestInjectionMatchesTokens is the test of the persona injection point:
// token embeddings read from token_embd decoded as rows give the logits of
// the tokens, in any arrangement of runs and across batch splits.
func TestInjectionMatchesTokens(t *testing.T) {
	m := loadStories(t)
	text := "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her dog Max. "
	toks, err := m.Tokenize(strings.Repeat(text, 2), true, false)
	if err != nil {
		t.Fatal(err)
	}
	n := len(toks)
	rows, err := m.TokenEmbeddings(toks)
	if err != nil {
		t.Fatal(err)
	}
	e := m.NEmbd()
	for _, nb := range []int{512, 16, 7} { // 16 and 7 force the input across several batches
		t.Run("n_batch="+strconv.Itoa(nb), func(t *testing.T) {
			c := newCtx(t, m, ContextOptions{NCtx: 256, NBatch: nb, NUBatch: nb, Threads: 1})
			ref := allLogits(t, c, []Input{TokenInput(toks...)})
			if len(ref) != n {
				t.Fatalf("%d outputs for %d tokens", len(ref), n)
			}
			// Each arrangement of runs is compared with the same arrangement
			// made of tokens only: identical batches, so any difference is
			// the injection's. The single-batch reference shows how much
			// the batch layout alone moves the logits.
			cases := map[string][][2]int{ // runs [from, to); odd runs are rows
				"all rows":           {{0, 0}, {0, n}},
				"bos+1 row+tokens":   {{0, 1}, {1, 2}, {2, n}},
				"bos+2 rows+tokens":  {{0, 1}, {1, 3}, {3, n}},
				"tokens+rows middle": {{0, 10}, {10, 30}, {30, n}},
				"alternating":        {{0, 3}, {3, 4}, {4, 5}, {5, 9}, {9, n}},
				"tokens then rows":   {{0, n - 5}, {n - 5, n}},
			}
			for name, runs := range cases {
				var mixed, plain []Input
				for i, r := range runs {
					if r[0] == r[1] {
						continue
					}
					plain = append(plain, TokenInput(toks[r[0]:r[1]]...))
					if i%2 == 1 {
						mixed = append(mixed, EmbdInput(rows[r[0]*e:r[1]*e]))
					} else {
						mixed = append(mixed, TokenInput(toks[r[0]:r[1]]...))
					}
				}
				got := allLogits(t, c, mixed)
				want := allLogits(t, c, plain)
				d := maxAbsDiff(got, want)
				layout := maxAbsDiff(got, ref)
				t.Logf("%-20s n_batch=%-3d positions=%d max|Δlogit| vs tokens=%.3g (vs one batch of tokens: %.3g)", name, nb, n, d, layout)
				if d >= 1e-4 {
					t.Errorf("%s: max abs logit difference %.3g >= 1e-4", name, d)
				}
				if layout >= 1e-3 {
					t.Errorf("%s: batch layout moved the logits by %.3g", name, layout)
				}
			}
		})
	}
}

func TestBadModelFiles(t *testing.T) {
	dir := t.TempDir()
	good, err := os.ReadFile(testenv.Stories260K(t))
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	corrupt := func(edit func(b []byte)) []byte {
		b := append([]byte(nil), good...)
		edit(b)
		return b
	}
	cases := []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "nope.gguf"), "does not exist"},
		{"directory", dir, "is a directory"},
		{"empty", write("empty.gguf", nil), "empty"},
		{"not gguf", write("text.gguf", []byte("hello, this is not a model\n")), "not a GGUF file"},
		{"three bytes", write("short.gguf", []byte("GGU")), "not a GGUF file"},
		{"magic only", write("magic.gguf", []byte("GGUF")), "header"},
		{"truncated header", write("trunc-head.gguf", good[:4096]), "header"},
		{"truncated data", write("trunc-data.gguf", good[:len(good)/2]), "truncated"},
		{"bad version", write("version.gguf", corrupt(func(b []byte) { b[4] = 99 })), "header"},
		{"huge kv count", write("nkv.gguf", corrupt(func(b []byte) {
			for i := 16; i < 24; i++ {
				b[i] = 0x7f
			}
		})), "header"},
		{"huge tensor count", write("ntensors.gguf", corrupt(func(b []byte) {
			for i := 8; i < 16; i++ {
				b[i] = 0x7f
			}
		})), "header"},
		{"garbage after magic", write("garbage.gguf", corrupt(func(b []byte) {
			for i := 24; i < 600; i++ {
				b[i] = byte(i * 37)
			}
		})), "header"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := LoadModel(context.Background(), tc.path, ModelOptions{})
			if err == nil {
				m.Close()
				t.Fatal("loaded a bad model")
			}
			if !errors.Is(err, ErrInvalidModel) {
				t.Errorf("error %v does not wrap ErrInvalidModel", err)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.path) {
				t.Errorf("error %q should name the file and say %q", err, tc.want)
			}
			t.Logf("%s: %v", tc.name, err)
		})
	}
}

func TestPromptLongerThanContextIsAnError(t *testing.T) {
	m := loadStories(t)
	c := newCtx(t, m, ContextOptions{NCtx: 64, Threads: 1})
	toks, err := m.Tokenize(strings.Repeat("Once upon a time there was a cat. ", 60), true, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(toks) <= c.NCtxSeq() {
		t.Fatalf("prompt of %d tokens is not longer than the context", len(toks))
	}
	_, err = c.Generate(context.Background(), greedy(t), []Input{TokenInput(toks...)}, 0, GenerateOptions{MaxTokens: 4})
	if !errors.Is(err, ErrContextFull) {
		t.Fatalf("err = %v, want ErrContextFull", err)
	}
	// Nothing was decoded: the window is still empty.
	if lo, hi, _ := c.SeqPosRange(0); lo != -1 || hi != -1 {
		t.Fatalf("positions %d..%d are cached after a refused prompt", lo, hi)
	}
}

func TestGenerationStopsAtFullContext(t *testing.T) {
	m := loadStories(t)
	c := newCtx(t, m, ContextOptions{NCtx: 32, Threads: 1})
	toks, _ := m.Tokenize("Once upon a time", true, false)
	res, err := c.Generate(context.Background(), greedy(t), []Input{TokenInput(toks...)}, 0, GenerateOptions{MaxTokens: -1, IgnoreEOG: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Stop != StopContext || int(res.Next) != c.NCtx() {
		t.Fatalf("stop %s at %d, want context at %d", res.Stop, res.Next, c.NCtx())
	}
}

func TestConcurrentContextsOnOneModel(t *testing.T) {
	m := loadStories(t)
	want := generateGreedy(t, m, 1, 48)
	var wg sync.WaitGroup
	results := make([]Result, 4)
	errs := make([]error, 4)
	for g := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := m.NewContext(ContextOptions{NCtx: 128, Threads: 1})
			if err != nil {
				errs[g] = err
				return
			}
			defer c.Close()
			s, _ := NewSampler(SamplerOptions{Temp: 0, RepeatPenalty: 1})
			defer s.Close()
			toks, err := m.Tokenize("Once upon a time", true, false)
			if err != nil {
				errs[g] = err
				return
			}
			for range 3 {
				if err := c.ClearMemory(); err != nil {
					errs[g] = err
					return
				}
				results[g], errs[g] = c.Generate(context.Background(), s, []Input{TokenInput(toks...)}, 0, GenerateOptions{MaxTokens: 48})
				if errs[g] != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	for g := range results {
		if errs[g] != nil {
			t.Fatalf("goroutine %d: %v", g, errs[g])
		}
		if !equalTokens(results[g].Tokens, want.Tokens) {
			t.Fatalf("goroutine %d generated %q, want %q", g, results[g].Text, want.Text)
		}
	}
}

func TestCloseIsIdempotentAndOrdered(t *testing.T) {
	m, err := LoadModel(context.Background(), testenv.Stories260K(t), ModelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := m.NewContext(ContextOptions{NCtx: 64, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	// Closing the model first keeps it alive for the open context.
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.NewContext(ContextOptions{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("NewContext on a closed model: %v, want ErrClosed", err)
	}
	if _, err := m.Tokenize("x", true, false); !errors.Is(err, ErrClosed) {
		t.Fatalf("Tokenize on a closed model: %v, want ErrClosed", err)
	}
	if _, err := c.DecodeInputs(context.Background(), []Input{TokenInput(1, 2, 3)}, DecodeOptions{}); err != nil {
		t.Fatalf("the open context stopped working after Model.Close: %v", err)
	}
	if _, err := c.Logits(-1); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.DecodeInputs(context.Background(), []Input{TokenInput(1)}, DecodeOptions{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("decode on a closed context: %v, want ErrClosed", err)
	}
	if m.m != nil {
		t.Fatal("the model was not freed after its last context closed")
	}
}

func TestDecodeRejectsBadInput(t *testing.T) {
	m := loadStories(t)
	c := newCtx(t, m, ContextOptions{NCtx: 64, NBatch: 32, Threads: 1})
	ctx := context.Background()
	bad := []struct {
		name string
		in   []Input
		o    DecodeOptions
	}{
		{"token out of vocabulary", []Input{TokenInput(1, 999999)}, DecodeOptions{}},
		{"negative token", []Input{TokenInput(-3)}, DecodeOptions{}},
		{"partial row", []Input{EmbdInput(make([]float32, m.NEmbd()+1))}, DecodeOptions{}},
		{"both kinds", []Input{{Tokens: []Token{1}, Embd: make([]float32, m.NEmbd())}}, DecodeOptions{}},
		{"nothing", nil, DecodeOptions{}},
		{"negative position", []Input{TokenInput(1)}, DecodeOptions{Pos: -1}},
		{"past the window", []Input{TokenInput(1, 2)}, DecodeOptions{Pos: Pos(c.NCtxSeq() - 1)}},
		{"sequence out of range", []Input{TokenInput(1)}, DecodeOptions{Seq: 1}},
	}
	for _, tc := range bad {
		if _, err := c.DecodeInputs(ctx, tc.in, tc.o); err == nil {
			t.Errorf("%s: accepted", tc.name)
		} else {
			t.Logf("%s: %v", tc.name, err)
		}
	}
	if _, err := c.RemoveSeq(5, 0, -1); err == nil {
		t.Error("RemoveSeq accepted an out-of-range sequence")
	}
	if err := c.ShiftSeq(-1, 0, -1, 3); err == nil {
		t.Error("ShiftSeq accepted sequence -1")
	}
	// Reading outputs that do not exist is an error, not a crash.
	if _, err := c.DecodeInputs(ctx, []Input{TokenInput(1, 2, 3)}, DecodeOptions{Output: OutputNone}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Logits(-1); err == nil {
		t.Error("logits after a decode without outputs")
	}
	_ = c.ClearMemory()
	if _, err := c.DecodeInputs(ctx, []Input{TokenInput(1, 2, 3)}, DecodeOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Logits(0); err == nil {
		t.Error("logits of a row that was not an output")
	}
	if _, err := c.Logits(5); err == nil {
		t.Error("logits of a row past the batch")
	}
	if _, err := c.Logits(-2); err == nil {
		t.Error("logits of output -2 with one output")
	}
	if _, err := c.Logits(-1); err != nil {
		t.Error(err)
	}
}

func TestCancelledDecode(t *testing.T) {
	m := loadStories(t)
	c := newCtx(t, m, ContextOptions{NCtx: 128, Threads: 1})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	toks, _ := m.Tokenize("Once upon a time", true, false)
	res, err := c.Generate(ctx, greedy(t), []Input{TokenInput(toks...)}, 0, GenerateOptions{MaxTokens: 10})
	if !errors.Is(err, context.Canceled) || res.Stop != StopCanceled {
		t.Fatalf("err %v stop %s, want context.Canceled", err, res.Stop)
	}
	// The context works again afterwards (the abort flag was lowered).
	res, err = c.Generate(context.Background(), greedy(t), []Input{TokenInput(toks...)}, 0, GenerateOptions{MaxTokens: 10})
	if err != nil || res.Stats.GenTokens != 10 {
		t.Fatalf("after a cancelled decode: %v, %d tokens", err, res.Stats.GenTokens)
	}
}

func TestMemoryOperations(t *testing.T) {
	m := loadStories(t)
	split := newCtx(t, m, ContextOptions{NCtx: 512, NSeqMax: 2, Threads: 1})
	if err := split.CopySeq(0, 1, 0, 5); err == nil {
		t.Error("a partial copy between separate KV buffers was accepted")
	}
	if err := split.CopySeq(0, 1, -1, -1); err != nil {
		t.Errorf("whole-sequence copy: %v", err)
	}
	c := newCtx(t, m, ContextOptions{NCtx: 256, NSeqMax: 2, Threads: 1, KVUnified: true})
	ctx := context.Background()
	toks, _ := m.Tokenize("Once upon a time, there was a little girl named Lily.", true, false)
	n := Pos(len(toks))
	// Reference: the prefix, then the last token alone.
	if _, err := c.DecodeInputs(ctx, []Input{TokenInput(toks[:n-1]...)}, DecodeOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DecodeInputs(ctx, []Input{TokenInput(toks[n-1])}, DecodeOptions{Pos: n - 1}); err != nil {
		t.Fatal(err)
	}
	ref, _ := c.Logits(-1)
	if lo, hi, _ := c.SeqPosRange(0); lo != 0 || hi != n-1 {
		t.Fatalf("seq 0 holds %d..%d, want 0..%d", lo, hi, n-1)
	}
	// Copy the prefix to sequence 1; decoding the last token there gives
	// the reference logits.
	if err := c.CopySeq(0, 1, 0, n-1); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DecodeInputs(ctx, []Input{TokenInput(toks[n-1])}, DecodeOptions{Seq: 1, Pos: n - 1}); err != nil {
		t.Fatal(err)
	}
	got, _ := c.Logits(-1)
	if d := maxAbsDiff([][]float32{got}, [][]float32{ref}); d > 1e-4 {
		t.Fatalf("logits after CopySeq differ by %.3g", d)
	}
	// Remove the tail of sequence 0 and decode it again (in a different
	// batch layout, so only close, not equal).
	if ok, err := c.RemoveSeq(0, n-3, -1); err != nil || !ok {
		t.Fatalf("RemoveSeq: %v %v", ok, err)
	}
	if _, hi, _ := c.SeqPosRange(0); hi != n-4 {
		t.Fatalf("after removal seq 0 ends at %d, want %d", hi, n-4)
	}
	if _, err := c.DecodeInputs(ctx, []Input{TokenInput(toks[n-3 : n-1]...)}, DecodeOptions{Pos: n - 3, Output: OutputNone}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DecodeInputs(ctx, []Input{TokenInput(toks[n-1])}, DecodeOptions{Pos: n - 1}); err != nil {
		t.Fatal(err)
	}
	got, _ = c.Logits(-1)
	if d := maxAbsDiff([][]float32{got}, [][]float32{ref}); d > 1e-2 {
		t.Fatalf("logits after RemoveSeq and re-decode differ by %.3g", d)
	}
	// Shift sequence 1 and keep only it.
	if err := c.ShiftSeq(1, 0, -1, 10); err != nil {
		t.Fatal(err)
	}
	if lo, hi, _ := c.SeqPosRange(1); lo != 10 || hi != n+9 {
		t.Fatalf("after the shift seq 1 holds %d..%d, want 10..%d", lo, hi, n+9)
	}
	if err := c.KeepSeq(1); err != nil {
		t.Fatal(err)
	}
	if lo, _, _ := c.SeqPosRange(0); lo != -1 {
		t.Fatal("KeepSeq(1) left sequence 0")
	}
	if err := c.ClearMemory(); err != nil {
		t.Fatal(err)
	}
	if lo, _, _ := c.SeqPosRange(1); lo != -1 {
		t.Fatal("ClearMemory left sequence 1")
	}
}

func TestTokenizer(t *testing.T) {
	m := loadStories(t)
	toks, err := m.Tokenize("Once upon a time", true, false)
	if err != nil {
		t.Fatal(err)
	}
	if toks[0] != m.BOS() {
		t.Fatalf("first token %d, want BOS %d", toks[0], m.BOS())
	}
	text, err := m.Detokenize(toks, true, false)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(text) != "Once upon a time" {
		t.Fatalf("round trip gave %q", text)
	}
	var pieces string
	for _, tk := range toks[1:] {
		pieces += string(m.TokenPiece(tk, false))
	}
	if strings.TrimSpace(pieces) != "Once upon a time" {
		t.Fatalf("pieces give %q", pieces)
	}
	if !m.IsEOG(m.EOS()) {
		t.Fatal("EOS is not end-of-generation")
	}
	if _, err := m.Tokenize("bad \xff byte", true, false); err == nil {
		t.Fatal("invalid UTF-8 was tokenized")
	}
	if _, err := m.Detokenize([]Token{1, 100000}, false, false); err == nil {
		t.Fatal("an out-of-vocabulary token was detokenized")
	}
	if got := m.TokenPiece(100000, false); got != nil {
		t.Fatalf("piece of an out-of-vocabulary token: %q", got)
	}
}

func TestChatTemplate(t *testing.T) {
	m, err := LoadModel(context.Background(), testenv.Phi3Vocab(t), ModelOptions{VocabOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	msgs := []ChatMessage{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Hello!"}}
	s, err := m.ApplyChatTemplate(msgs, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<|user|>", "Hello!", "<|assistant|>"} {
		if !strings.Contains(s, want) {
			t.Fatalf("formatted chat %q lacks %q", s, want)
		}
	}
	stories := loadStories(t)
	if _, err := stories.ApplyChatTemplate(msgs, true); !errors.Is(err, ErrNoChatTemplate) {
		t.Fatalf("stories260K: %v, want ErrNoChatTemplate", err)
	}
	if s, err := ApplyChatTemplate("chatml", msgs, true); err != nil || !strings.Contains(s, "<|im_start|>user") {
		t.Fatalf("chatml: %q %v", s, err)
	}
	if _, err := ApplyChatTemplate("no such template {{", msgs, true); err == nil {
		t.Fatal("an unknown template was applied")
	}
}

func TestEmbeddingsOutput(t *testing.T) {
	m := loadStories(t)
	c := newCtx(t, m, ContextOptions{NCtx: 128, NSeqMax: 2, Threads: 1, Embeddings: true, Pooling: PoolingMean})
	a, _ := m.Tokenize("the cat sat", true, false)
	b, _ := m.Tokenize("a dog ran far away", true, false)
	batch := Batch{}
	for i, tk := range a {
		batch.Tokens = append(batch.Tokens, tk)
		batch.Pos = append(batch.Pos, Pos(i))
		batch.Seq = append(batch.Seq, 0)
		batch.Output = append(batch.Output, true)
	}
	for i, tk := range b {
		batch.Tokens = append(batch.Tokens, tk)
		batch.Pos = append(batch.Pos, Pos(i))
		batch.Seq = append(batch.Seq, 1)
		batch.Output = append(batch.Output, true)
	}
	if err := c.Decode(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	e0, err := c.SeqEmbeddings(0)
	if err != nil {
		t.Fatal(err)
	}
	e1, err := c.SeqEmbeddings(1)
	if err != nil {
		t.Fatal(err)
	}
	if len(e0) != m.NEmbd() || len(e1) != m.NEmbd() {
		t.Fatalf("pooled widths %d, %d, want %d", len(e0), len(e1), m.NEmbd())
	}
	if maxAbsDiff([][]float32{e0}, [][]float32{e1}) == 0 {
		t.Fatal("two different texts pooled to the same vector")
	}
}

func TestStopStrings(t *testing.T) {
	m := loadStories(t)
	c := newCtx(t, m, ContextOptions{NCtx: 256, Threads: 1})
	toks, _ := m.Tokenize("Once upon a time", true, false)
	for _, tc := range []struct {
		stop []string
		want string
	}{
		{[]string{"Lily"}, ", there was a little girl named "},
		{[]string{"park", "girl"}, ", there was a little "},
		{[]string{" named Lily. She"}, ", there was a little girl"},
		{[]string{"no such text"}, ""},
	} {
		_ = c.ClearMemory()
		var streamed strings.Builder
		res, err := c.Generate(context.Background(), greedy(t), []Input{TokenInput(toks...)}, 0, GenerateOptions{
			MaxTokens: 40, Stop: tc.stop,
			Emit: func(s string) error { streamed.WriteString(s); return nil },
		})
		if err != nil {
			t.Fatal(err)
		}
		if streamed.String() != res.Text {
			t.Fatalf("streamed %q, result %q", streamed.String(), res.Text)
		}
		if tc.want == "" {
			if res.Stop != StopLength || !strings.HasPrefix(res.Text, storiesGolden) {
				t.Fatalf("stop %v: %s %q", tc.stop, res.Stop, res.Text)
			}
			continue
		}
		if res.Stop != StopString || res.Text != tc.want {
			t.Fatalf("stop %v: got %s %q, want %q", tc.stop, res.Stop, res.Text, tc.want)
		}
	}
}

// An EOS bias moves the greedy choice: a large one ends the generation at
// once, a negative one never lets EOS win, zero changes nothing; a bias
// that is not a number, or one without the model, is refused.
func TestEOSBias(t *testing.T) {
	m := loadStories(t)
	toks, err := m.Tokenize("Once upon a time", true, false)
	if err != nil {
		t.Fatal(err)
	}
	gen := func(bias float32) Result {
		t.Helper()
		s, err := m.NewSampler(SamplerOptions{Temp: 0, RepeatPenalty: 1, EOSBias: bias})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		c := newCtx(t, m, ContextOptions{NCtx: 128, Threads: 1})
		res, err := c.Generate(context.Background(), s, []Input{TokenInput(toks...)}, 0, GenerateOptions{MaxTokens: 8})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	plain := gen(0)
	if plain.Stop != StopLength || len(plain.Tokens) != 8 {
		t.Fatalf("unbiased: %+v", plain)
	}
	if res := gen(100); res.Stop != StopEOG || len(res.Tokens) != 0 {
		t.Fatalf("EOS +100: stop %v after %d tokens", res.Stop, len(res.Tokens))
	}
	if res := gen(-100); !equalTokens(res.Tokens, plain.Tokens) {
		t.Fatalf("EOS -100 changed a continuation without EOS: %v vs %v", res.Tokens, plain.Tokens)
	}
	if _, err := m.NewSampler(SamplerOptions{Temp: 0, RepeatPenalty: 1, EOSBias: float32(math.NaN())}); err == nil {
		t.Error("accepted a NaN EOS bias")
	}
	if _, err := NewSampler(SamplerOptions{Temp: 0, RepeatPenalty: 1, EOSBias: 1}); err == nil {
		t.Error("built an EOS bias without the model")
	}
}

func TestSplitInputs(t *testing.T) {
	const d = 2
	in := []Input{TokenInput(1, 2, 3), EmbdInput([]float32{1, 1, 2, 2}), TokenInput(4)}
	for n := 0; n <= 7; n++ {
		head, tail := SplitInputs(in, n, d)
		if InputsLen(head, d) != min(n, 6) || InputsLen(head, d)+InputsLen(tail, d) != 6 {
			t.Fatalf("n=%d: %d + %d positions", n, InputsLen(head, d), InputsLen(tail, d))
		}
		if n >= 6 && tail != nil {
			t.Fatalf("n=%d: tail %v", n, tail)
		}
	}
	head, tail := SplitInputs(in, 4, d)
	if len(head) != 2 || head[1].Embd[0] != 1 || len(head[1].Embd) != 2 || len(tail) != 2 || tail[0].Embd[0] != 2 || tail[1].Tokens[0] != 4 {
		t.Fatalf("split inside the rows: %v | %v", head, tail)
	}
}
