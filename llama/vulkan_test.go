package llama

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/pplug/pplug/cgo"
	"github.com/pplug/pplug/internal/testenv"
)

// vulkanRequireEnv turns the skips of TestVulkanParity (no libggml-vulkan.so,
// no Vulkan device) into failures; `make test-vulkan` sets it.
const vulkanRequireEnv = "PPLUG_REQUIRE_VULKAN"

// vulkanLogitTol bounds max|logit(Vulkan) - logit(CPU)| over every position
// of every scenario (F16 KV cache, flash attention auto, as pplug runs).
// Measured on lavapipe (llvmpipe, LLVM 15.0.6): 0.020 plain, 0.038 with
// persona rows, 0.059 for three sequences in one batch; 0.017 / 0.034 / 0.042
// with GGML_VK_DISABLE_F16=1, so most of it is not F16 arithmetic.
const vulkanLogitTol = 0.1

// Prompts of the parity test: each alone, with persona rows, and the three
// together in one batch of several sequences.
var vulkanPrompts = []string{"Once upon a time", "Tom had a big red ball", "The sun was hot and"}

const (
	vulkanGenTokens   = 24 // greedy tokens per prompt
	vulkanPersonaRows = 6  // rows injected after BOS
)

// skipOrFailVulkan skips, or fails when PPLUG_REQUIRE_VULKAN=1.
func skipOrFailVulkan(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv(vulkanRequireEnv) == "1" {
		t.Fatalf("%s (%s=1)", msg, vulkanRequireEnv)
	}
	t.Skipf("%s (%s=1 makes this a failure)", msg, vulkanRequireEnv)
}

// vulkanBackendDir is $PPLUG_BACKENDS_DIR, else the repository's bin/
// (where `make vulkan` puts the library), when it holds libggml-vulkan.so.
func vulkanBackendDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv(BackendsDirEnv)
	if dir == "" {
		if root, ok := testenv.RepoRoot(); ok {
			dir = filepath.Join(root, "bin")
		}
	}
	lib := filepath.Join(dir, "libggml-vulkan.so")
	if _, err := os.Stat(lib); err != nil {
		skipOrFailVulkan(t, "no Vulkan backend at %s: build it with `make vulkan` (packages: scripts/install-deps.sh --vulkan) or set %s", lib, BackendsDirEnv)
	}
	return dir
}

// TestVulkanParity runs stories260K on the CPU and then fully offloaded
// (GPULayers 99) to the first Vulkan device, and compares greedy text and
// logits: plain prompts, prompts with persona rows after BOS, and the
// prompts as several sequences of one batch made of embedding rows.
//
// The CPU reference runs before the Vulkan backend is loaded: once it is,
// llama.cpp offloads large CPU batches to it. Run the test on its own
// (make test-vulkan). GGML_VK_VISIBLE_DEVICES defaults to 0 here, which
// makes ggml use lavapipe (a CPU-type device that it skips otherwise).
func TestVulkanParity(t *testing.T) {
	dir := vulkanBackendDir(t)
	for _, d := range Devices() {
		if d.Backend != "CPU" {
			t.Fatalf("backend %s was loaded before the CPU reference: run this test alone (-run Vulkan)", d.Backend)
		}
	}
	ref := runParityScenarios(t, 0)

	t.Setenv(BackendsDirEnv, dir)
	if os.Getenv("GGML_VK_VISIBLE_DEVICES") == "" {
		t.Setenv("GGML_VK_VISIBLE_DEVICES", "0")
	}
	// lavapipe (Mesa 22.3.6) spreads a dispatch over threads; with several
	// of them the batched graph of several sequences came out wrong on most
	// runs (max |Δlogit| 20-26 or NaN), with one thread it matched the CPU
	// every time. Correctness, not speed, is what this device is for.
	if os.Getenv("LP_NUM_THREADS") == "" {
		t.Setenv("LP_NUM_THREADS", "1")
	}
	// The module links a libggml-base of its own; its log (here a debug
	// line of the device memory query) must reach pplug's logger, not stderr.
	moduleLog := &logCapture{}
	SetLogger(slog.New(moduleLog), slog.LevelDebug)
	loaded := LoadBackends()
	dev, ok := vulkanDevice()
	SetLogger(nil, slog.LevelInfo)
	if ok && !strings.Contains(moduleLog.text(), "ggml_backend_vk_get_device_memory") {
		t.Errorf("the Vulkan module's ggml log did not reach pplug's logger (routeBaseLog); got:\n%s", moduleLog.text())
	}
	if !ok {
		skipOrFailVulkan(t, "%s loaded no Vulkan device (backends %v): install mesa-vulkan-drivers for lavapipe and set GGML_VK_VISIBLE_DEVICES", dir, loaded)
	}
	t.Logf("Vulkan device: %s", dev)
	// First, while ggml has compiled none of its pipelines for this device
	// (it compiles each on first use), several goroutines at once.
	t.Run("concurrent", func(t *testing.T) { vulkanConcurrentUse(t, dev, ref.texts[singleScenario(0)]) })
	logs := captureLlamaLog(t)
	got := runParityScenarios(t, 99)
	checkOffloaded(t, logs.text())
	compareParity(t, ref, got)
}

