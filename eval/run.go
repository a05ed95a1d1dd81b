package eval

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pplug/pplug/internal/atomicfile"
	"github.com/pplug/pplug/lamp"
	"github.com/pplug/pplug/llama"
)

// Result is one method's run.
type Result struct {
	Method Method `json:"method"`
	// Questions is the number of questions answered.
	Questions int `json:"questions"`
	// Seconds is the wall time of the method, profile encoding included.
	Seconds            float64 `json:"seconds"`
	SecondsPerQuestion float64 `json:"seconds_per_question"`
	// Predictions is the predictions file, relative to the output folder.
	Predictions string `json:"predictions"`
	// Scores are the official metrics; nil without golds.
	Scores *lamp.Scores `json:"scores,omitempty"`
	// PromptPositions and GenTokens are totals over the questions.
	PromptPositions int `json:"prompt_positions"`
	GenTokens       int `json:"generated_tokens"`
	// Truncated counts prompts cut to fit the context window.
	Truncated int `json:"truncated_prompts,omitempty"`
	// NoProfile counts questions without a usable history, answered from
	// the input alone.
	NoProfile int `json:"no_profile,omitempty"`

	// OutputTokens is the total of the answers' tokens (an ending
	// end-of-generation token not counted); MeanOutputTokens its mean.
	OutputTokens     int     `json:"output_tokens"`
	MeanOutputTokens float64 `json:"mean_output_tokens"`
	// EOSShare is the share of answers that ended with the model's
	// end-of-generation token (the others ran into the token limit or the
	// window).
	EOSShare float64 `json:"eos_share"`
	// With golds: MeanGoldTokens is the golds' mean length in tokens and
	// EOSWithin2x the share of answers that ended with end-of-generation
	// at most twice their gold's length.
	MeanGoldTokens float64  `json:"mean_gold_tokens,omitempty"`
	EOSWithin2x    *float64 `json:"eos_within_2x_gold,omitempty"`
	// GoldNLL is the mean negative log-likelihood per token (nats) of the
	// golds and the end-of-generation token after the method's input
	// (Predictor.GoldNLL), over GoldTokens tokens; nil without golds or
	// with RunOptions.NoNLL.
	GoldNLL    *float64 `json:"gold_nll_per_token,omitempty"`
	GoldTokens int      `json:"gold_nll_tokens,omitempty"`
}

// Report is the outcome of Run: what was evaluated and one Result per
// completed method.
type Report struct {
	Task          lamp.Task `json:"task"`
	QuestionsFile string    `json:"questions_file"`
	GoldsFile     string    `json:"golds_file,omitempty"`
	Model         string    `json:"model,omitempty"`
	Plug          string    `json:"plug,omitempty"`
	Encoder       string    `json:"encoder,omitempty"`
	K             int       `json:"k"`
	// PlugK is the number of BM25 items of pplug+bm25: the plug's
	// retrieve_k, else 1.
	PlugK     int      `json:"plug_k,omitempty"`
	MaxNew    int      `json:"max_new_tokens"`
	Chat      bool     `json:"chat,omitempty"`
	Limit     int      `json:"limit,omitempty"`
	Questions int      `json:"questions"`
	Results   []Result `json:"results"`
}

