// Command serveload measures `pplug serve` under concurrent load: throughput
// and time to first token (p50/p95) at several numbers of concurrent users,
// each with a persona of their own, against the same load without personas
// and against the same requests sent one at a time. It starts the server
// itself (a fresh profile database in a temporary folder), creates the
// users over the HTTP API, and drives the OpenAI chat route with streaming.
//
//	go run ./bench/serveload -pplug bin/pplug -m MODEL.gguf --plug PLUG.gguf -t 2
//
// Every figure comes from one run: the ratios compare loads measured back to
// back on the same server.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// modelAlias is the name the server is started with and asked for.
const modelAlias = "serveload"

type config struct {
	pplug, model, plug, encoder string
	threads, nPredict, perUser  int
	levels                      []int
	ctxSize                     int
	serial                      int
	jsonOut                     string
}

func main() {
	var c config
	var levels string
	flag.StringVar(&c.pplug, "pplug", "bin/pplug", "pplug binary")
	flag.StringVar(&c.model, "m", "", "model GGUF")
	flag.StringVar(&c.plug, "plug", "", "plug GGUF (personas by the plug); empty: retrieval personas")
	flag.StringVar(&c.encoder, "encoder", "", "history encoder GGUF (default: the plug's LLM)")
	flag.IntVar(&c.threads, "t", 2, "threads of the server")
	flag.IntVar(&c.nPredict, "n", 16, "tokens generated per request")
	flag.IntVar(&c.perUser, "requests", 2, "requests each concurrent user sends, one after another")
	flag.IntVar(&c.ctxSize, "c", 8192, "server context size (all sequences)")
	flag.IntVar(&c.serial, "serial", 8, "requests of the one-at-a-time baseline")
	flag.StringVar(&levels, "levels", "1,4,8,16", "numbers of concurrent users")
	flag.StringVar(&c.jsonOut, "json", "", "also write the results as JSON to this file")
	flag.Parse()
	if c.model == "" {
		fmt.Fprintln(os.Stderr, "serveload: give -m MODEL.gguf")
		os.Exit(2)
	}
	for _, f := range strings.Split(levels, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "serveload: -levels %q: want positive numbers separated by commas\n", levels)
			os.Exit(2)
		}
		c.levels = append(c.levels, n)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	if err := run(ctx, c); err != nil {
		fmt.Fprintln(os.Stderr, "serveload:", err)
		os.Exit(1)
	}
}

// result is one load's figures.
type result struct {
	Mode       string  `json:"mode"` // persona, none, serial
	Users      int     `json:"users"`
	Requests   int     `json:"requests"`
	Tokens     int     `json:"tokens"`
	Seconds    float64 `json:"seconds"`
	TokPerSec  float64 `json:"tokens_per_second"`
	TTFTp50    float64 `json:"ttft_p50_s"`
	TTFTp95    float64 `json:"ttft_p95_s"`
	PromptToks int     `json:"prompt_tokens_mean"`
	// Invisible counts answers whose tokens all had empty text (a random
	// model may sample unused tokens): the client cannot see their first
	// token, so they are left out of the time-to-first-token figures.
	Invisible int `json:"invisible"`
}