func singleScenario(rows int) string { return fmt.Sprintf("one sequence, %d persona rows", rows) }

// vulkanConcurrentUse: several goroutines use the Vulkan device at once, as
// pplug serve does (a batch decode, a persona's history encoding, the
// plug-in's graph), while ggml compiles its pipelines on first use: three
// contexts generate from their own goroutines while a fourth pools
// embeddings and a fifth runs the plug-in's graphs, round after round.
// Every text must be the CPU's (want, the prompts without persona rows),
// every embedding the same in every round, and the device lock
// (cgo/devicelock.go) must be on: serve on lavapipe crashed 2 runs in 40
// without it (a pipeline compiling for one thread's decode while another
// computed the plug-in's upload graph).
func vulkanConcurrentUse(t *testing.T, dev Device, want []string) {
	if !cgo.DeviceLockOn() {
		t.Fatalf("a GPU device (%s) is registered but the device lock is off", dev.Name)
	}
	m, err := LoadModel(context.Background(), testenv.Stories260K(t), ModelOptions{GPULayers: 99})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	const rounds = 4
	errs := make(chan error, len(vulkanPrompts)+2)
	var wg sync.WaitGroup
	for i := range vulkanPrompts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- generateRounds(m, i, rounds, want[i])
		}()
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		errs <- projectRounds(dev.Name, rounds*4)
	}()
	go func() {
		defer wg.Done()
		errs <- embedRounds(m, rounds*3)
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// generateRounds generates greedily from prompt i on a context of its own,
// rounds times, and checks the text.
func generateRounds(m *Model, i, rounds int, want string) error {
	c, err := m.NewContext(ContextOptions{NCtx: 256, Threads: 1})
	if err != nil {
		return err
	}
	defer c.Close()
	s, err := NewSampler(SamplerOptions{Temp: 0, RepeatPenalty: 1})
	if err != nil {
		return err
	}
	defer s.Close()
	toks, err := m.Tokenize(vulkanPrompts[i], true, false)
	if err != nil {
		return err
	}
	for r := range rounds {
		if err := c.ClearMemory(); err != nil {
			return err
		}
		s.Reset()
		res, err := c.Generate(context.Background(), s, []Input{TokenInput(toks...)}, 0, GenerateOptions{MaxTokens: vulkanGenTokens})
		if err != nil {
			return fmt.Errorf("prompt %d, round %d: %w", i, r, err)
		}
		if res.Text != want {
			return fmt.Errorf("prompt %d, round %d: %q, alone %q", i, r, res.Text, want)
		}
	}
	return nil
}

// embedRounds pools every prompt's embedding on a context of its own, as
// the history encoder does (its memory cleared between texts), n times;
// each round must give the first round's vectors.
func embedRounds(m *Model, n int) error {
	c, err := m.NewContext(ContextOptions{NCtx: 256, Threads: 1, Embeddings: true, Pooling: PoolingMean})
	if err != nil {
		return err
	}
	defer c.Close()
	texts := make([][]Token, len(vulkanPrompts))
	for i, p := range vulkanPrompts {
		if texts[i], err = m.Tokenize(p, true, false); err != nil {
			return err
		}
	}
	var first [][]float32
	for r := range n {
		for i, toks := range texts {
			if err := c.ClearMemory(); err != nil {
				return err
			}
			if err := c.Decode(context.Background(), seqBatch(toks)); err != nil {
				return fmt.Errorf("embedding %d, round %d: %w", i, r, err)
			}
			v, err := c.SeqEmbeddings(0)
			if err != nil {
				return fmt.Errorf("embedding %d, round %d: %w", i, r, err)
			}
			if r == 0 {
				first = append(first, v)
				continue
			}
			for j := range v {
				if v[j] != first[i][j] {
					return fmt.Errorf("embedding %d, round %d: value %d is %g, %g in round 0", i, r, j, v[j], first[i][j])
				}
			}
		}
	}
	return nil
}

// projectRounds runs the plug-in's graphs on device n times, as a persona
// does: a projector uploaded, one row projected then eight, a history of
// eight keys and values uploaded and aggregated for a query. The results
// must be finite and the weights a distribution.
func projectRounds(device string, n int) error {
	g, err := NewPluginGraph(device, 1)
	if err != nil {
		return err
	}
	defer g.Close()
	const d, items = 64, 8
	rng := rand.New(rand.NewPCG(8, 9))
	vec := func(k int) []float32 {
		v := make([]float32, k)
		for j := range v {
			v[j] = float32(rng.NormFloat64() * 0.1)
		}
		return v
	}
	unit := func(k int) []float32 {
		v := vec(k * d)
		for r := range k {
			var ss float64
			for _, x := range v[r*d : (r+1)*d] {
				ss += float64(x) * float64(x)
			}
			for j := r * d; j < (r+1)*d; j++ {
				v[j] = float32(float64(v[j]) / math.Sqrt(ss))
			}
		}
		return v
	}
	finite := func(what string, r int, v []float32) error {
		for _, x := range v {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return fmt.Errorf("%s %d: %v in the output", what, r, x)
			}
		}
		return nil
	}
	for r := range n {
		w, err := g.UploadProjector(d, d, vec(d*d), vec(d), vec(d*d), vec(d), 1)
		if err != nil {
			return err
		}
		for _, rows := range []int{1, items} {
			out := make([]float32, rows*d)
			err := g.Project(w, vec(rows*d), rows, out)
			if err == nil {
				err = finite("projection", r, out)
			}
			if err != nil {
				w.Close()
				return fmt.Errorf("projection %d: %w", r, err)
			}
		}
		w.Close()
		h, err := g.Upload(unit(items), vec(items*d), items, d, d)
		if err != nil {
			return fmt.Errorf("history %d: %w", r, err)
		}
		out, weights := make([]float32, d), make([]float32, items)
		err = g.Aggregate([]io.Closer{h}, unit(1), 0.5, out, weights)
		h.Close()
		if err == nil {
			err = finite("aggregation", r, append(out, weights...))
		}
		if err != nil {
			return fmt.Errorf("aggregation %d: %w", r, err)
		}
		var sum float64
		for _, x := range weights {
			sum += float64(x)
		}
		if math.Abs(sum-1) > 1e-4 {
			return fmt.Errorf("aggregation %d: weights sum to %g", r, sum)
		}
	}
	return nil
}

