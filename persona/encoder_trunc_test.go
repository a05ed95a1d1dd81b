package persona

import (
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/pplug/pplug/internal/testenv"
	"github.com/pplug/pplug/llama"
)

// fullTokens is the reference: the whole text tokenized, then truncated
// as tokens does.
func (e *Encoder) fullTokens(t *testing.T, text string) []llama.Token {
	t.Helper()
	toks, err := e.model.Tokenize(text, true, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(toks) > e.maxTokens {
		keep := e.maxTokens - len(e.suffix)
		toks = append(toks[:keep:keep], e.suffix...)
	}
	return toks
}

// peakRSS is the process's peak resident memory in bytes (VmHWM), or -1.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return -1
}

// TestEncoderBoundsWorkOnHugeItems: a 50 MB history item costs what its
// first MaxTokens tokens cost, and texts of every length give the tokens
// the whole text would.
func TestEncoderBoundsWorkOnHugeItems(t *testing.T) {
	m := loadModel(t, testenv.Stories260K(t))
	story := "Once upon a time, there was a little girl named Lily. She loved to play outside in the sunshine.\n" +
		"One day, she saw a big, red ball in the park. \"Can I play with it?\" she asked her mom. 12345 ÿ€😀 "
	for _, maxTok := range []int{16, 512} {
		e, err := NewEncoder(m, EncoderOptions{Threads: 1, MaxTokens: maxTok})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		// Unchanged results: lengths around the cut-off and beyond, words
		// and runs without spaces.
		for _, n := range []int{1, 10, 60, 63, 64, 65, 100, 300, 2000, 2100, 2200, 4000, 20000} {
			for _, base := range []string{story, strings.Repeat("abcdefghij", 50), strings.Repeat(" ", 40) + "x"} {
				text := strings.Repeat(base, n/len(base)+1)[:n]
				for !utf8.ValidString(text) {
					text = text[:len(text)-1]
				}
				if text == "" {
					continue
				}
				got, err := e.tokens(text)
				if err != nil {
					t.Fatal(err)
				}
				if want := e.fullTokens(t, text); !slices.Equal(got, want) {
					t.Fatalf("max %d, %d bytes of %.10q: %d tokens differ from the whole text's %d", maxTok, n, base, len(got), len(want))
				}
			}
		}
	}
	// A 50 MB item.
	e, err := NewEncoder(m, EncoderOptions{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	huge := strings.Repeat(story, 50<<20/len(story))
	rss0 := peakRSS()
	start := time.Now()
	toks, err := e.tokens(huge)
	took := time.Since(start)
	if err != nil || len(toks) != e.maxTokens {
		t.Fatalf("%d tokens, err %v", len(toks), err)
	}
	// Encoding it costs one decode of MaxTokens tokens, as for any item
	// of that many tokens.
	if v, err := e.Encode(context.Background(), []string{huge}, "", nil); err != nil || len(v) != 1 {
		t.Fatal(err)
	}
	grew := peakRSS() - rss0
	t.Logf("%d MB item tokenized in %s, peak memory +%d MB", len(huge)>>20, took, grew>>20)
	if took > time.Second {
		t.Errorf("a %d MB item took %s to tokenize: the work is not bounded by MaxTokens", len(huge)>>20, took)
	}
	if rss0 > 0 && grew > 256<<20 {
		t.Errorf("a %d MB item raised the peak memory by %d MB", len(huge)>>20, grew>>20)
	}
	// A cancelled context stops before the next text.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.Encode(ctx, []string{huge, huge}, "", nil); err == nil {
		t.Fatal("encoding went on after the context was cancelled")
	}
}
