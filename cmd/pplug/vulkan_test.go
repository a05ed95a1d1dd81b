//go:build vulkan

package main

// The commands on a Vulkan device (`make test-vulkan`, -tags vulkan): pplug
// generate, chat, serve and embed run once on the CPU (no backend loaded)
// and once with -ngl 99 on the first Vulkan device (lavapipe on a machine
// without a GPU), each in its own process, and must give the same greedy
// text, with and without persona rows, with the plug-in's ggml graph and
// the history encoder on the device. Lavapipe runs on one thread
// (LP_NUM_THREADS=1): with more, batches of several sequences came out
// wrong (see llama/vulkan_test.go). Its times are correctness figures only.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pplug/pplug/internal/testenv"
)

// vkLogprobTol bounds |logprob(Vulkan) - logprob(CPU)| of every token and
// top alternative the server reports. A log-probability is a logit minus
// the log-sum-exp of all of them, so it can move by twice the logit
// difference TestVulkanParity bounds (0.1).
const vkLogprobTol = 0.2

// vkEmbedTol bounds |embedding(Vulkan) - embedding(CPU)| per component of
// the L2-normalised encoder output.
const vkEmbedTol = 1e-3

// vkEnv is the test's device setting: the backend folder and the
// environment of a run on the Vulkan device.
type vkEnv struct {
	dir string
	t   *testing.T
}

// newVkEnv finds libggml-vulkan.so ($PPLUG_BACKENDS_DIR, else the
// repository's bin/); without it the test fails under
// PPLUG_REQUIRE_VULKAN=1 and skips otherwise.
func newVkEnv(t *testing.T) *vkEnv {
	dir := os.Getenv("PPLUG_BACKENDS_DIR")
	if dir == "" {
		if root, ok := testenv.RepoRoot(); ok {
			dir = filepath.Join(root, "bin")
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "libggml-vulkan.so")); err != nil {
		msg := fmt.Sprintf("no libggml-vulkan.so in %q: run make vulkan", dir)
		if os.Getenv("PPLUG_REQUIRE_VULKAN") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return &vkEnv{dir: dir, t: t}
}

// env is the environment of one run: on the device, or on the CPU with no
// backend folder at all (once a GPU backend is loaded, llama.cpp sends
// large CPU batches to it).
func (v *vkEnv) env(device bool) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PPLUG_BACKENDS_DIR=") && !strings.HasPrefix(kv, "LP_NUM_THREADS=") {
			out = append(out, kv)
		}
	}
	out = append(out, "PPLUG_RUN_MAIN=1", "LP_NUM_THREADS=1")
	if device {
		out = append(out, "PPLUG_BACKENDS_DIR="+v.dir)
		if os.Getenv("GGML_VK_VISIBLE_DEVICES") == "" {
			out = append(out, "GGML_VK_VISIBLE_DEVICES=0")
		}
	}
	return out
}

// args adds -ngl 99 and -v for a run on the device.
func args(device bool, a ...string) []string {
	if device {
		return append(a, "-ngl", "99", "-v")
	}
	return append(a, "-v")
}

// run runs pplug in its own process and returns stdout and stderr.
func (v *vkEnv) run(device bool, stdin string, a ...string) (string, string) {
	v.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := runPplug(ctx, stdin, args(device, a...)...)
	cmd.Env = v.env(device)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	if err := cmd.Run(); err != nil {
		v.t.Fatalf("pplug %s (device %t): %v\n%s", strings.Join(a, " "), device, err, errb.String())
	}
	v.t.Logf("pplug %s on %s: %.1f s", a[0], where(device), time.Since(start).Seconds())
	return out.String(), errb.String()
}

func where(device bool) string {
	if device {
		return "Vulkan"
	}
	return "CPU"
}

var offloadRe = regexp.MustCompile(`offloaded (\d+)/(\d+) layers to GPU`)