// vulkanDevice finds the first device of the Vulkan backend.
func vulkanDevice() (Device, bool) {
	for _, d := range Devices() {
		if d.Backend == "Vulkan" {
			return d, true
		}
	}
	return Device{}, false
}

// parityRun holds, per scenario, the greedy texts and the logits of every
// position of the teacher-forced sequences.
type parityRun struct {
	names  []string
	texts  map[string][]string
	logits map[string][][]float32
}

func (r *parityRun) add(name string, texts []string, logits [][]float32) {
	if r.texts == nil {
		r.texts, r.logits = map[string][]string{}, map[string][][]float32{}
	}
	r.names = append(r.names, name)
	r.texts[name], r.logits[name] = texts, logits
}

func runParityScenarios(t *testing.T, gpuLayers int) *parityRun {
	t.Helper()
	m, err := LoadModel(context.Background(), testenv.Stories260K(t), ModelOptions{GPULayers: gpuLayers})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	// The plug-in follows the model's device (persona.OpenBackend).
	if d := m.MainDevice(); (gpuLayers > 0) != (d.Backend == "Vulkan") {
		t.Errorf("GPULayers %d: MainDevice is %s", gpuLayers, d)
	}
	r := &parityRun{}
	for _, rows := range []int{0, vulkanPersonaRows} {
		texts, logits := singleSequences(t, m, rows)
		r.add(singleScenario(rows), texts, logits)
	}
	texts, logits := batchedSequences(t, m, vulkanPersonaRows)
	r.add(fmt.Sprintf("%d sequences in one batch, %d persona rows", len(vulkanPrompts), vulkanPersonaRows), texts, logits)
	return r
}

