package lamp

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestParseTask(t *testing.T) {
	tests := []struct {
		in   string
		num  int
		time bool
		name string
	}{
		{"LaMP_2", 2, false, "LaMP_2"},
		{"lamp2", 2, false, "LaMP_2"},
		{"LaMP-2", 2, false, "LaMP_2"},
		{"  LAMP 2 ", 2, false, "LaMP_2"},
		{"lamp_time_2", 2, true, "LaMP_time_2"},
		{"LaMP_time_7", 7, true, "LaMP_time_7"},
		{"LaMP-time-3", 3, true, "LaMP_time_3"},
		{"lamptime1", 1, true, "LaMP_time_1"},
		{"5", 5, false, "LaMP_5"},
		{"time_4", 4, true, "LaMP_time_4"},
		{"LaMP.4", 4, false, "LaMP_4"},
	}
	for _, tc := range tests {
		got, err := ParseTask(tc.in)
		if err != nil {
			t.Errorf("ParseTask(%q): %v", tc.in, err)
			continue
		}
		if got.Number() != tc.num || got.TimeSplit() != tc.time || got.Name() != tc.name || got.String() != tc.name {
			t.Errorf("ParseTask(%q) = %v (%d, %v), want %s", tc.in, got, got.Number(), got.TimeSplit(), tc.name)
		}
	}
}

func TestParseTaskErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"LaMP_6", "not supported"},
		{"lamp_time_6", "not supported"},
		{"LaMP_8", "no task LaMP_8"},
		{"LaMP_0", "no task LaMP_0"},
		{"", "unknown task"},
		{"lamp", "unknown task"},
		{"LaMP_x", "unknown task"},
		{"LaMP_2b", "unknown task"},
		{"lamp+2", "unknown task"},
		{"timelamp2", "unknown task"},
	}
	for _, tc := range tests {
		_, err := ParseTask(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseTask(%q) error = %v, want one containing %q", tc.in, err, tc.want)
		}
	}
}

func TestTaskRegistry(t *testing.T) {
	tests := []struct {
		task    Task
		kind    Kind
		nLabels int
		metrics []Metric
		fields  []string
	}{
		{LaMP1, Classification, 2, []Metric{Accuracy, F1}, []string{"title", "abstract"}},
		{LaMP2, Classification, 15, []Metric{Accuracy, F1}, []string{"description"}},
		{LaMP3, Regression, 5, []Metric{MAE, RMSE}, []string{"text"}},
		{LaMP4, Generation, 0, []Metric{Rouge1, RougeL}, []string{"text", "title"}},
		{LaMP5, Generation, 0, []Metric{Rouge1, RougeL}, []string{"title", "abstract"}},
		{LaMP7, Generation, 0, []Metric{Rouge1, RougeL}, []string{"text"}},
	}
	if got := Tasks(); !slices.Equal(got, []Task{LaMP1, LaMP2, LaMP3, LaMP4, LaMP5, LaMP7}) {
		t.Errorf("Tasks() = %v", got)
	}
	for _, tc := range tests {
		for _, task := range []Task{tc.task, tc.task.WithTimeSplit(true)} {
			if !task.Valid() || task.Kind() != tc.kind || len(task.Labels()) != tc.nLabels ||
				!slices.Equal(task.Metrics(), tc.metrics) || !slices.Equal(task.ProfileFields(), tc.fields) ||
				task.Description() == "" {
				t.Errorf("%v: kind %v, %d labels, metrics %v, fields %v", task, task.Kind(), len(task.Labels()), task.Metrics(), task.ProfileFields())
			}
		}
	}
	if got := LaMP1.Labels(); !slices.Equal(got, []string{"[1]", "[2]"}) {
		t.Errorf("LaMP-1 labels %q", got)
	}
	want2 := []string{"sci-fi", "based on a book", "comedy", "action", "twist ending", "dystopia", "dark comedy",
		"classic", "psychology", "fantasy", "romance", "thought-provoking", "social commentary", "violence", "true story"}
	if got := LaMP2.Labels(); !slices.Equal(got, want2) {
		t.Errorf("LaMP-2 labels %q", got)
	}
	if got := LaMP3.Labels(); !slices.Equal(got, []string{"1", "2", "3", "4", "5"}) {
		t.Errorf("LaMP-3 labels %q", got)
	}
	// Labels returns a copy.
	l := LaMP2.Labels()
	l[0] = "changed"
	if LaMP2.Labels()[0] != "sci-fi" {
		t.Error("Labels exposes the registry")
	}
	var zero Task
	if zero.Valid() || zero.Name() != "" || zero.String() != "invalid task" || zero.Labels() != nil || zero.Metrics() != nil || zero.LabelIndex("[1]") != -1 {
		t.Error("zero Task should be invalid and empty")
	}
	if !MAE.LowerIsBetter() || !RMSE.LowerIsBetter() || Accuracy.LowerIsBetter() || Rouge1.LowerIsBetter() {
		t.Error("LowerIsBetter")
	}
	if Classification.String() != "classification" || Kind(9).String() != "Kind(9)" {
		t.Error("Kind.String")
	}
}

