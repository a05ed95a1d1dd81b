package lamp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Scores holds the results of scoring one task.
type Scores struct {
	Task Task
	// N is the number of scored examples (the number of golds).
	N int
	// Values holds one value per metric of Task.Metrics().
	Values map[Metric]float64
	// Invalid counts predictions that could not be read as an answer:
	// outside the label set for LaMP-1/2, not a finite number for LaMP-3.
	// They are scored as the official scorer scores them (see Score).
	Invalid int
	// Extra counts predictions whose id has no gold; they are ignored.
	Extra int
	// Skipped counts golds left unscored for want of a prediction
	// (ScoreOptions.OnlyPredicted).
	Skipped int
	// Warnings describe anything unusual that did not stop scoring.
	Warnings []string
	// metrics are the metrics computed, in report order (nil: the task's).
	metrics []Metric
}

// Metrics are the metrics computed, in report order: the task's, or, for
// a generic task scored against a label list, accuracy and F1.
func (s Scores) Metrics() []Metric {
	if s.metrics != nil {
		return s.metrics
	}
	return s.Task.Metrics()
}

// Get returns the value of metric m and whether it was computed.
func (s Scores) Get(m Metric) (float64, bool) {
	v, ok := s.Values[m]
	return v, ok
}

// MarshalJSON encodes the scores as an object with, in this order, "task",
// "n", the task's metrics (named as the Metric constants: "accuracy", "f1",
// "mae", "rmse", "rouge-1", "rouge-l"; only those of the task) and, when not
// zero, "invalid_predictions" and "extra_predictions". Warnings are not
// encoded.
func (s Scores) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`{"task":`)
	name, _ := json.Marshal(s.Task.Name())
	b.Write(name)
	b.WriteString(`,"n":`)
	b.WriteString(strconv.Itoa(s.N))
	for _, m := range s.Metrics() {
		v, ok := s.Values[m]
		if !ok {
			continue
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("lamp: metric %s is not finite", m)
		}
		fmt.Fprintf(&b, `,%q:%s`, string(m), strconv.FormatFloat(v, 'g', -1, 64))
	}
	if s.Invalid != 0 {
		fmt.Fprintf(&b, `,"invalid_predictions":%d`, s.Invalid)
	}
	if s.Extra != 0 {
		fmt.Fprintf(&b, `,"extra_predictions":%d`, s.Extra)
	}
	if s.Skipped != 0 {
		fmt.Fprintf(&b, `,"unpredicted_golds":%d`, s.Skipped)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalJSON reads what MarshalJSON writes.
func (s *Scores) UnmarshalJSON(data []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return err
	}
	var out Scores
	if raw, ok := m["task"]; ok {
		var name string
		if err := json.Unmarshal(raw, &name); err != nil {
			return fmt.Errorf("lamp: scores: task: %w", err)
		}
		t, err := ParseTask(name)
		if err != nil {
			return err
		}
		out.Task = t
	}
	ints := map[string]*int{"n": &out.N, "invalid_predictions": &out.Invalid, "extra_predictions": &out.Extra, "unpredicted_golds": &out.Skipped}
	for k, p := range ints {
		if raw, ok := m[k]; ok {
			if err := json.Unmarshal(raw, p); err != nil {
				return fmt.Errorf("lamp: scores: %s: %w", k, err)
			}
		}
	}
	for _, metric := range []Metric{Accuracy, F1, MAE, RMSE, Rouge1, RougeL} {
		raw, ok := m[string(metric)]
		if !ok {
			continue
		}
		var v float64
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("lamp: scores: %s: %w", metric, err)
		}
		if out.Values == nil {
			out.Values = make(map[Metric]float64)
		}
		out.Values[metric] = v
		out.metrics = append(out.metrics, metric)
	}
	*s = out
	return nil
}

// MarkdownHeader returns the header and separator lines of a markdown table
// whose rows are MarkdownRow: "| task | accuracy | f1 |" and
// "| --- | ---: | ---: |", joined by a newline.
func (s Scores) MarkdownHeader() string {
	var h, sep strings.Builder
	h.WriteString("| task |")
	sep.WriteString("| --- |")
	for _, m := range s.Metrics() {
		h.WriteString(" " + string(m) + " |")
		sep.WriteString(" ---: |")
	}
	return h.String() + "\n" + sep.String()
}

