package persona

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/pplug/pplug/llama"
)

// EncoderOptions configure NewEncoder.
type EncoderOptions struct {
	// Pooling: PoolingDefault takes the model's own pooling type when its
	// metadata has one (BERT/BGE GGUFs: CLS) and mean pooling otherwise
	// (an LLM used as its own encoder).
	Pooling llama.Pooling
	// MaxTokens truncates each text (default 512, at most the model's
	// training context).
	MaxTokens int
	// BatchTokens is the most tokens decoded at once (default 512: larger
	// batches pay for attention across the packed texts, which costs more
	// than it saves on a CPU).
	BatchTokens int
	// MaxSeqs is the most texts decoded at once (default 64, at most 256).
	MaxSeqs int
	Threads int
	// Load is how OpenEncoder loads an encoder file: its devices and
	// offloaded layers (llama.cpp's -dev and -ngl; the LLM as its own
	// encoder runs where the LLM runs).
	Load llama.ModelOptions
}

// Encoder embeds texts into L2-normalised vectors with a llama.cpp model:
// a BERT/BGE-family embedding GGUF or a decoder LLM. Texts are packed many
// to a decode, one sequence each. An Encoder is safe for concurrent use:
// calls of Encode take turns on its one context.
type Encoder struct {
	mu        sync.Mutex // one Encode at a time on ctx
	model     *llama.Model
	ownModel  bool
	ctx       *llama.Context
	pooling   llama.Pooling
	poolName  string
	maxTokens int
	batch     int
	maxSeqs   int
	dim       int
	id        string
	prefix    []llama.Token // leading special tokens of every tokenized text
	suffix    []llama.Token // trailing special tokens kept when truncating
	pieceOnce sync.Once
	maxPiece  int // longest token piece in bytes (maxPieceBytes)
	decodes   atomic.Int64
	texts     atomic.Int64
}

// OpenEncoder loads an embedding model from path and wraps it.
func OpenEncoder(ctx context.Context, path string, o EncoderOptions) (*Encoder, error) {
	m, err := llama.LoadModel(ctx, path, o.Load)
	if err != nil {
		return nil, fmt.Errorf("encoder: %w", err)
	}
	e, err := NewEncoder(m, o)
	if err != nil {
		m.Close()
		return nil, err
	}
	e.ownModel = true
	return e, nil
}

// NewEncoder wraps an already loaded model (for example the LLM itself).
// The model stays owned by the caller.
func NewEncoder(m *llama.Model, o EncoderOptions) (*Encoder, error) {
	info := m.Info()
	if !info.HasDecoder && info.HasEncoder {
		return nil, fmt.Errorf("encoder %s: encoder-decoder models are not supported as history encoders", info.Architecture)
	}
	if o.Pooling == llama.PoolingNone {
		return nil, errors.New("encoder: pooling none gives no text vectors; use cls, mean or last")
	}
	poolName := o.Pooling.String()
	if o.Pooling == llama.PoolingDefault {
		switch poolName = m.OwnPooling(); poolName {
		case "rank":
			return nil, fmt.Errorf("encoder %s: the model pools with rank (a reranker): it gives scores, not text vectors; use an embedding model or the LLM, or choose --pooling mean, cls or last", info.Path)
		case "none":
			// No pooling of its own (an LLM used as its own encoder): mean.
			o.Pooling, poolName = llama.PoolingMean, "mean"
		}
	}
	if o.MaxTokens <= 0 {
		o.MaxTokens = 512
	}
	if t := info.NCtxTrain; t > 0 && o.MaxTokens > t {
		o.MaxTokens = t
	}
	if o.BatchTokens <= 0 {
		o.BatchTokens = 512
	}
	if o.BatchTokens < o.MaxTokens {
		o.BatchTokens = o.MaxTokens
	}
	if o.MaxSeqs <= 0 {
		o.MaxSeqs = 64
	}
	o.MaxSeqs = min(o.MaxSeqs, 256)

	c, err := m.NewContext(llama.ContextOptions{
		NCtx:       o.BatchTokens,
		NBatch:     o.BatchTokens,
		NUBatch:    o.BatchTokens, // non-causal encoders need a whole batch per ubatch
		NSeqMax:    o.MaxSeqs,
		KVUnified:  true,
		Threads:    o.Threads,
		Embeddings: true,
		Pooling:    o.Pooling,
	})
	if err != nil {
		return nil, fmt.Errorf("encoder context: %w", err)
	}
	e := &Encoder{
		model: m, ctx: c, pooling: o.Pooling, poolName: poolName, maxTokens: o.MaxTokens,
		batch: c.NBatch(), maxSeqs: o.MaxSeqs, dim: info.NEmbd,
	}
	if err := e.findSpecials(); err != nil {
		c.Close()
		return nil, err
	}
	id, err := ModelID(m)
	if err != nil {
		c.Close()
		return nil, err
	}
	e.id = fmt.Sprintf("%s|pool=%s|max=%d", id, e.PoolingName(), e.maxTokens)
	slog.Debug("history encoder", "model", info.Path, "arch", info.Architecture, "pooling", e.poolName, "dim", e.dim, "max_tokens", e.maxTokens)
	return e, nil
}