// checkPaths fails unless every model of the run (the LLM, and the
// encoder when it is its own file) was fully offloaded on the device, none
// on the CPU (where llama.cpp, without a GPU backend, may not say so), and
// the plug-in ran where it should.
func checkPaths(t *testing.T, device bool, stderr string, models int, plugin bool) {
	t.Helper()
	ms := offloadRe.FindAllStringSubmatch(stderr, -1)
	if len(ms) != models && (device || len(ms) != 0) {
		t.Errorf("%s: %d models loaded, want %d:\n%s", where(device), len(ms), models, stderr)
	}
	for _, m := range ms {
		if ok := (device && m[1] == m[2]) || (!device && m[1] == "0"); !ok {
			t.Errorf("%s: %s", where(device), m[0])
		}
	}
	want := "plug-in path: go cpu"
	if device {
		want = "plug-in path: ggml graph on Vulkan0"
	}
	if plugin && !strings.Contains(stderr, want) {
		t.Errorf("%s: the log lacks %q:\n%s", where(device), want, stderr)
	}
}

// vkFixture is what the commands share: a plug for stories260K with
// instruction and persona rows, a small BERT encoder and its plug, and a
// profile database with two users.
type vkFixture struct {
	model, plug, bert, bertPlug, db, lily, tom string
}

func newVkFixture(t *testing.T) *vkFixture {
	dir := t.TempDir()
	prof := filepath.Join("..", "..", "examples", "profiles")
	f := &vkFixture{
		model: testenv.Stories260K(t), plug: filepath.Join(dir, "s.plug.gguf"),
		bert: filepath.Join(dir, "bert.gguf"), bertPlug: filepath.Join(dir, "b.plug.gguf"),
		db:   filepath.Join(dir, "profiles.db"),
		lily: filepath.Join(prof, "lily.json"), tom: filepath.Join(prof, "tom.jsonl"),
	}
	steps := [][]string{
		{"plug", "init", "-m", f.model, "-o", f.plug, "--n-instruction", "2", "--n-persona", "4"},
		{"synth", "--arch", "bert", "--n-embd", "64", "--n-layer", "2", "--n-head", "4", "--n-ff", "128",
			"--vocab", testenv.BertVocab(t), "-o", f.bert},
		{"plug", "init", "-m", f.model, "--encoder", f.bert, "-o", f.bertPlug, "--n-persona", "2"},
		{"profile", "import", "--profiles", f.db, "--user", "lily", "--profile", f.lily},
		{"profile", "import", "--profiles", f.db, "--user", "tom", "--profile", f.tom},
	}
	for _, s := range steps {
		if code, _, errs := pplug(t, "", s...); code != 0 {
			t.Fatalf("pplug %s: exit %d: %s", strings.Join(s, " "), code, errs)
		}
	}
	return f
}

// TestVulkanCommands: generate, chat, serve (several users in one batch)
// and embed give the CPU's greedy text and, within the tolerances above,
// its log-probabilities and embeddings, on the Vulkan device.
func TestVulkanCommands(t *testing.T) {
	v := newVkEnv(t)
	f := newVkFixture(t)
	t.Run("generate", func(t *testing.T) { v.t = t; vkGenerate(t, v, f) })
	t.Run("chat", func(t *testing.T) { v.t = t; vkChat(t, v, f) })
	t.Run("serve", func(t *testing.T) { v.t = t; vkServe(t, v, f) })
	t.Run("embed", func(t *testing.T) { v.t = t; vkEmbed(t, v, f) })
}