// MarkdownRow returns one markdown table row: the task name and each
// metric with four decimals, e.g. "| LaMP_2 | 0.5590 | 0.4950 |". A metric
// without a value is shown as "-".
func (s Scores) MarkdownRow() string {
	var b strings.Builder
	b.WriteString("| " + s.Task.String() + " |")
	for _, m := range s.Metrics() {
		if v, ok := s.Values[m]; ok {
			b.WriteString(" " + strconv.FormatFloat(v, 'f', 4, 64) + " |")
		} else {
			b.WriteString(" - |")
		}
	}
	return b.String()
}

// maxListed bounds the ids listed in an error message.
const maxListed = 20

func listIDs(ids []string) string {
	var b strings.Builder
	for i, id := range ids {
		if i == maxListed {
			fmt.Fprintf(&b, " and %d more", len(ids)-maxListed)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(id))
	}
	return b.String()
}

// Score scores predictions against golds exactly as the official LaMP
// scorer does, with errors where it would crash:
//
//   - Golds and predictions are matched by id. Every gold needs a prediction
//     (missing ones are an error that lists them); predictions for ids with
//     no gold are ignored and counted in Scores.Extra. Duplicate gold ids
//     are an error; for duplicate prediction ids the last one is used.
//   - Both sides are only stripped of surrounding white space (PyStrip).
//   - Classification (LaMP-1, LaMP-2): the label is matched exactly and
//     case-sensitively against Task.Labels(); anything else is label -1 and
//     wrong. Accuracy is the share of exact matches. F1 is sklearn's macro
//     F1 over all labels of the task: per label 2TP/(2TP+FP+FN), 0 when
//     that is 0/0 (a label nobody predicted and no gold has still counts),
//     averaged over the labels. A prediction of -1 is a false negative for
//     its gold's label and a false positive for no label. A gold outside
//     the label set is an error (the official scorer would silently map it
//     to -1, where it would match any invalid prediction).
//   - LaMP-3: MAE and RMSE of the ratings. A prediction that Python's
//     float() cannot parse is replaced by whichever of 1 and 5 is farther
//     from the gold: 1 when |1-g| > |5-g|, else 5, so a gold of 3 gives 5.
//     Predictions that parse to NaN or ±Inf are replaced in the same way
//     (the official scorer would crash on them). A gold that is not a
//     finite number is an error.
//   - Generation (LaMP-4, 5, 7): the mean over examples of the ROUGE-1 and
//     ROUGE-L F-measures (Rouge1Score, RougeLScore). The official scorer
//     goes through Hugging Face evaluate, which reports the median of
//     bootstrap resamples of this mean; it differs from the plain mean only
//     by resampling noise.
//   - Generic: ROUGE as for generation; with ScoreOptions.Labels and every
//     gold among them, accuracy and macro F1 over those labels instead, as
//     for classification.
func Score(task Task, golds, preds []Output) (Scores, error) {
	return ScoreWith(task, golds, preds, ScoreOptions{})
}

// ScoreOptions refine ScoreWith.
type ScoreOptions struct {
	// Labels are the answers of a generic classification task (see Score).
	Labels []string
	// OnlyPredicted scores only the golds that have a prediction (a run
	// over part of the questions, eval --limit) instead of refusing the
	// others; Scores.Skipped counts those left out.
	OnlyPredicted bool
}