// Markdown renders the report as a table: one row per method, the task's
// metrics (when scored), the number of questions and seconds per question.
func (r Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s, %d questions from %s", r.Task, r.Questions, filepath.Base(r.QuestionsFile))
	if r.Model != "" {
		fmt.Fprintf(&b, ", model %s", filepath.Base(r.Model))
	}
	if r.Plug != "" {
		fmt.Fprintf(&b, ", plug %s", filepath.Base(r.Plug))
	}
	fmt.Fprintf(&b, ", k %d", r.K)
	if r.PlugK > 0 {
		fmt.Fprintf(&b, " (pplug+bm25: %d)", r.PlugK)
	}
	fmt.Fprintf(&b, ", max %d new tokens\n\n", r.MaxNew)
	scored := false
	for _, res := range r.Results {
		scored = scored || res.Scores != nil
	}
	var metrics []lamp.Metric
	if scored {
		metrics = r.Task.Metrics()
	}
	b.WriteString("| method |")
	for _, m := range metrics {
		b.WriteString(" " + string(m) + " |")
	}
	b.WriteString(" nll/token | out tokens | EOS | EOS <= 2x gold | n | s/question |\n| --- |")
	for range metrics {
		b.WriteString(" ---: |")
	}
	b.WriteString(" ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, res := range r.Results {
		b.WriteString("| " + string(res.Method) + " |")
		for _, m := range metrics {
			var v float64
			ok := false
			if res.Scores != nil {
				v, ok = res.Scores.Get(m)
			}
			if ok {
				b.WriteString(" " + strconv.FormatFloat(v, 'f', 4, 64) + " |")
			} else {
				b.WriteString(" - |")
			}
		}
		opt := func(v *float64, f string) string {
			if v == nil {
				return "-"
			}
			return fmt.Sprintf(f, *v)
		}
		fmt.Fprintf(&b, " %s | %.1f | %.2f | %s | %d | %.3f |\n", opt(res.GoldNLL, "%.4f"), res.MeanOutputTokens, res.EOSShare,
			opt(res.EOSWithin2x, "%.2f"), res.Questions, res.SecondsPerQuestion)
	}
	return b.String()
}

// WriteFiles writes results.json and results.md into dir, atomically.
func (r Report) WriteFiles(dir string) error {
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	js = append(js, '\n')
	if err := atomicfile.Write(filepath.Join(dir, "results.json"), func(w io.Writer) error {
		_, err := w.Write(js)
		return err
	}); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, "results.md"), func(w io.Writer) error {
		_, err := io.WriteString(w, r.Markdown())
		return err
	})
}