func TestLabelIndex(t *testing.T) {
	tests := []struct {
		task  Task
		label string
		want  int
	}{
		{LaMP1, "[1]", 0},
		{LaMP1, "[2]", 1},
		{LaMP1, "1", -1},
		{LaMP1, " [1]", -1}, // not trimmed here
		{LaMP2, "comedy", 2},
		{LaMP2, "Comedy", -1},
		{LaMP2, "true story", 14},
		{LaMP3, "5", 4},
		{LaMP3, "5.0", -1},
		{LaMP4, "x", -1},
	}
	for _, tc := range tests {
		if got := tc.task.LabelIndex(tc.label); got != tc.want {
			t.Errorf("%v.LabelIndex(%q) = %d, want %d", tc.task, tc.label, got, tc.want)
		}
	}
}

func TestQueryPart(t *testing.T) {
	tests := []struct {
		name  string
		task  Task
		input string
		want  string
	}{
		{"lamp1", LaMP1, `For an author who has written the paper with the title "Deep Nets", which reference is related? Just answer with [1] or [2] without explanation. [1]: "Ref One" [2]: "Ref Two"`, "Ref One Ref Two"},
		{"lamp1 quotes in title", LaMP1, `For an author who has written the paper with the title "A "quoted" word", which reference is related? [1]: "R1" [2]: "R2"`, "R1 R2"},
		{"lamp1 no marker", LaMP1, `title "T" then "A" and "B"`, "A B"},
		{"lamp1 fallback", LaMP1, "  no quotes at all ", "no quotes at all"},
		{"lamp2", LaMP2, "Which tag does this movie relate to among the following tags? Just answer with the tag name without further explanation. tags: [sci-fi, comedy] description: A man wakes up. ", "A man wakes up."},
		{"lamp2 marker repeated", LaMP2, "tags: [x] description: the film's description: twisty", "the film's description: twisty"},
		{"lamp3", LaMP3, "What is the score of the following review on a scale of 1 to 5? just answer with 1, 2, 3, 4, or 5 without further explanation. review: Great product!\n", "Great product!"},
		{"lamp4", LaMP4, "Generate a headline for the following article: Stocks rose today.", "Stocks rose today."},
		{"lamp5 paper", LaMP5, "Generate a title for the following abstract of a paper: We study X.", "We study X."},
		{"lamp5 abstract", LaMP5, "abstract: We study Y.", "We study Y."},
		{"lamp7", LaMP7, "Paraphrase the following tweet without any explanation before or after it: I'm enjoying the album: great!", "I'm enjoying the album: great!"},
		{"lamp7 short marker", LaMP7, "Rewrite, nothing before or after: hi there", "hi there"},
		{"lamp7 tweet marker", LaMP7, "tweet: hello", "hello"},
		{"no marker", LaMP4, "  just text  ", "just text"},
		{"marker at end", LaMP3, "review:", ""},
		{"python whitespace", LaMP3, "review:\u3000text\u00a0\x1c", "text"},
		{"invalid task", Task{}, " x ", "x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.task.QueryPart(tc.input); got != tc.want {
				t.Errorf("QueryPart = %q, want %q", got, tc.want)
			}
		})
	}
	if m := LaMP5.QueryMarkers(); !slices.Equal(m, []string{"paper:", "abstract:"}) {
		t.Errorf("LaMP-5 markers %q", m)
	}
	if m := LaMP1.QueryMarkers(); m != nil {
		t.Errorf("LaMP-1 markers %q", m)
	}
}

