package lamp

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// outs builds outputs from alternating id, output strings.
func outs(kv ...string) []Output {
	var o []Output
	for i := 0; i+1 < len(kv); i += 2 {
		o = append(o, Output{ID: kv[i], Output: kv[i+1]})
	}
	return o
}

func TestScoreClassification(t *testing.T) {
	tests := []struct {
		name    string
		task    Task
		golds   []Output
		preds   []Output
		acc, f1 float64
		invalid int
	}{
		{
			// [1]: tp a, fp b, fn c -> 2/4; [2]: tp d, fn b -> 2/3; macro 7/12.
			name:  "lamp1 mixed",
			task:  LaMP1,
			golds: outs("a", "[1]", "b", "[2]", "c", "[1]", "d", "[2]"),
			preds: outs("a", " [1]\n", "b", "[1]", "c", "[3]", "d", "[2]"),
			acc:   0.5, f1: 7.0 / 12, invalid: 1,
		},
		{
			name:  "lamp1 perfect",
			task:  LaMP1,
			golds: outs("a", "[1]", "b", "[2]"),
			preds: outs("b", "[2]", "a", "[1]"),
			acc:   1, f1: 1,
		},
		{
			// Only [1] occurs: its F1 is 1, [2] has no support and no
			// predictions and still counts as 0.
			name:  "lamp1 label without support",
			task:  LaMP1,
			golds: outs("a", "[1]"),
			preds: outs("a", "[1]"),
			acc:   1, f1: 0.5,
		},
		{
			// comedy: tp 1, fn 1 -> 2/3; action: 1; the 13 other tags 0.
			name:  "lamp2 case mismatch",
			task:  LaMP2,
			golds: outs("1", "comedy", "2", "comedy", "3", "action"),
			preds: outs("1", "comedy", "2", "Comedy", "3", "action"),
			acc:   2.0 / 3, f1: (2.0/3 + 1) / 15, invalid: 1,
		},
		{
			name:  "lamp2 empty and whitespace predictions",
			task:  LaMP2,
			golds: outs("1", "comedy", "2", "action"),
			preds: outs("1", "", "2", " \t\n"),
			acc:   0, f1: 0, invalid: 2,
		},
		{
			// Python strips NBSP, ideographic space and \x1c; not ZWSP.
			name:  "lamp2 unicode whitespace",
			task:  LaMP2,
			golds: outs("1", "comedy", "2", "action", "3", "classic"),
			preds: outs("1", "\u00a0comedy\u3000", "2", "\x1caction", "3", "\u200bclassic"),
			acc:   2.0 / 3, f1: (1 + 1 + 0) / 15.0, invalid: 1,
		},
		{
			// gold strip too; wrong valid label: fp for the predicted one.
			// romance: tp 1 -> 1; comedy: fn 1, dystopia: fp 1 -> 0.
			name:  "lamp2 wrong label",
			task:  LaMP2,
			golds: outs("1", " romance ", "2", "comedy"),
			preds: outs("1", "romance", "2", "dystopia"),
			acc:   0.5, f1: 1.0 / 15,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Score(tc.task, tc.golds, tc.preds)
			if err != nil {
				t.Fatal(err)
			}
			if !near(s.Values[Accuracy], tc.acc) || !near(s.Values[F1], tc.f1) {
				t.Errorf("accuracy %v, f1 %v; want %v, %v", s.Values[Accuracy], s.Values[F1], tc.acc, tc.f1)
			}
			if s.Invalid != tc.invalid || s.N != len(tc.golds) || len(s.Values) != 2 {
				t.Errorf("invalid %d, n %d, values %v", s.Invalid, s.N, s.Values)
			}
		})
	}
}

