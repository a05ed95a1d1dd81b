package llama

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pplug/pplug/cgo"
	"github.com/pplug/pplug/internal/testenv"
)

// benchModels are the models the benchmarks run: the tiny real model, where
// per-token overhead shows most, and a 0.5B model at its real shape.
func benchModels(b *testing.B) map[string]string {
	return map[string]string{
		"stories260K":     testenv.Stories260K(b),
		"qwen2-0.5b-q8_0": testenv.BenchModel(b, "qwen2-0.5b", "q8_0"),
	}
}

// BenchmarkGoVsC measures the binding's overhead: the same greedy
// generation through the Go API (Context.Generate) and through a plain C
// loop over the same llama.cpp (cgo/shim.c pp_bench_c_loop), alternating in
// one run. Metrics: tokens/s of each path for the prompt and the generation,
// and the Go path's generation overhead in percent.
func BenchmarkGoVsC(b *testing.B) {
	for name, path := range benchModels(b) {
		m, err := LoadModel(context.Background(), path, ModelOptions{})
		if err != nil {
			b.Fatal(err)
		}
		nPrompt, nGen := 64, 64
		if strings.HasPrefix(name, "stories") {
			nGen = 256
		}
		words := strings.Repeat("the little girl saw a big red ball in the park and she ran to it ", 16)
		toks, err := m.Tokenize(words, true, false)
		if err != nil {
			b.Fatal(err)
		}
		prompt := toks[:nPrompt]
		for _, threads := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/t=%d", name, threads), func(b *testing.B) {
				c, err := m.NewContext(ContextOptions{NCtx: 512, Threads: threads})
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				s, _ := NewSampler(SamplerOptions{Temp: 0, RepeatPenalty: 1})
				defer s.Close()
				var goPP, goTG, cPP, cTG time.Duration
				run := func() {
					_ = c.ClearMemory()
					s.Reset()
					res, err := c.Generate(context.Background(), s, []Input{TokenInput(prompt...)}, 0,
						GenerateOptions{MaxTokens: nGen, IgnoreEOG: true})
					if err != nil {
						b.Fatal(err)
					}
					goPP += res.Stats.PromptTime
					goTG += res.Stats.GenTime
					pp, tg, err := c.BenchCLoop(context.Background(), prompt, nGen)
					if err != nil {
						b.Fatal(err)
					}
					cPP += time.Duration(pp) * time.Microsecond
					cTG += time.Duration(tg) * time.Microsecond
				}
				run() // warm-up, not counted
				goPP, goTG, cPP, cTG = 0, 0, 0, 0
				b.ResetTimer()
				for range b.N {
					run()
				}
				n := float64(b.N)
				b.ReportMetric(n*float64(nPrompt)/goPP.Seconds(), "go_pp_tok/s")
				b.ReportMetric(n*float64(nPrompt)/cPP.Seconds(), "c_pp_tok/s")
				b.ReportMetric(n*float64(nGen)/goTG.Seconds(), "go_tg_tok/s")
				b.ReportMetric(n*float64(nGen)/cTG.Seconds(), "c_tg_tok/s")
				b.ReportMetric(100*(goTG.Seconds()/cTG.Seconds()-1), "go_tg_overhead_%")
			})
		}
		m.Close()
	}
}

// BenchmarkDecodeRows compares decoding embedding rows with decoding the
// same positions as tokens (the cost of the injection path).
func BenchmarkDecodeRows(b *testing.B) {
	m, err := LoadModel(context.Background(), testenv.BenchModel(b, "qwen2-0.5b", "q8_0"), ModelOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	toks, _ := m.Tokenize(strings.Repeat("the quick brown fox jumps over the lazy dog ", 8), true, false)
	toks = toks[:64]
	rows, err := m.TokenEmbeddings(toks)
	if err != nil {
		b.Fatal(err)
	}
	c, err := m.NewContext(ContextOptions{NCtx: 256})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for _, tc := range []struct {
		name string
		in   []Input
	}{{"tokens", []Input{TokenInput(toks...)}}, {"rows", []Input{EmbdInput(rows)}}} {
		b.Run(tc.name, func(b *testing.B) {
			for range b.N {
				_ = c.ClearMemory()
				if _, err := c.DecodeInputs(context.Background(), tc.in, DecodeOptions{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*len(toks))/b.Elapsed().Seconds(), "tok/s")
		})
	}
}

// BenchmarkSystem records the CPU features of this build, so a run of the
// benchmarks says whether ggml was built with -march=native.
func BenchmarkSystem(b *testing.B) {
	b.Log(strings.TrimSpace(cgo.SystemInfo()))
	for range b.N {
	}
}
