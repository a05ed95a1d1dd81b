package train

import (
	"testing"

	"github.com/pplug/pplug/internal/testenv"
)

// BenchmarkArchStep times one training step (the graph's forward and
// backward pass, which dominate a step) per architecture on the real-size
// synthetic shape of its preset, Q8_0 weights kept quantized, 2 threads,
// 4 examples per step. qwen2-0.5b runs first and last as the baseline of
// the run. The models are written once into $PPLUG_BENCH_DIR (about 10 GB
// for all). Run it alone:
//
//	go test -run '^$' -bench ArchStep -benchtime 1x -timeout 100m ./train/
func BenchmarkArchStep(b *testing.B) {
	for _, preset := range []string{"qwen2-0.5b", "llama3.2-1b", "qwen3-0.6b", "gemma3-1b", "gemma2-2b", "phi4-mini", "qwen2-0.5b"} {
		b.Run(preset, func(b *testing.B) {
			path := testenv.BenchModel(b, preset, "q8_0")
			m := loadModel(b, path)
			const dEnc = 384 // a BGE-small encoder
			plug := testPlugRows(b, m, dEnc, false, 1)
			ex := testExamples(b, m, dEnc, 4, 7)
			shape, err := ShapeFor(plug, 4, ex)
			if err != nil {
				b.Fatal(err)
			}
			g, err := NewGraph(path, m, plug, shape, 2, false)
			if err != nil {
				b.Fatal(err)
			}
			defer g.Close()
			if _, err := g.Fill(ex); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				if _, err := g.Backward(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(shape.Batch*shape.Tokens), "positions/step")
		})
	}
}