func run(ctx context.Context, c config) error {
	dir, err := os.MkdirTemp("", "serveload-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	maxUsers := slices.Max(c.levels)
	base, srv, err := startServer(ctx, c, dir, maxUsers)
	if err != nil {
		return err
	}
	defer srv.stop()

	users := make([]string, maxUsers)
	for i := range users {
		users[i] = fmt.Sprintf("user%02d", i)
		if err := createUser(ctx, base, users[i], i); err != nil {
			return fmt.Errorf("create %s: %w", users[i], err)
		}
	}
	// Warm up: every user's persona is prepared once (encoded and cached),
	// as for returning users; the figures measure serving, not first visits.
	for _, u := range users {
		if _, err := request(ctx, base, u, 0, c.nPredict); err != nil {
			return fmt.Errorf("warm-up of %s: %w", u, err)
		}
	}

	var all []result
	for _, n := range c.levels {
		for _, mode := range []string{"persona", "none"} {
			r, err := load(ctx, base, users[:n], mode == "persona", c)
			if err != nil {
				return fmt.Errorf("%d users, %s: %w", n, mode, err)
			}
			r.Mode = mode
			all = append(all, r)
			fmt.Fprintf(os.Stderr, "%2d users %-8s %6.1f tok/s  TTFT p50 %.3f s p95 %.3f s (%d answers without visible text)\n", n, mode, r.TokPerSec, r.TTFTp50, r.TTFTp95, r.Invisible)
		}
	}
	serial, err := load(ctx, base, users[:1], true, config{nPredict: c.nPredict, perUser: c.serial})
	if err != nil {
		return fmt.Errorf("one at a time: %w", err)
	}
	serial.Mode, serial.Users = "serial", 1
	all = append(all, serial)
	printTable(os.Stdout, c, all, serial)
	if c.jsonOut != "" {
		b, _ := json.MarshalIndent(all, "", "  ")
		if err := os.WriteFile(c.jsonOut, append(b, '\n'), 0o666); err != nil {
			return err
		}
	}
	return nil
}

// load sends perUser requests from each user at once (each user's requests
// one after another) and gathers the figures.
func load(ctx context.Context, base string, users []string, persona bool, c config) (result, error) {
	var mu sync.Mutex
	var got []stat
	var firstErr error
	var wg sync.WaitGroup
	t0 := time.Now()
	for i, u := range users {
		if !persona {
			u = ""
		}
		wg.Add(1)
		go func(i int, u string) {
			defer wg.Done()
			for k := range c.perUser {
				st, err := request(ctx, base, u, 1+i*c.perUser+k, c.nPredict)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				got = append(got, st)
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}(i, u)
	}
	wg.Wait()
	wall := time.Since(t0)
	if firstErr != nil {
		return result{}, firstErr
	}
	r := result{Users: len(users), Requests: len(got), Seconds: wall.Seconds()}
	var ttfts []float64
	prompt := 0
	for _, o := range got {
		r.Tokens += o.tokens
		prompt += o.prompt
		if o.ttft == 0 {
			r.Invisible++
			continue
		}
		ttfts = append(ttfts, o.ttft.Seconds())
	}
	slices.Sort(ttfts)
	r.TokPerSec = float64(r.Tokens) / wall.Seconds()
	r.TTFTp50, r.TTFTp95 = percentile(ttfts, 0.50), percentile(ttfts, 0.95)
	r.PromptToks = prompt / max(1, len(got))
	return r, nil
}

// percentile of sorted values (nearest rank).
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func printTable(w io.Writer, c config, all []result, serial result) {
	fmt.Fprintf(w, "model %s, plug %q, %d threads, %d tokens per request, %d requests per user\n\n", filepath.Base(c.model), filepath.Base(c.plug), c.threads, c.nPredict, c.perUser)
	fmt.Fprintln(w, "| users | personas | requests | tok/s | TTFT p50 (s) | TTFT p95 (s) | tok/s vs no personas | tok/s vs one at a time | no visible text |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	byKey := map[string]result{}
	for _, r := range all {
		byKey[fmt.Sprint(r.Users, r.Mode)] = r
	}
	for _, r := range all {
		if r.Mode == "serial" {
			continue
		}
		vsNone := "1.00"
		if r.Mode == "persona" {
			vsNone = fmt.Sprintf("%.2f", r.TokPerSec/byKey[fmt.Sprint(r.Users, "none")].TokPerSec)
		}
		fmt.Fprintf(w, "| %d | %s | %d | %.1f | %.3f | %.3f | %s | %.2f | %d |\n", r.Users, map[string]string{"persona": "yes", "none": "no"}[r.Mode],
			r.Requests, r.TokPerSec, r.TTFTp50, r.TTFTp95, vsNone, r.TokPerSec/serial.TokPerSec, r.Invisible)
	}
	fmt.Fprintf(w, "| 1 (one at a time) | yes | %d | %.1f | %.3f | %.3f | | 1.00 | %d |\n", serial.Requests, serial.TokPerSec, serial.TTFTp50, serial.TTFTp95, serial.Invisible)
}

// ---- the server --------------------------------------------------------------

type server struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func (s *server) stop() {
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startServer(ctx context.Context, c config, dir string, parallel int) (string, *server, error) {
	port, err := freePort()
	if err != nil {
		return "", nil, err
	}
	args := []string{"serve", "-m", c.model, "--port", strconv.Itoa(port), "-t", strconv.Itoa(c.threads),
		"-np", strconv.Itoa(parallel), "-c", strconv.Itoa(c.ctxSize), "--profiles", filepath.Join(dir, "profiles.db"),
		"--cache-dir", filepath.Join(dir, "cache"), "--alias", modelAlias}
	if c.plug != "" {
		args = append(args, "--plug", c.plug)
	}
	if c.encoder != "" {
		args = append(args, "--encoder", c.encoder)
	}
	cmd := exec.CommandContext(ctx, c.pplug, args...)
	logf, err := os.Create(filepath.Join(dir, "serve.log"))
	if err != nil {
		return "", nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start %s: %w", c.pplug, err)
	}
	s := &server{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(s.done) }()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(5 * time.Minute)
	for {
		select {
		case <-s.done:
			b, _ := os.ReadFile(filepath.Join(dir, "serve.log"))
			return "", nil, fmt.Errorf("pplug serve exited:\n%s", b)
		case <-time.After(200 * time.Millisecond):
		}
		if resp, err := http.Get(base + "/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base, s, nil
			}
		}
		if time.Now().After(deadline) {
			s.stop()
			return "", nil, errors.New("pplug serve did not become healthy in 5 minutes")
		}
	}
}

// ---- users and requests --------------------------------------------------------

var topics = [][]string{
	{"garden", "tomatoes", "soil", "seeds", "rain"},
	{"chess", "openings", "endgame", "tournament", "clock"},
	{"bicycle", "hills", "gears", "helmet", "trail"},
	{"baking", "bread", "oven", "flour", "yeast"},
	{"jazz", "saxophone", "chords", "club", "rhythm"},
	{"astronomy", "telescope", "planets", "night", "comet"},
	{"sailing", "wind", "harbor", "knots", "waves"},
	{"painting", "colors", "canvas", "brush", "light"},
}

// createUser adds a user with eight history items on two of the topics, so
// that every user's persona differs.
func createUser(ctx context.Context, base, id string, i int) error {
	if err := postJSON(ctx, base+"/v1/users", map[string]any{"id": id}, nil); err != nil {
		return err
	}
	a, b := topics[i%len(topics)], topics[(i/len(topics)+i+1)%len(topics)]
	var items []map[string]string
	for k := range 8 {
		t := a
		if k%2 == 1 {
			t = b
		}
		items = append(items, map[string]string{
			"text": fmt.Sprintf("Today I wrote about my %s again: the %s, the %s and how the %s changed everything for me.", t[0], t[1+k%4], t[1+(k+1)%4], t[1+(k+2)%4]),
			"date": fmt.Sprintf("2026-01-%02d", k+1),
		})
	}
	return postJSON(ctx, base+"/v1/users/"+id+"/items", map[string]any{"items": items}, nil)
}

func postJSON(ctx context.Context, url string, body any, out any) error {
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: %s: %s", url, resp.Status, rb)
	}
	if out != nil {
		return json.Unmarshal(rb, out)
	}
	return nil
}

type stat struct {
	ttft           time.Duration
	tokens, prompt int
}

// request sends one streamed chat completion and times its first token.
// seed varies the message so that no two requests are alike.
func request(ctx context.Context, base, user string, seed, n int) (stat, error) {
	body := map[string]any{
		"model":          modelAlias,
		"messages":       []map[string]string{{"role": "user", "content": fmt.Sprintf("Tell me a short story about my weekend, part %d.", seed)}},
		"max_tokens":     n,
		"temperature":    0,
		"ignore_eos":     true,
		"stream":         true,
		"stream_options": map[string]bool{"include_usage": true},
	}
	if user != "" {
		body["user"] = user
	}
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/chat/completions", bytes.NewReader(b))
	if err != nil {
		return stat{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	t0 := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return stat{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		rb, _ := io.ReadAll(resp.Body)
		return stat{}, fmt.Errorf("%s: %s", resp.Status, rb)
	}
	var st stat
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok || line == "[DONE]" {
			continue
		}
		var ev struct {
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
			Usage *struct {
				Prompt     int `json:"prompt_tokens"`
				Completion int `json:"completion_tokens"`
			} `json:"usage"`
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			return st, fmt.Errorf("bad event %q: %w", line, err)
		}
		if st.ttft == 0 && len(ev.Choices) > 0 && ev.Choices[0].Delta.Content != "" {
			st.ttft = time.Since(t0)
		}
		if ev.Usage != nil {
			st.tokens, st.prompt = ev.Usage.Completion, ev.Usage.Prompt
		}
	}
	if err := sc.Err(); err != nil {
		return st, err
	}
	if st.tokens == 0 {
		return st, errors.New("the stream ended without usage (stream_options.include_usage)")
	}
	return st, nil
}