// promptInputs lays out [BOS][rows][prompt] for prompt i; the rows are
// fixed pseudo-random vectors at the scale of the token embeddings, as a
// plug's persona rows would be.
func promptInputs(t *testing.T, m *Model, i, rows int) []Input {
	t.Helper()
	toks, err := m.Tokenize(vulkanPrompts[i], true, false)
	if err != nil {
		t.Fatal(err)
	}
	in := []Input{TokenInput(toks[0])}
	if rows > 0 {
		in = append(in, EmbdInput(personaRows(t, m, toks, rows, uint64(i))))
	}
	return append(in, TokenInput(toks[1:]...))
}

func personaRows(t *testing.T, m *Model, toks []Token, n int, seed uint64) []float32 {
	t.Helper()
	emb, err := m.TokenEmbeddings(toks)
	if err != nil {
		t.Fatal(err)
	}
	var ss float64
	for _, v := range emb {
		ss += float64(v) * float64(v)
	}
	scale := math.Sqrt(ss / float64(len(emb)))
	rng := rand.New(rand.NewPCG(seed, 7))
	rows := make([]float32, n*m.NEmbd())
	for j := range rows {
		rows[j] = float32(rng.NormFloat64() * scale)
	}
	return rows
}

// singleSequences generates greedily from each prompt alone, then decodes
// the prompt and its continuation with every position as output.
func singleSequences(t *testing.T, m *Model, rows int) ([]string, [][]float32) {
	t.Helper()
	c := newCtx(t, m, ContextOptions{NCtx: 256, Threads: 1})
	var texts []string
	var logits [][]float32
	for i := range vulkanPrompts {
		in := promptInputs(t, m, i, rows)
		if err := c.ClearMemory(); err != nil {
			t.Fatal(err)
		}
		res, err := c.Generate(context.Background(), greedy(t), in, 0, GenerateOptions{MaxTokens: vulkanGenTokens})
		if err != nil {
			t.Fatal(err)
		}
		texts = append(texts, res.Text)
		logits = append(logits, allLogits(t, c, append(in, TokenInput(res.Tokens...)))...)
	}
	return texts, logits
}

// batchedSequences decodes every prompt's [BOS][rows][prompt] as embedding
// rows of one batch, one sequence per prompt, then generates greedily with
// one batch of a token per sequence per step. It returns each sequence's
// text and the logits of every output row.
func batchedSequences(t *testing.T, m *Model, rows int) ([]string, [][]float32) {
	t.Helper()
	n := len(vulkanPrompts)
	c := newCtx(t, m, ContextOptions{NCtx: 256 * n, NSeqMax: n, Threads: 1})
	b, next := prefillBatch(t, m, rows)
	var logits [][]float32
	outs := decodeOutputs(t, c, b, &logits)
	toks := make([][]Token, n)
	for range vulkanGenTokens {
		step := Batch{Tokens: make([]Token, n), Pos: next, Seq: seqIDs(n), Output: trues(n)}
		for s := range n {
			step.Tokens[s] = argmax(outs[s])
			toks[s] = append(toks[s], step.Tokens[s])
		}
		outs = decodeOutputs(t, c, step, &logits)
		next = advance(next)
	}
	texts := make([]string, n)
	for s := range n {
		text, err := m.Detokenize(toks[s], false, false)
		if err != nil {
			t.Fatal(err)
		}
		texts[s] = text
	}
	return texts, logits
}