// vkGenerate: plain, with the LLM as its own encoder, with a BERT encoder.
func vkGenerate(t *testing.T, v *vkEnv, f *vkFixture) {
	base := []string{"generate", "-m", f.model, "-p", "Once upon a time", "-n", "24", "--temp", "0", "-t", "1", "--no-cache"}
	cases := []struct {
		name   string
		extra  []string
		models int
	}{
		{"plain", nil, 1},
		{"persona, LLM encoder", []string{"--profile", f.lily, "--plug", f.plug}, 1},
		{"persona, BERT encoder", []string{"--profile", f.tom, "--plug", f.bertPlug, "--encoder", f.bert}, 2},
	}
	texts := map[string]bool{}
	for _, c := range cases {
		a := append(append([]string(nil), base...), c.extra...)
		want, cpuErr := v.run(false, "", a...)
		got, devErr := v.run(true, "", a...)
		checkPaths(t, false, cpuErr, c.models, c.extra != nil)
		checkPaths(t, true, devErr, c.models, c.extra != nil)
		t.Logf("%-22s text equal: %t (%q)", c.name, got == want, want)
		if got != want {
			t.Errorf("%s: Vulkan %q, CPU %q", c.name, got, want)
		}
		texts[want] = true
	}
	if len(texts) != len(cases) {
		t.Errorf("the personas changed nothing: %d distinct texts of %d runs", len(texts), len(cases))
	}
}

// vkChat: a two-turn conversation with persona rows at its start.
func vkChat(t *testing.T, v *vkEnv, f *vkFixture) {
	script := "Tell me about Lily.\nWhat did the dog do?\n"
	a := []string{"chat", "-m", f.model, "-n", "20", "--temp", "0", "-t", "1", "--profile", f.lily, "--plug", f.plug, "--no-cache"}
	want, cpuErr := v.run(false, script, a...)
	got, devErr := v.run(true, script, a...)
	checkPaths(t, false, cpuErr, 1, true)
	checkPaths(t, true, devErr, 1, true)
	t.Logf("chat transcript equal: %t", got == want)
	if got != want || strings.Count(want, "\n") < 2 {
		t.Errorf("chat on Vulkan:\n%s\non the CPU:\n%s", got, want)
	}
}

// vkAnswer is one completion's text and log-probabilities.
type vkAnswer struct {
	text     string
	logprobs []float64            // of each chosen token
	top      []map[string]float64 // the top alternatives of each position
}

// vkServe: three users at once (two personas and none) on -np 3, so that
// their sequences decode in shared batches.
func vkServe(t *testing.T, v *vkEnv, f *vkFixture) {
	ref := serveAnswers(t, v, f, false)
	got := serveAnswers(t, v, f, true)
	worst, equal := 0.0, 0
	for user, want := range ref {
		g := got[user]
		if g.text != want.text {
			t.Errorf("user %q: Vulkan %q, CPU %q", user, g.text, want.text)
			continue
		}
		equal++
		worst = math.Max(worst, logprobDiff(t, user, g, want))
	}
	t.Logf("serve: %d of %d users' texts equal, max |Δlogprob| %.3g (tolerance %g)", equal, len(ref), worst, vkLogprobTol)
	if worst >= vkLogprobTol {
		t.Errorf("max |Δlogprob| %.3g >= %g", worst, vkLogprobTol)
	}
	if ref["lily"].text == ref[""].text || ref["tom"].text == ref[""].text {
		t.Errorf("the personas changed nothing: lily %q, tom %q, none %q", ref["lily"].text, ref["tom"].text, ref[""].text)
	}
}

// logprobDiff is the largest logprob difference of two answers of one
// text (the chosen tokens and the alternatives both report).
func logprobDiff(t *testing.T, user string, a, b vkAnswer) float64 {
	if len(a.logprobs) != len(b.logprobs) || len(a.logprobs) == 0 {
		t.Errorf("user %q: %d logprobs on Vulkan, %d on the CPU", user, len(a.logprobs), len(b.logprobs))
		return math.Inf(1)
	}
	d := 0.0
	for i := range a.logprobs {
		d = math.Max(d, math.Abs(a.logprobs[i]-b.logprobs[i]))
		for tok, lp := range a.top[i] {
			if lq, ok := b.top[i][tok]; ok {
				d = math.Max(d, math.Abs(lp-lq))
			}
		}
	}
	return d
}