// ReadReport reads a results.json file.
func ReadReport(path string) (Report, error) {
	var r Report
	b, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(&r); err != nil {
		return r, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// RunOptions configure Run.
type RunOptions struct {
	Methods       []Method
	QuestionsFile string
	// Golds, when not nil, are scored against (they must cover every
	// evaluated question; others are ignored). GoldsFile names them in the
	// report.
	Golds     []lamp.Output
	GoldsFile string
	// Labels are the answers of a generic classification task (see
	// lamp.ScoreOptions).
	Labels []string
	// Limit evaluates only the first Limit questions (0: all).
	Limit int
	// OutDir receives <method>_outputs.json, results.json and results.md.
	OutDir string
	// Report is the report's header (Model, Plug, ...); Run fills in the
	// task, files, counts and results.
	Report Report
	// Progress is called after each question.
	Progress func(m Method, done, total int, elapsed time.Duration)
	// MethodDone is called when a method's files are written.
	MethodDone func(Result)
	// NoNLL skips the golds' likelihood under each method (Result.GoldNLL).
	NoNLL bool
}

// Run evaluates each method in turn over the questions file (streamed),
// writes each method's predictions as soon as it completes, scores them
// when golds are given and rewrites results.json and results.md after each
// method. On cancellation it returns the report of the completed methods
// (whose files are written) with the context's error.
func Run(ctx context.Context, p *Predictor, o RunOptions) (Report, error) {
	rep := o.Report
	rep.Task, rep.QuestionsFile, rep.GoldsFile, rep.Limit = p.Task, o.QuestionsFile, o.GoldsFile, o.Limit
	rep.K, rep.MaxNew, rep.Chat = p.k(), p.maxNew(), p.Chat
	if p.Personalizer != nil && p.Personalizer.Plug != nil {
		rep.PlugK = p.personalizer(PPlugBM25).RetrieveK()
	}
	rep.Results = nil
	if err := checkRun(p, o); err != nil {
		return rep, err
	}
	// A first pass checks the whole (limited) file and the golds before any
	// generation.
	ids, err := QuestionIDs(o.QuestionsFile, o.Limit)
	if err != nil {
		return rep, err
	}
	rep.Questions = len(ids)
	g, err := runGolds(p.LLM, o, ids)
	if err != nil {
		return rep, err
	}
	if err := os.MkdirAll(o.OutDir, 0o777); err != nil {
		return rep, err
	}
	for _, m := range o.Methods {
		res, err := runMethod(ctx, p, o, m, ids, g)
		if err != nil {
			return rep, err
		}
		rep.Results = append(rep.Results, res)
		if err := rep.WriteFiles(o.OutDir); err != nil {
			return rep, fmt.Errorf("write the results: %w", err)
		}
		if o.MethodDone != nil {
			o.MethodDone(res)
		}
	}
	return rep, nil
}

// checkRun checks Run's task, methods and limit.
func checkRun(p *Predictor, o RunOptions) error {
	if !p.Task.Valid() {
		return errors.New("eval: no valid task")
	}
	if len(o.Methods) == 0 {
		return errors.New("eval: no methods")
	}
	for _, m := range o.Methods {
		if !m.Valid() {
			return fmt.Errorf("eval: unknown method %q", m)
		}
		if m.NeedsPlug() && p.Personalizer == nil {
			return fmt.Errorf("eval: method %s needs a Persona-Plug plug-in", m)
		}
	}
	if o.Limit < 0 {
		return errors.New("eval: the limit must not be negative")
	}
	return nil
}

// runGoldSet are the golds of the evaluated questions (nil without
// golds), by id with their length in tokens.
type runGoldSet struct {
	golds []lamp.Output
	text  map[string]string
	len   map[string]int
}

func runGolds(m *llama.Model, o RunOptions, ids []string) (runGoldSet, error) {
	g := runGoldSet{text: map[string]string{}, len: map[string]int{}}
	if o.Golds == nil {
		return g, nil
	}
	var err error
	if g.golds, err = GoldsFor(o.Golds, ids); err != nil {
		if o.GoldsFile != "" {
			err = fmt.Errorf("%s: %w", o.GoldsFile, err)
		}
		return g, err
	}
	for _, gold := range g.golds {
		toks, err := m.Tokenize(gold.Output, false, false)
		if err != nil {
			return g, fmt.Errorf("tokenize the gold of %q: %w", gold.ID, err)
		}
		g.text[gold.ID], g.len[gold.ID] = gold.Output, len(toks)
	}
	return g, nil
}

// methodTally is what runMethod counts over the questions.
type methodTally struct {
	eos, within, goldTokens int
	nllSum                  float64
}

// runMethod answers every question with method m, writes its predictions
// and scores them.
func runMethod(ctx context.Context, p *Predictor, o RunOptions, m Method, ids []string, g runGoldSet) (Result, error) {
	res := Result{Method: m, Predictions: OutputsFile(m)}
	preds := make([]lamp.Output, 0, len(ids))
	var tally methodTally
	t0 := time.Now()
	err := lamp.ScanQuestions(o.QuestionsFile, func(q lamp.Question) error {
		if len(preds) == len(ids) {
			return errStop
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		pr, err := p.Predict(ctx, m, q)
		if err == nil {
			err = tally.add(ctx, p, o, m, q, pr, g, &res)
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("method %s, question %q: %w", m, q.ID, err)
		}
		preds = append(preds, lamp.Output{ID: q.ID, Output: pr.Output})
		if o.Progress != nil {
			o.Progress(m, len(preds), len(ids), time.Since(t0))
		}
		return nil
	})
	if err != nil && err != errStop {
		return res, err
	}
	if len(preds) != len(ids) {
		return res, fmt.Errorf("%s changed while it was read: %d questions instead of %d", o.QuestionsFile, len(preds), len(ids))
	}
	res.Questions = len(preds)
	res.Seconds = time.Since(t0).Seconds()
	res.SecondsPerQuestion = res.Seconds / float64(len(preds))
	tally.finish(&res, g.golds != nil && !o.NoNLL, g.golds != nil)
	if err := lamp.WriteOutputs(filepath.Join(o.OutDir, res.Predictions), lamp.Outputs{Task: p.Task.Name(), Golds: preds}); err != nil {
		return res, fmt.Errorf("write the predictions of %s: %w", m, err)
	}
	if g.golds != nil {
		s, err := lamp.ScoreWith(p.Task, g.golds, preds, lamp.ScoreOptions{Labels: o.Labels})
		if err != nil {
			return res, fmt.Errorf("score %s: %w", m, err)
		}
		res.Scores = &s
	}
	return res, nil
}

// add counts one prediction: positions, tokens, EOS, and with golds the
// length check and the gold's likelihood under the method.
func (t *methodTally) add(ctx context.Context, p *Predictor, o RunOptions, m Method, q lamp.Question, pr Prediction, g runGoldSet, res *Result) error {
	res.PromptPositions += pr.PromptPositions
	res.GenTokens += pr.GenTokens
	res.OutputTokens += pr.OutputTokens
	if pr.Truncated {
		res.Truncated++
	}
	if pr.NoProfile {
		res.NoProfile++
	}
	if pr.Stop == llama.StopEOG {
		t.eos++
	}
	if g.golds == nil {
		return nil
	}
	n := g.len[q.ID]
	t.goldTokens += n
	if pr.Stop == llama.StopEOG && pr.OutputTokens <= 2*n {
		t.within++
	}
	if o.NoNLL {
		return nil
	}
	s, nt, err := p.GoldNLL(ctx, m, q, g.text[q.ID])
	if err != nil {
		return fmt.Errorf("gold likelihood: %w", err)
	}
	t.nllSum += s
	res.GoldTokens += nt
	return nil
}

// finish turns the counts into the result's means and shares.
func (t *methodTally) finish(res *Result, nll, golds bool) {
	nq := float64(res.Questions)
	res.MeanOutputTokens = float64(res.OutputTokens) / nq
	res.EOSShare = float64(t.eos) / nq
	if !golds {
		return
	}
	res.MeanGoldTokens = float64(t.goldTokens) / nq
	w := float64(t.within) / nq
	res.EOSWithin2x = &w
	if nll && res.GoldTokens > 0 {
		v := t.nllSum / float64(res.GoldTokens)
		res.GoldNLL = &v
	}
}

// errStop ends a scan early.
var errStop = errors.New("stop")

// QuestionIDs reads the ids of the first limit questions of a questions
// file (all of them when limit is 0), checking every one of those
// questions. Duplicate ids and a file without questions are errors.
func QuestionIDs(path string, limit int) ([]string, error) {
	var ids []string
	seen := map[string]bool{}
	err := lamp.ScanQuestions(path, func(q lamp.Question) error {
		if limit > 0 && len(ids) == limit {
			return errStop
		}
		if seen[q.ID] {
			return fmt.Errorf("lamp: %s: duplicate question id %q", path, q.ID)
		}
		seen[q.ID] = true
		ids = append(ids, q.ID)
		return nil
	})
	if err != nil && err != errStop {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("%s holds no questions", path)
	}
	return ids, nil
}

// GoldsFor returns the golds of the given question ids, in that order. A
// question without a gold is an error that lists them; a duplicated gold id
// is an error too.
func GoldsFor(golds []lamp.Output, ids []string) ([]lamp.Output, error) {
	byID := make(map[string]string, len(golds))
	for _, g := range golds {
		if _, dup := byID[g.ID]; dup {
			return nil, fmt.Errorf("duplicate gold id %q", g.ID)
		}
		byID[g.ID] = g.Output
	}
	out := make([]lamp.Output, 0, len(ids))
	var missing []string
	for _, id := range ids {
		g, ok := byID[id]
		if !ok {
			missing = append(missing, strconv.Quote(id))
			continue
		}
		out = append(out, lamp.Output{ID: id, Output: g})
	}
	if n := len(missing); n > 0 {
		if n > 10 {
			missing = append(missing[:10], fmt.Sprintf("and %d more", n-10))
		}
		return nil, fmt.Errorf("%d of %d questions have no gold output: %s", n, len(ids), strings.Join(missing, ", "))
	}
	return out, nil
}