// ScoreWith is Score with options.
func ScoreWith(task Task, golds, preds []Output, o ScoreOptions) (Scores, error) {
	if !task.Valid() {
		return Scores{}, errors.New("lamp: Score: invalid task")
	}
	if len(golds) == 0 {
		return Scores{}, errors.New("lamp: Score: no golds to score against")
	}
	s := Scores{Task: task, N: len(golds), Values: make(map[Metric]float64)}

	goldIdx := make(map[string]int, len(golds))
	var dups []string
	for i, g := range golds {
		if _, ok := goldIdx[g.ID]; ok {
			dups = append(dups, g.ID)
			continue
		}
		goldIdx[g.ID] = i
	}
	if len(dups) > 0 {
		return Scores{}, fmt.Errorf("lamp: Score: duplicate gold ids: %s", listIDs(dups))
	}
	pred := make(map[string]string, len(preds))
	var dupPreds []string
	for _, p := range preds {
		if _, ok := pred[p.ID]; ok {
			dupPreds = append(dupPreds, p.ID)
		}
		pred[p.ID] = p.Output
		if _, ok := goldIdx[p.ID]; !ok {
			s.Extra++
		}
	}
	if len(dupPreds) > 0 {
		s.Warnings = append(s.Warnings, fmt.Sprintf("duplicate prediction ids (the last one is used): %s", listIDs(dupPreds)))
	}
	if s.Extra > 0 {
		s.Warnings = append(s.Warnings, fmt.Sprintf("%d predictions have ids with no gold and were ignored", s.Extra))
	}
	var missing []string
	var predicted []Output
	for _, g := range golds {
		if _, ok := pred[g.ID]; !ok {
			missing = append(missing, g.ID)
		} else {
			predicted = append(predicted, g)
		}
	}
	switch {
	case len(missing) > 0 && !o.OnlyPredicted:
		return Scores{}, fmt.Errorf("lamp: Score: %d of %d golds have no prediction: %s (a run over part of the questions: score only what was predicted)", len(missing), len(golds), listIDs(missing))
	case len(predicted) == 0:
		return Scores{}, errors.New("lamp: Score: no gold has a prediction")
	case len(missing) > 0:
		s.Skipped, s.N, golds = len(missing), len(predicted), predicted
		s.Warnings = append(s.Warnings, fmt.Sprintf("scored the %d of %d golds that have a prediction", len(predicted), len(predicted)+len(missing)))
	}

	var err error
	switch {
	case task.IsGeneric() && len(o.Labels) > 0 && allLabels(golds, o.Labels):
		s.metrics = []Metric{Accuracy, F1}
		err = scoreLabels(&s, o.Labels, golds, pred)
	case task.Kind() == Classification:
		err = scoreClassification(&s, golds, pred)
	case task.Kind() == Regression:
		err = scoreRegression(&s, golds, pred)
	default:
		scoreGeneration(&s, golds, pred)
	}
	if err != nil {
		return Scores{}, err
	}
	if s.Invalid > 0 {
		s.Warnings = append(s.Warnings, fmt.Sprintf("%d of %d predictions are not valid answers", s.Invalid, s.N))
	}
	return s, nil
}

// allLabels reports whether every gold is one of labels.
func allLabels(golds []Output, labels []string) bool {
	for _, g := range golds {
		if !slices.Contains(labels, PyStrip(g.Output)) {
			return false
		}
	}
	return true
}

func scoreClassification(s *Scores, golds []Output, pred map[string]string) error {
	return scoreLabels(s, s.Task.Labels(), golds, pred)
}

// scoreLabels is accuracy and macro F1 over a label set (see Score).
func scoreLabels(s *Scores, labels []string, golds []Output, pred map[string]string) error {
	nl := len(labels)
	tp := make([]int, nl)
	fp := make([]int, nl)
	fn := make([]int, nl)
	correct := 0
	for _, g := range golds {
		gi := slices.Index(labels, PyStrip(g.Output))
		if gi < 0 {
			return fmt.Errorf("lamp: Score: gold %q of id %q is not a label of %s", g.Output, g.ID, s.Task)
		}
		pi := slices.Index(labels, PyStrip(pred[g.ID]))
		switch {
		case pi == gi:
			correct++
			tp[gi]++
		case pi < 0:
			s.Invalid++
			fn[gi]++
		default:
			fn[gi]++
			fp[pi]++
		}
	}
	f1 := 0.0
	for l := range nl {
		if d := 2*tp[l] + fp[l] + fn[l]; d > 0 {
			f1 += 2 * float64(tp[l]) / float64(d)
		}
	}
	s.Values[Accuracy] = float64(correct) / float64(len(golds))
	s.Values[F1] = f1 / float64(nl)
	return nil
}