// serveAnswers starts pplug serve, asks for three completions at once and
// returns them by user.
func serveAnswers(t *testing.T, v *vkEnv, f *vkFixture, device bool) map[string]vkAnswer {
	url, stop := startServeProcess(t, v, device, "serve", "-m", f.model, "--plug", f.plug, "--profiles", f.db,
		"-np", "3", "-t", "1", "--no-cache", "--port", "0")
	defer stop()
	users := []string{"lily", "tom", ""}
	out := map[string]vkAnswer{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := complete(t, url, u)
			mu.Lock()
			out[u] = a
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

func complete(t *testing.T, url, user string) vkAnswer {
	req := map[string]any{"prompt": "Once upon a time", "max_tokens": 24, "temperature": 0, "logprobs": 3}
	if user != "" {
		req["user"] = user
	}
	status, body := httpJSON(t, "POST", url+"/v1/completions", req)
	var cr struct {
		Choices []struct {
			Text     string `json:"text"`
			Logprobs struct {
				TokenLogprobs []float64            `json:"token_logprobs"`
				TopLogprobs   []map[string]float64 `json:"top_logprobs"`
			} `json:"logprobs"`
		} `json:"choices"`
	}
	if status != 200 || json.Unmarshal(body, &cr) != nil || len(cr.Choices) != 1 {
		t.Errorf("user %q: %d %s", user, status, body)
		return vkAnswer{}
	}
	c := cr.Choices[0]
	return vkAnswer{text: c.Text, logprobs: c.Logprobs.TokenLogprobs, top: c.Logprobs.TopLogprobs}
}

// startServeProcess runs pplug serve in its own process and returns its
// URL and a function that stops it and checks its log.
func startServeProcess(t *testing.T, v *vkEnv, device bool, a ...string) (string, func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	cmd := runPplug(ctx, "", args(device, a...)...)
	cmd.Env = v.env(device)
	errs, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	var log strings.Builder
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(errs)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	listening := regexp.MustCompile(`listening on (http://[0-9.:]+)`)
	for line := range lines {
		log.WriteString(line + "\n")
		if m := listening.FindStringSubmatch(line); m != nil {
			rest := make(chan string)
			go func() {
				var b strings.Builder
				for l := range lines {
					b.WriteString(l + "\n")
				}
				rest <- b.String()
			}()
			return m[1], func() {
				cmd.Process.Signal(os.Interrupt)
				err := cmd.Wait()
				cancel()
				all := log.String() + <-rest
				if err != nil || t.Failed() {
					t.Errorf("serve on %s ended with %v; its log ends:\n%s", where(device), err, tail(all, 40))
				}
				checkPaths(t, device, all, 1, true)
			}
		}
	}
	cmd.Wait()
	cancel()
	t.Fatalf("serve on %s did not start:\n%s", where(device), log.String())
	return "", nil
}

// vkEmbed: the BERT encoder's embeddings of two texts.
func vkEmbed(t *testing.T, v *vkEnv, f *vkFixture) {
	a := []string{"embed", "-m", f.bert, "-p", "Lily has a red ball.\nTom likes trains.", "--pooling", "mean",
		"--embd-output-format", "array", "-t", "1"}
	want, cpuErr := v.run(false, "", a...)
	got, devErr := v.run(true, "", a...)
	checkPaths(t, false, cpuErr, 1, false)
	checkPaths(t, true, devErr, 1, false)
	var w, g [][]float64
	if json.Unmarshal([]byte(want), &w) != nil || json.Unmarshal([]byte(got), &g) != nil || len(w) != 2 || len(g) != 2 {
		t.Fatalf("embed output: Vulkan %.200q, CPU %.200q", got, want)
	}
	d := 0.0
	for i := range w {
		for j := range w[i] {
			d = math.Max(d, math.Abs(w[i][j]-g[i][j]))
		}
	}
	t.Logf("embed: max |Δ| %.3g over %d x %d values (tolerance %g)", d, len(w), len(w[0]), vkEmbedTol)
	if d >= vkEmbedTol {
		t.Errorf("embeddings differ by %.3g >= %g", d, vkEmbedTol)
	}
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