// prefillBatch turns every prompt's inputs into embedding rows of one batch
// (tokens through TokenEmbeddings), sequence s for prompt s, all rows output.
// It returns the batch and each sequence's next position.
func prefillBatch(t *testing.T, m *Model, rows int) (Batch, []Pos) {
	t.Helper()
	var b Batch
	var next []Pos
	for s := range vulkanPrompts {
		var pos Pos
		for _, in := range promptInputs(t, m, s, rows) {
			e := in.Embd
			if in.Tokens != nil {
				var err error
				if e, err = m.TokenEmbeddings(in.Tokens); err != nil {
					t.Fatal(err)
				}
			}
			b.Embd = append(b.Embd, e...)
			for range len(e) / m.NEmbd() {
				b.Pos, b.Seq, b.Output = append(b.Pos, pos), append(b.Seq, SeqID(s)), append(b.Output, true)
				pos++
			}
		}
		next = append(next, pos)
	}
	return b, next
}

// decodeOutputs decodes b, appends the logits of each row to all and returns
// each sequence's last logits.
func decodeOutputs(t *testing.T, c *Context, b Batch, all *[][]float32) [][]float32 {
	t.Helper()
	if err := c.Decode(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	last := make([][]float32, c.NSeqMax())
	for i := range b.Pos {
		l, err := c.Logits(i)
		if err != nil {
			t.Fatal(err)
		}
		*all = append(*all, l)
		last[b.Seq[i]] = l
	}
	return last
}

func seqIDs(n int) []SeqID {
	s := make([]SeqID, n)
	for i := range s {
		s[i] = SeqID(i)
	}
	return s
}

func trues(n int) []bool {
	o := make([]bool, n)
	for i := range o {
		o[i] = true
	}
	return o
}

func advance(p []Pos) []Pos {
	out := make([]Pos, len(p))
	for i, v := range p {
		out[i] = v + 1
	}
	return out
}

func argmax(l []float32) Token {
	best := 0
	for i, v := range l {
		if v > l[best] {
			best = i
		}
	}
	return Token(best)
}

// compareParity fails when a scenario's texts differ or its logits differ
// by vulkanLogitTol or more, and logs the measured maximum of each.
func compareParity(t *testing.T, ref, got *parityRun) {
	t.Helper()
	for _, name := range ref.names {
		same := true
		for i, want := range ref.texts[name] {
			if g := got.texts[name][i]; g != want {
				same = false
				t.Errorf("%s, prompt %q: Vulkan text %q, CPU %q", name, vulkanPrompts[i], g, want)
			}
		}
		a, b := ref.logits[name], got.logits[name]
		if len(a) != len(b) {
			t.Errorf("%s: %d logit rows on Vulkan, %d on the CPU", name, len(b), len(a))
			continue
		}
		d := maxAbsDiff(a, b)
		t.Logf("%-40s text equal: %t, positions %d, max|Δlogit| = %.3g", name, same, len(a), d)
		if d >= vulkanLogitTol {
			t.Errorf("%s: max abs logit difference %.3g >= %g", name, d, vulkanLogitTol)
		}
	}
}

// logCapture collects llama.cpp's log lines while a test runs.
type logCapture struct {
	mu    sync.Mutex
	lines []string
}

func (l *logCapture) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func (l *logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCapture) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logCapture) WithGroup(string) slog.Handler            { return l }
func (l *logCapture) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, r.Message)
	return nil
}

func captureLlamaLog(t *testing.T) *logCapture {
	l := &logCapture{}
	SetLogger(slog.New(l), slog.LevelInfo)
	t.Cleanup(func() { SetLogger(nil, slog.LevelInfo) })
	return l
}

var offloadedRe = regexp.MustCompile(`offloaded (\d+)/(\d+) layers to GPU`)

// checkOffloaded fails unless llama.cpp put every layer on the GPU, and logs
// the graph splits (a split beyond the input one is an op left to the CPU).
func checkOffloaded(t *testing.T, log string) {
	t.Helper()
	m := offloadedRe.FindStringSubmatch(log)
	if m == nil || m[1] != m[2] {
		t.Fatalf("the model was not fully offloaded (want \"offloaded N/N layers to GPU\" in llama.cpp's log):\n%s", log)
	}
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "graph splits") || strings.Contains(line, "offloaded") || strings.Contains(line, "Vulkan0") {
			t.Logf("llama.cpp: %s", strings.TrimSpace(line))
		}
	}
}