// findSpecials learns which special tokens the tokenizer puts around a
// text, so truncation keeps the closing one ([SEP], </s>).
func (e *Encoder) findSpecials() error {
	a, err := e.model.Tokenize("a", true, false)
	if err != nil {
		return err
	}
	plain, err := e.model.Tokenize("a", false, false)
	if err != nil {
		return err
	}
	// Locate the plain tokens inside the special-wrapped ones.
	for i := 0; i+len(plain) <= len(a); i++ {
		if slices.Equal(a[i:i+len(plain)], plain) {
			e.prefix = append([]llama.Token(nil), a[:i]...)
			e.suffix = append([]llama.Token(nil), a[i+len(plain):]...)
			return nil
		}
	}
	return nil
}

// Close frees the context (and the model when OpenEncoder loaded it).
func (e *Encoder) Close() error {
	err := e.ctx.Close()
	if e.ownModel {
		err = errors.Join(err, e.model.Close())
	}
	return err
}

// ID identifies the encoder for caches: the model's identity, pooling and
// truncation.
func (e *Encoder) ID() string { return e.id }

// Dim is the width of the vectors.
func (e *Encoder) Dim() int { return e.dim }

// Model is the model behind the encoder.
func (e *Encoder) Model() *llama.Model { return e.model }

// Decodes is the number of llama_decode calls made so far.
func (e *Encoder) Decodes() int64 { return e.decodes.Load() }

// Texts is the number of texts encoded so far.
func (e *Encoder) Texts() int64 { return e.texts.Load() }

// PoolingName is the pooling in use: cls, mean or last.
func (e *Encoder) PoolingName() string { return e.poolName }

// truncMargin is how many tokens past MaxTokens a cut text must still
// give, so that the tokens kept do not depend on where the text was cut.
const truncMargin = 16

// minBytesPerToken is the first guess of bytes per token when a long text
// is cut before tokenizing (English averages about 4 with BPE and
// SentencePiece vocabularies); the cut grows until it gives enough tokens.
const minBytesPerToken = 4

// maxPieceBytes is the length of the longest token piece of the
// vocabulary: no token covers more text than that (except where the
// tokenizer drops text, such as WordPiece's whitespace).
func (e *Encoder) maxPieceBytes() int {
	e.pieceOnce.Do(func() {
		n := 1
		for i := range e.model.NVocab() {
			n = max(n, len(e.model.TokenPiece(llama.Token(i), false)))
		}
		e.maxPiece = n
	})
	return e.maxPiece
}