func TestScoreRegression(t *testing.T) {
	tests := []struct {
		name      string
		golds     []Output
		preds     []Output
		mae, rmse float64
		invalid   int
	}{
		{
			// abc vs 2 -> 5 (err 3); abc vs 4 -> 1 (err 3); "" vs 3 -> 5 on
			// the tie (err 2); 4.5 vs 5 (0.5); 1 vs 1 (0).
			name:  "fallbacks",
			golds: outs("a", "2", "b", "4", "c", "3", "d", "5", "e", "1"),
			preds: outs("a", "abc", "b", "abc", "c", "", "d", " 4.5 ", "e", "1"),
			mae:   8.5 / 5, rmse: math.Sqrt(22.25 / 5), invalid: 3,
		},
		{
			// gold 1 -> 5 (err 4); gold 5 -> 1 (err 4).
			name:  "extremes",
			golds: outs("a", "1", "b", "5"),
			preds: outs("a", "one", "b", "five stars"),
			mae:   4, rmse: 4, invalid: 2,
		},
		{
			// nan and inf count as unparsable; 1e0 and ٣ parse; values are not clipped.
			name:  "python float forms",
			golds: outs("a", "2", "b", "4", "c", "3", "d", "2", "e", "5"),
			preds: outs("a", "nan", "b", "inf", "c", "1e0", "d", "٣", "e", "10"),
			mae:   (3 + 3 + 2 + 1 + 5) / 5.0, rmse: math.Sqrt((9 + 9 + 4 + 1 + 25) / 5.0), invalid: 2,
		},
		{
			name:  "perfect",
			golds: outs("a", "3", "b", " 4\n"),
			preds: outs("a", "3.0", "b", "4"),
			mae:   0, rmse: 0,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Score(LaMP3, tc.golds, tc.preds)
			if err != nil {
				t.Fatal(err)
			}
			if !near(s.Values[MAE], tc.mae) || !near(s.Values[RMSE], tc.rmse) {
				t.Errorf("mae %v, rmse %v; want %v, %v", s.Values[MAE], s.Values[RMSE], tc.mae, tc.rmse)
			}
			if s.Invalid != tc.invalid {
				t.Errorf("invalid %d, want %d", s.Invalid, tc.invalid)
			}
		})
	}
}

func TestRatingFallback(t *testing.T) {
	for _, tc := range []struct{ gold, want float64 }{{1, 5}, {2, 5}, {2.9, 5}, {3, 5}, {3.1, 1}, {4, 1}, {5, 1}} {
		if got := RatingFallback(tc.gold); got != tc.want {
			t.Errorf("RatingFallback(%v) = %v, want %v", tc.gold, got, tc.want)
		}
	}
}

func TestScoreGeneration(t *testing.T) {
	golds := outs("1", "Hello, World!", "2", "a b c a", "3", "日本語")
	preds := outs("1", "hello world", "2", "a c b", "3", "日本語")
	// F per example: ROUGE-1 1, 6/7, 0; ROUGE-L 1, 4/7, 0.
	for _, task := range []Task{LaMP4, LaMP5, LaMP7.WithTimeSplit(true)} {
		s, err := Score(task, golds, preds)
		if err != nil {
			t.Fatal(err)
		}
		if !near(s.Values[Rouge1], (1+6.0/7)/3) || !near(s.Values[RougeL], (1+4.0/7)/3) || len(s.Values) != 2 || s.Invalid != 0 {
			t.Errorf("%v: %v", task, s.Values)
		}
	}
}

