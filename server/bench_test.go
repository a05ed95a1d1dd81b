package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkServeConcurrency sends the same load (32 streamed completions
// of 32 tokens, each for a different user's persona) to a server with one
// sequence, one request at a time, and to servers with -np N and N
// concurrent clients, N = 1, 4, 16; it reports requests/s, mean time to
// first token and the speed-up over the sequential run.
//
//	go test -run '^$' -bench ServeConcurrency -benchtime 1x ./server/
func BenchmarkServeConcurrency(b *testing.B) {
	const requests, tokens = 32, 32
	run := func(np, clients int) (rps float64, ttft time.Duration) {
		ts := startServer(b, np, "")
		users := ts.addClientUsers(b, requests)
		for _, u := range users[:min(4, len(users))] { // warm up (and encode a few histories)
			streamTTFT(b, ts.url, u, tokens)
		}
		for _, u := range users { // encode every history before timing
			streamTTFT(b, ts.url, u, 1)
		}
		next := make(chan string, requests)
		for _, u := range users {
			next <- u
		}
		close(next)
		var mu sync.Mutex
		var total time.Duration
		start := time.Now()
		var wg sync.WaitGroup
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for u := range next {
					d := streamTTFT(b, ts.url, u, tokens)
					mu.Lock()
					total += d
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		el := time.Since(start)
		return float64(requests) / el.Seconds(), total / requests
	}
	for range b.N {
		seqRPS, seqTTFT := run(1, 1)
		b.ReportMetric(seqRPS, "req/s_seq")
		b.ReportMetric(float64(seqTTFT.Microseconds())/1000, "ttft_ms_seq")
		for _, n := range []int{1, 4, 16} {
			rps, ttft := run(n, n)
			b.ReportMetric(rps, fmt.Sprintf("req/s_c%d", n))
			b.ReportMetric(float64(ttft.Microseconds())/1000, fmt.Sprintf("ttft_ms_c%d", n))
			b.ReportMetric(rps/seqRPS, fmt.Sprintf("speedup_c%d", n))
		}
	}
}

// streamTTFT streams a completion and returns the time to its first text.
func streamTTFT(b testing.TB, url, user string, tokens int) time.Duration {
	js, _ := json.Marshal(map[string]any{"prompt": "Once upon a time", "max_tokens": tokens, "temperature": 0, "user": user, "stream": true})
	t0 := time.Now()
	resp, err := http.Post(url+"/v1/completions", "application/json", bytes.NewReader(js))
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var ttft time.Duration
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if ttft == 0 && strings.HasPrefix(line, `data: {`) && strings.Contains(line, `"text":"`) && !strings.Contains(line, `"text":""`) {
			ttft = time.Since(t0)
		}
		if line == "data: [DONE]" {
			return ttft
		}
	}
	b.Fatalf("stream for %s ended early (status %d)", user, resp.StatusCode)
	return 0
}