// utf8Prefix cuts s to at most n bytes, at a character boundary, and when
// it can at a space or line break near the end, so that no word is split.
func utf8Prefix(s string, n int) string {
	if n >= len(s) {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	if i := strings.LastIndexAny(s[:n], " \t\n\r"); i >= n-n/4 && i > 0 {
		n = i
	}
	return s[:n]
}

// tokens tokenizes one text and truncates it to MaxTokens, keeping the
// closing special tokens. A long text is cut before tokenizing, to a
// prefix that still gives more tokens than are kept: the work per text is
// bounded by MaxTokens, not by the length of the text, and the tokens kept
// are the same as from the whole text.
func (e *Encoder) tokens(text string) ([]llama.Token, error) {
	need := e.maxTokens + truncMargin
	var t []llama.Token
	var err error
	if len(text) <= need*minBytesPerToken {
		t, err = e.model.Tokenize(text, true, false)
	} else {
		// Enough bytes for need tokens when every byte belongs to a token.
		limit := need * max(minBytesPerToken, e.maxPieceBytes())
		for b := need * minBytesPerToken; ; b *= 4 {
			cut := utf8Prefix(text, min(b, limit))
			t, err = e.model.Tokenize(cut, true, false)
			if err != nil || len(t)-len(e.prefix)-len(e.suffix) >= need || len(cut) == len(text) || b >= limit {
				break
			}
		}
	}
	if err != nil {
		return nil, err
	}
	if len(t) > e.maxTokens {
		keep := e.maxTokens - len(e.suffix)
		t = append(t[:keep:keep], e.suffix...)
	}
	if len(t) == 0 {
		return nil, errors.New("the text gives no tokens")
	}
	return t, nil
}

// Encode embeds texts (each prefixed with prefix) and returns one unit
// vector per text, in order. progress, if set, receives the number of texts
// done after each decode.
func (e *Encoder) Encode(ctx context.Context, texts []string, prefix string, progress func(done int)) ([][]float32, error) {
	out := make([][]float32, len(texts))
	toks := make([][]llama.Token, len(texts))
	for i, s := range texts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t, err := e.tokens(prefix + s)
		if err != nil {
			return nil, fmt.Errorf("encode text %d: %w", i, err)
		}
		toks[i] = t
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	start := 0
	for start < len(texts) {
		// Pack texts into one batch until the tokens or sequences run out.
		end, n := start, 0
		for end < len(texts) && end-start < e.maxSeqs && n+len(toks[end]) <= e.batch {
			n += len(toks[end])
			end++
		}
		b := llama.Batch{
			Tokens: make([]llama.Token, 0, n),
			Pos:    make([]llama.Pos, 0, n),
			Seq:    make([]llama.SeqID, 0, n),
			Output: make([]bool, 0, n),
		}
		for i := start; i < end; i++ {
			for p, t := range toks[i] {
				b.Tokens = append(b.Tokens, t)
				b.Pos = append(b.Pos, llama.Pos(p))
				b.Seq = append(b.Seq, llama.SeqID(i-start))
				b.Output = append(b.Output, true)
			}
		}
		if err := e.ctx.ClearMemory(); err != nil {
			return nil, err
		}
		e.decodes.Add(1)
		if err := e.ctx.Decode(ctx, b); err != nil {
			return nil, fmt.Errorf("encode texts %d..%d: %w", start, end-1, err)
		}
		for i := start; i < end; i++ {
			v, err := e.ctx.SeqEmbeddings(llama.SeqID(i - start))
			if err != nil {
				return nil, fmt.Errorf("encode text %d: %w", i, err)
			}
			if len(v) != e.dim {
				return nil, fmt.Errorf("encode text %d: vector of %d values, want %d", i, len(v), e.dim)
			}
			normalize(v)
			out[i] = v
		}
		e.texts.Add(int64(end - start))
		if progress != nil {
			progress(end)
		}
		start = end
	}
	return out, nil
}

// EncodeOne embeds one text with the given prefix.
func (e *Encoder) EncodeOne(ctx context.Context, text, prefix string) ([]float32, error) {
	v, err := e.Encode(ctx, []string{text}, prefix, nil)
	if err != nil {
		return nil, err
	}
	return v[0], nil
}

// normalize scales v to unit L2 norm (a zero vector stays zero).
func normalize(v []float32) {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	if s == 0 || math.IsNaN(s) {
		return
	}
	inv := float32(1 / math.Sqrt(s))
	for i := range v {
		v[i] *= inv
	}
}

// ModelID identifies a model file by its metadata, size and a sample of its
// bytes: cheap to compute for gigabyte files, and different for files that
// differ anywhere it looks (random-weight models with other seeds too).
func ModelID(m *llama.Model) (string, error) {
	info := m.Info()
	f, err := os.Open(m.Path())
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	fmt.Fprintf(h, "%d|%s|%d|%d|", info.FileSize, info.Architecture, info.NEmbd, info.NVocab)
	const samples, chunk = 64, 4096
	buf := make([]byte, chunk)
	for i := range samples {
		off := info.FileSize * int64(i) / samples
		n, err := f.ReadAt(buf, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return "", err
		}
		h.Write(buf[:n])
	}
	name := info.Name
	if name == "" {
		name = info.Architecture
	}
	name = strings.ReplaceAll(name, "|", "/")
	return fmt.Sprintf("%s|%s|n_embd=%d|%x", name, info.Architecture, info.NEmbd, h.Sum(nil)[:8]), nil
}
