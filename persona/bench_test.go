package persona

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pplug/pplug/internal/testenv"
)

// BenchmarkEncodeBatchedVsSequential encodes the same 64 history items
// packed many to a decode and one per decode, alternating in one run, and
// reports items/s of both and the speed-up.
func BenchmarkEncodeBatchedVsSequential(b *testing.B) {
	texts := make([]string, 64)
	for i := range texts {
		texts[i] = fmt.Sprintf("Item %d: %s", i, strings.Repeat("the girl walked her dog to the park and they played with a red ball. ", 1+i%4))
	}
	bt := 0
	if s := os.Getenv("PPLUG_BENCH_BATCH_TOKENS"); s != "" {
		fmt.Sscan(s, &bt)
	}
	for _, name := range []string{"bge-small", "stories260K"} {
		b.Run(name, func(b *testing.B) {
			var enc *Encoder
			var err error
			if name == "bge-small" {
				enc, err = OpenEncoder(context.Background(), testenv.BenchModel(b, "bge-small", "f16"), EncoderOptions{BatchTokens: bt})
			} else {
				m := loadModel(b, testenv.Stories260K(b))
				enc, err = NewEncoder(m, EncoderOptions{BatchTokens: bt})
			}
			if err != nil {
				b.Fatal(err)
			}
			defer enc.Close()
			ctx := context.Background()
			var tb, ts time.Duration
			run := func() {
				t0 := time.Now()
				if _, err := enc.Encode(ctx, texts, "", nil); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				for _, s := range texts {
					if _, err := enc.EncodeOne(ctx, s, ""); err != nil {
						b.Fatal(err)
					}
				}
				tb += t1.Sub(t0)
				ts += time.Since(t1)
			}
			run() // warm-up
			tb, ts = 0, 0
			b.ResetTimer()
			for range b.N {
				run()
			}
			n := float64(b.N * len(texts))
			b.ReportMetric(n/tb.Seconds(), "batched_items/s")
			b.ReportMetric(n/ts.Seconds(), "sequential_items/s")
			b.ReportMetric(ts.Seconds()/tb.Seconds(), "speedup")
		})
	}
}
