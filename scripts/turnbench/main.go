// Command turnbench measures the time to first token of each turn of one
// conversation against a running `pplug serve`, with and without the
// prefix cache (cache_prompt true and false, alternating by conversation
// so that both see the same machine), and prints the turn-1 and turn-N
// times and their ratios. scripts/bench-turns.sh starts the server.
//
// Each turn adds a user message and an assistant answer of about -words
// words each; a request asks for one token (its whole time is the time to
// first token) and reports its prompt positions and cached positions.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

type result struct {
	ms             float64
	prompt, cached int
}

func main() {
	url := flag.String("url", "http://127.0.0.1:8080", "the server")
	user := flag.String("user", "", "the request's user (a persona)")
	turns := flag.Int("turns", 10, "turns of the conversation")
	words := flag.Int("words", 55, "words of each user message and each answer")
	flag.Parse()
	if *turns < 1 || *words < 1 {
		fmt.Fprintln(os.Stderr, "turnbench: -turns and -words must be positive")
		os.Exit(2)
	}
	runs, err := conversations(*url, *user, *turns, *words)
	if err != nil {
		fmt.Fprintln(os.Stderr, "turnbench:", err)
		os.Exit(1)
	}
	fmt.Println("turn  prompt  cached  ttft_reuse_ms  ttft_full_ms")
	for i := range runs[0] {
		r, f := runs[0][i], runs[1][i]
		fmt.Printf("%4d  %6d  %6d  %13.0f  %12.0f\n", i+1, r.prompt, r.cached, r.ms, f.ms)
	}
	n := len(runs[0]) - 1
	r1, rn, f1, fn := runs[0][0].ms, runs[0][n].ms, runs[1][0].ms, runs[1][n].ms
	fmt.Printf("turn %d / turn 1: with reuse %.2fx, without %.2fx; turn %d without / with reuse: %.2fx\n",
		n+1, rn/r1, fn/f1, n+1, fn/rn)
}

// conversations runs the two conversations (0: with reuse, 1: without),
// turn by turn; each has texts of its own, so they share no prefix.
func conversations(url, user string, turns, words int) ([2][]result, error) {
	var runs [2][]result
	var msgs [2][]map[string]string
	for t := range turns {
		for k := range 2 {
			msgs[k] = append(msgs[k], map[string]string{"role": "user", "content": text(k, 2*t, words)})
			r, err := ask(url, user, msgs[k], k == 0)
			if err != nil {
				return runs, fmt.Errorf("turn %d (cache_prompt %v): %w", t+1, k == 0, err)
			}
			runs[k] = append(runs[k], r)
			msgs[k] = append(msgs[k], map[string]string{"role": "assistant", "content": text(k, 2*t+1, words)})
		}
	}
	return runs, nil
}

var vocabulary = strings.Fields("the a little girl boy dog cat went to park and saw big red ball tree bird sang " +
	"happy sad day sun moon river house mom dad friend played ran jumped found shiny key under rock garden " +
	"flower blue green small old new story told quiet loud morning night rain snow")

// text is a deterministic message of n words.
func text(seed, i, n int) string {
	w := make([]string, n)
	x := uint32(seed*7919 + i*104729 + 1)
	for k := range w {
		x = x*1664525 + 1013904223
		w[k] = vocabulary[int(x>>8)%len(vocabulary)]
	}
	return strings.Join(w, " ") + "."
}

func ask(url, user string, msgs []map[string]string, reuse bool) (result, error) {
	body, _ := json.Marshal(map[string]any{"messages": msgs, "user": user, "max_tokens": 1,
		"temperature": 0, "cache_prompt": reuse})
	start := time.Now()
	resp, err := http.Post(url+"/v1/chat/completions", "application/json", bytes.NewReader(body))
	if err != nil {
		return result{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	ms := float64(time.Since(start).Microseconds()) / 1000
	if err != nil {
		return result{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return result{}, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	var r struct {
		Usage struct {
			PromptTokens int `json:"prompt_tokens"`
			Details      *struct {
				CachedTokens int `json:"cached_tokens"`
			} `json:"prompt_tokens_details"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return result{}, err
	}
	if r.Usage.Details == nil {
		return result{}, errors.New("the server reports no prompt_tokens_details (an older pplug serve?)")
	}
	return result{ms: ms, prompt: r.Usage.PromptTokens, cached: r.Usage.Details.CachedTokens}, nil
}