func TestScoreErrors(t *testing.T) {
	tests := []struct {
		name  string
		task  Task
		golds []Output
		preds []Output
		want  string
	}{
		{"invalid task", Task{}, outs("1", "x"), outs("1", "x"), "invalid task"},
		{"no golds", LaMP4, nil, outs("1", "x"), "no golds"},
		{"missing predictions", LaMP4, outs("1", "a", "2", "b", "3", "c"), outs("2", "b"), `2 of 3 golds have no prediction: "1", "3"`},
		{"duplicate gold", LaMP4, outs("1", "a", "1", "b"), outs("1", "a"), `duplicate gold ids: "1"`},
		{"gold not a label", LaMP2, outs("1", "Comedy"), outs("1", "comedy"), `gold "Comedy" of id "1" is not a label of LaMP_2`},
		{"gold not a number", LaMP3, outs("1", "x"), outs("1", "3"), `gold "x" of id "1" is not a number`},
		{"gold nan", LaMP3, outs("1", "nan"), outs("1", "3"), "is not a number"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Score(tc.task, tc.golds, tc.preds)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	// Long lists are cut.
	var golds []Output
	for i := 0; i < 30; i++ {
		golds = append(golds, Output{ID: string(rune('A' + i)), Output: "x"})
	}
	_, err := Score(LaMP4, golds, nil)
	if err == nil || !strings.Contains(err.Error(), "and 10 more") {
		t.Errorf("error %v", err)
	}
}

func TestScoreExtraAndDuplicatePredictions(t *testing.T) {
	golds := outs("1", "comedy", "2", "action")
	preds := outs("1", "action", "1", "comedy", "2", "action", "9", "comedy", "10", "x")
	s, err := Score(LaMP2, golds, preds)
	if err != nil {
		t.Fatal(err)
	}
	if s.Values[Accuracy] != 1 || s.Extra != 2 || s.Invalid != 0 {
		t.Errorf("scores %+v", s)
	}
	joined := strings.Join(s.Warnings, "\n")
	if !strings.Contains(joined, `duplicate prediction ids (the last one is used): "1"`) || !strings.Contains(joined, "2 predictions have ids with no gold") {
		t.Errorf("warnings %q", s.Warnings)
	}
}

func TestScoresJSONAndMarkdown(t *testing.T) {
	s, err := Score(LaMP2.WithTimeSplit(true), outs("1", "comedy", "2", "comedy", "3", "action"), outs("1", "comedy", "2", "Comedy", "3", "action"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"task":"LaMP_time_2","n":3,"accuracy":0.6666666666666666,"f1":0.1111111111111111,"invalid_predictions":1}`
	if string(b) != want {
		t.Errorf("JSON\n%s\nwant\n%s", b, want)
	}
	var back Scores
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Task != s.Task || back.N != 3 || back.Invalid != 1 || back.Values[Accuracy] != s.Values[Accuracy] || back.Values[F1] != s.Values[F1] || len(back.Values) != 2 {
		t.Errorf("round trip %+v", back)
	}
	if v, ok := s.Get(F1); !ok || v != s.Values[F1] {
		t.Error("Get(F1)")
	}
	if _, ok := s.Get(MAE); ok {
		t.Error("Get(MAE) on a classification task")
	}
	if got := s.MarkdownHeader(); got != "| task | accuracy | f1 |\n| --- | ---: | ---: |" {
		t.Errorf("header %q", got)
	}
	if got := s.MarkdownRow(); got != "| LaMP_time_2 | 0.6667 | 0.1111 |" {
		t.Errorf("row %q", got)
	}

	g, err := Score(LaMP3, outs("1", "3"), outs("1", "4", "2", "5"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = json.Marshal(g)
	if string(b) != `{"task":"LaMP_3","n":1,"mae":1,"rmse":1,"extra_predictions":1}` {
		t.Errorf("JSON %s", b)
	}
	r, err := Score(LaMP7, outs("1", "a b"), outs("1", "a b"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = json.Marshal(r)
	if string(b) != `{"task":"LaMP_7","n":1,"rouge-1":1,"rouge-l":1}` {
		t.Errorf("JSON %s", b)
	}
	if got := r.MarkdownHeader() + "\n" + r.MarkdownRow(); got != "| task | rouge-1 | rouge-l |\n| --- | ---: | ---: |\n| LaMP_7 | 1.0000 | 1.0000 |" {
		t.Errorf("markdown %q", got)
	}
	partial := Scores{Task: LaMP7, Values: map[Metric]float64{Rouge1: 0.5}}
	if got := partial.MarkdownRow(); got != "| LaMP_7 | 0.5000 | - |" {
		t.Errorf("row %q", got)
	}
	if _, err := json.Marshal(Scores{Task: LaMP3, Values: map[Metric]float64{MAE: math.NaN()}}); err == nil {
		t.Error("NaN metric should not marshal")
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestScoreFiles(t *testing.T) {
	dir := t.TempDir()
	golds := writeFile(t, dir, "golds.json", `{"task": "LaMP_time_3", "golds": [{"id": "1", "output": "3"}, {"id": "2", "output": 5}]}`)
	preds := writeFile(t, dir, "preds.json", `{"task": "LaMP_time_3", "golds": [{"id": "2", "output": "4"}, {"id": "1", "output": "x"}]}`)
	s, err := ScoreFiles(Task{}, golds, preds)
	if err != nil {
		t.Fatal(err)
	}
	// x vs 3 -> 5 (err 2); 4 vs 5 (err 1).
	if s.Task.Name() != "LaMP_time_3" || !near(s.Values[MAE], 1.5) || !near(s.Values[RMSE], math.Sqrt(2.5)) || s.Invalid != 1 {
		t.Errorf("scores %+v", s)
	}
	if _, err := ScoreFiles(LaMP3, golds, preds); err != nil {
		t.Errorf("explicit task: %v", err)
	}
	if _, err := ScoreFiles(LaMP2, golds, preds); err == nil || !strings.Contains(err.Error(), "holds LaMP_time_3 golds, not LaMP_2") {
		t.Errorf("task mismatch error %v", err)
	}
	other := writeFile(t, dir, "other.json", `{"task": "LaMP_2", "golds": [{"id": "1", "output": "3"}, {"id": "2", "output": "4"}]}`)
	if _, err := ScoreFiles(Task{}, golds, other); err == nil || !strings.Contains(err.Error(), "holds LaMP_2 predictions") {
		t.Errorf("prediction task mismatch error %v", err)
	}
	// Golds that name no task are a generic task, scored with ROUGE.
	noTask := writeFile(t, dir, "notask.json", `{"golds": [{"id": "1", "output": "3"}, {"id": "2", "output": "4"}]}`)
	if s, err := ScoreFiles(Task{}, noTask, preds); err != nil || !s.Task.IsGeneric() || !slices.Equal(s.Metrics(), []Metric{Rouge1, RougeL}) || !near(s.Values[Rouge1], 0.5) {
		t.Errorf("no task: %+v %v", s, err)
	}
	odd := writeFile(t, dir, "odd.json", `{"task": "my-run", "golds": [{"id": "1", "output": "3"}, {"id": "2", "output": "4"}]}`)
	s, err = ScoreFiles(Task{}, golds, odd)
	if err != nil || len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], `unknown task name "my-run"`) {
		t.Errorf("odd task name: %v, %q", err, s.Warnings)
	}
	missing := writeFile(t, dir, "missing.json", `{"task": "LaMP_3", "golds": [{"id": "2", "output": "4"}]}`)
	if _, err := ScoreFiles(Task{}, golds, missing); err == nil || !strings.Contains(err.Error(), `1 of 2 golds have no prediction: "1"`) || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("missing error %v", err)
	}
	if _, err := ScoreFiles(Task{}, filepath.Join(dir, "nope.json"), preds); err == nil {
		t.Error("absent golds file")
	}
}

// TestScoreGenericAndPartial: a generic task is scored with ROUGE, or by
// exact match when every gold is one of the labels; a partial run scores
// the golds it predicted when asked to.
func TestScoreGenericAndPartial(t *testing.T) {
	golds := []Output{{"a", "positive"}, {"b", "negative"}, {"c", "positive"}, {"d", "neutral"}}
	preds := []Output{{"a", "positive"}, {"b", "positive"}, {"c", " positive "}, {"d", "meh"}}
	s, err := ScoreWith(Generic, golds, preds, ScoreOptions{Labels: []string{"positive", "negative", "neutral"}})
	if err != nil || !slices.Equal(s.Metrics(), []Metric{Accuracy, F1}) || !near(s.Values[Accuracy], 0.5) || s.Invalid != 1 {
		t.Fatalf("labels: %+v %v", s, err)
	}
	// F1: positive 2*2/(4+1) = 0.8, negative 0, neutral 0 -> 0.8/3.
	if !near(s.Values[F1], 0.8/3) {
		t.Errorf("f1 %v", s.Values[F1])
	}
	js, _ := json.Marshal(s)
	if !strings.Contains(string(js), `"task":"generic"`) || !strings.Contains(string(js), `"accuracy":0.5`) || strings.Contains(string(js), "rouge") {
		t.Errorf("json %s", js)
	}
	// A gold outside the labels: free text, ROUGE.
	s, err = ScoreWith(Generic, append(golds, Output{"e", "a long answer"}), append(preds, Output{"e", "a long answer"}), ScoreOptions{Labels: []string{"positive", "negative", "neutral"}})
	if err != nil || !slices.Equal(s.Metrics(), []Metric{Rouge1, RougeL}) {
		t.Fatalf("mixed golds: %+v %v", s, err)
	}
	// Partial runs.
	part := preds[:2]
	if _, err := Score(Generic, golds, part); err == nil || !strings.Contains(err.Error(), "2 of 4 golds have no prediction") {
		t.Errorf("partial without OnlyPredicted: %v", err)
	}
	s, err = ScoreWith(Generic, golds, part, ScoreOptions{OnlyPredicted: true})
	if err != nil || s.N != 2 || s.Skipped != 2 || !near(s.Values[Rouge1], 0.5) {
		t.Fatalf("only predicted: %+v %v", s, err)
	}
	js, _ = json.Marshal(s)
	if !strings.Contains(string(js), `"unpredicted_golds":2`) {
		t.Errorf("json %s", js)
	}
	if _, err := ScoreWith(Generic, golds, []Output{{"z", "x"}}, ScoreOptions{OnlyPredicted: true}); err == nil {
		t.Error("no prediction at all scored")
	}
	// LaMP tasks keep their own scoring whatever the labels.
	s, err = ScoreWith(LaMP7, golds, preds, ScoreOptions{Labels: []string{"positive"}})
	if err != nil || !slices.Equal(s.Metrics(), []Metric{Rouge1, RougeL}) {
		t.Errorf("LaMP_7 with labels: %+v %v", s, err)
	}
}