func TestProfileText(t *testing.T) {
	tests := []struct {
		task   Task
		fields map[string]string
		want   string
	}{
		{LaMP1, map[string]string{"title": "T", "abstract": "A", "date": "2010"}, "T A"},
		{LaMP1, map[string]string{"title": " T ", "abstract": ""}, "T"},
		{LaMP2, map[string]string{"description": "D", "tag": "comedy"}, "D"},
		{LaMP3, map[string]string{"text": "great", "score": "5"}, "great"},
		{LaMP4, map[string]string{"title": "Head", "text": "Body"}, "Body Head"},
		{LaMP5, map[string]string{"abstract": "A"}, "A"},
		{LaMP7, map[string]string{"text": "tweet"}, "tweet"},
		{LaMP7, map[string]string{"other": "x"}, ""},
	}
	for _, tc := range tests {
		if got := tc.task.ProfileText(ProfileItem{ID: "1", Fields: tc.fields}); got != tc.want {
			t.Errorf("%v.ProfileText(%v) = %q, want %q", tc.task, tc.fields, got, tc.want)
		}
	}
}

func TestTaskText(t *testing.T) {
	b, err := json.Marshal(map[string]Task{"t": LaMP2.WithTimeSplit(true)})
	if err != nil || string(b) != `{"t":"LaMP_time_2"}` {
		t.Fatalf("Marshal = %s, %v", b, err)
	}
	var m map[string]Task
	if err := json.Unmarshal([]byte(`{"t":"lamp-time-2"}`), &m); err != nil || m["t"] != LaMP2.WithTimeSplit(true) {
		t.Fatalf("Unmarshal = %v, %v", m, err)
	}
	if err := json.Unmarshal([]byte(`{"t":"lamp9"}`), &m); err == nil {
		t.Error("Unmarshal of a bad task should fail")
	}
	if _, err := json.Marshal(Task{}); err == nil {
		t.Error("Marshal of the zero Task should fail")
	}
	defer func() {
		if recover() == nil {
			t.Error("MustParseTask did not panic")
		}
	}()
	MustParseTask("nope")
}

func TestGenericTask(t *testing.T) {
	for _, name := range []string{"generic", "Generic", " GENERIC "} {
		if task, err := ParseTask(name); err != nil || task != Generic {
			t.Errorf("ParseTask(%q) = %v, %v", name, task, err)
		}
	}
	g := Generic
	if !g.Valid() || !g.IsGeneric() || g.Name() != "generic" || g.Number() != 0 || g.Kind() != Generation || g.ProfileFields() != nil || g.QueryMarkers() != nil {
		t.Fatalf("generic: %v %v %v", g.Name(), g.Kind(), g.ProfileFields())
	}
	if g.WithTimeSplit(true) != Generic {
		t.Error("a generic task has no time split")
	}
	// The input is used as given: no LaMP marker cuts it.
	in := "Paraphrase the following tweet without any explanation before or after it: my text"
	if g.QueryPart(in) != in || LaMP7.QueryPart(in) == in {
		t.Errorf("query part %q", g.QueryPart(in))
	}
	if _, err := NewTask(100, false); err == nil {
		t.Error("NewTask(100)")
	}
	for _, task := range Tasks() {
		if task.IsGeneric() {
			t.Error("Tasks lists the generic task")
		}
	}
	b, _ := g.MarshalText()
	var back Task
	if err := back.UnmarshalText(b); err != nil || back != Generic {
		t.Errorf("round trip %q: %v %v", b, back, err)
	}
}