// RatingFallback returns the value the official scorer uses for an
// unparsable LaMP-3 prediction: whichever of 1 and 5 is farther from gold,
// 5 on a tie (gold 3).
func RatingFallback(gold float64) float64 {
	if math.Abs(1-gold) > math.Abs(5-gold) {
		return 1
	}
	return 5
}

func scoreRegression(s *Scores, golds []Output, pred map[string]string) error {
	var sumAbs, sumSq float64
	for _, g := range golds {
		gv, ok := ParsePyFloat(PyStrip(g.Output))
		if !ok || math.IsNaN(gv) || math.IsInf(gv, 0) {
			return fmt.Errorf("lamp: Score: gold %q of id %q is not a number", g.Output, g.ID)
		}
		pv, ok := ParsePyFloat(PyStrip(pred[g.ID]))
		if !ok || math.IsNaN(pv) || math.IsInf(pv, 0) {
			s.Invalid++
			pv = RatingFallback(gv)
		}
		d := pv - gv
		sumAbs += math.Abs(d)
		sumSq += d * d
	}
	n := float64(len(golds))
	s.Values[MAE] = sumAbs / n
	s.Values[RMSE] = math.Sqrt(sumSq / n)
	return nil
}

func scoreGeneration(s *Scores, golds []Output, pred map[string]string) {
	var r1, rl float64
	for _, g := range golds {
		gt := RougeTokens(PyStrip(g.Output))
		pt := RougeTokens(PyStrip(pred[g.ID]))
		r1 += rouge1Tokens(gt, pt).F
		rl += rougeLTokens(gt, pt).F
	}
	n := float64(len(golds))
	s.Values[Rouge1] = r1 / n
	s.Values[RougeL] = rl / n
}

// ScoreFiles scores a predictions file against an outputs (golds) file.
// When task is the zero Task it is taken from the golds file's "task".
// A task name in either file that names another task number is an error;
// a predictions file whose task name cannot be parsed only adds a warning.
func ScoreFiles(task Task, goldsPath, predsPath string) (Scores, error) {
	return ScoreFilesWith(task, goldsPath, predsPath, ScoreOptions{})
}

// ScoreFilesWith is ScoreFiles with options; the golds file's "labels"
// serve when o.Labels is empty.
func ScoreFilesWith(task Task, goldsPath, predsPath string, o ScoreOptions) (Scores, error) {
	golds, err := ReadOutputs(goldsPath)
	if err != nil {
		return Scores{}, err
	}
	preds, err := ReadOutputs(predsPath)
	if err != nil {
		return Scores{}, err
	}
	var warnings []string
	if !task.Valid() {
		task, err = golds.ParsedTask()
		if err != nil {
			return Scores{}, fmt.Errorf("lamp: %s: cannot tell the task (%v); name it explicitly", goldsPath, err)
		}
	} else if golds.Task != "" {
		gt, err := golds.ParsedTask()
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("%s: unknown task name %q", goldsPath, golds.Task))
		} else if !gt.SameAs(task) && !task.IsGeneric() {
			return Scores{}, fmt.Errorf("lamp: %s holds %s golds, not %s", goldsPath, golds.Task, task)
		}
	}
	if preds.Task != "" {
		pt, err := preds.ParsedTask()
		if _, perr := ParseTask(preds.Task); perr != nil && err == nil {
			err = perr // named no task; scored as the golds say
		}
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("%s: unknown task name %q", predsPath, preds.Task))
		} else if !pt.SameAs(task) && !task.IsGeneric() && !pt.IsGeneric() {
			return Scores{}, fmt.Errorf("lamp: %s holds %s predictions, not %s", predsPath, preds.Task, task)
		}
	}
	if len(o.Labels) == 0 {
		o.Labels = golds.Labels
	}
	s, err := ScoreWith(task, golds.Golds, preds.Golds, o)
	if err != nil {
		return Scores{}, fmt.Errorf("%w (golds %s, predictions %s)", err, goldsPath, predsPath)
	}
	s.Warnings = append(warnings, s.Warnings...)
	return s, nil
}
