package lamp

import (
	"fmt"
	"strconv"
	"strings"
)

// Kind is the kind of output a task asks for.
type Kind int

// Task kinds.
const (
	Classification Kind = iota + 1 // one label out of a fixed set
	Regression                     // a number (LaMP-3's 1-5 rating)
	Generation                     // free text
)

func (k Kind) String() string {
	switch k {
	case Classification:
		return "classification"
	case Regression:
		return "regression"
	case Generation:
		return "generation"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Metric names one evaluation measure. Its value is the name used in JSON.
type Metric string

// The metrics of the official LaMP scorer.
const (
	Accuracy Metric = "accuracy"
	F1       Metric = "f1" // macro-F1 over all labels of the task
	MAE      Metric = "mae"
	RMSE     Metric = "rmse"
	Rouge1   Metric = "rouge-1"
	RougeL   Metric = "rouge-l"
)

// LowerIsBetter reports whether smaller values of m are better (MAE, RMSE).
func (m Metric) LowerIsBetter() bool { return m == MAE || m == RMSE }

// TextSeparator joins the profile fields of an item into its text, as the
// LaMP retrieval code does (f"{title} {abstract}").
const TextSeparator = " "

type taskSpec struct {
	num         int
	description string
	kind        Kind
	labels      []string
	metrics     []Metric
	fields      []string // profile fields that make up an item's text, in order
	markers     []string // query markers, tried in order
}

// The task table. Profile fields follow the PPlug paper: LaMP-1 title +
// abstract, LaMP-2 description (not the tag), LaMP-3 review text (not the
// score), LaMP-4 text + title, LaMP-5 title + abstract, LaMP-7 tweet text.
// Query markers follow the inputs of the LaMP data (see QueryPart).
var specs = []*taskSpec{
	{
		num:         1,
		description: "personalized citation identification",
		kind:        Classification,
		labels:      []string{"[1]", "[2]"},
		metrics:     []Metric{Accuracy, F1},
		fields:      []string{"title", "abstract"},
		markers:     nil, // special: the quoted reference titles
	},
	{
		num:         2,
		description: "personalized movie tagging",
		kind:        Classification,
		labels: []string{
			"sci-fi", "based on a book", "comedy", "action", "twist ending",
			"dystopia", "dark comedy", "classic", "psychology", "fantasy",
			"romance", "thought-provoking", "social commentary", "violence",
			"true story",
		},
		metrics: []Metric{Accuracy, F1},
		fields:  []string{"description"},
		markers: []string{"description:"},
	},
	{
		num:         3,
		description: "personalized product rating",
		kind:        Regression,
		labels:      []string{"1", "2", "3", "4", "5"},
		metrics:     []Metric{MAE, RMSE},
		fields:      []string{"text"},
		markers:     []string{"review:"},
	},
	{
		num:         4,
		description: "personalized news headline generation",
		kind:        Generation,
		metrics:     []Metric{Rouge1, RougeL},
		fields:      []string{"text", "title"},
		markers:     []string{"article:"},
	},
	{
		num:         5,
		description: "personalized scholarly title generation",
		kind:        Generation,
		metrics:     []Metric{Rouge1, RougeL},
		fields:      []string{"title", "abstract"},
		markers:     []string{"paper:", "abstract:"},
	},
	{
		num:         7,
		description: "personalized tweet paraphrasing",
		kind:        Generation,
		metrics:     []Metric{Rouge1, RougeL},
		fields:      []string{"text"},
		markers:     []string{"before or after it:", "before or after:", "tweet:"},
	},
}

// genericNum numbers the generic task (no LaMP task has it).
const genericNum = 100

// generic is the task of any data in the LaMP layout: the input is the
// prompt as given (no query markers: retrieval and the aggregator look at
// all of it), an item's text is its "text" field (or its other text fields,
// see persona/profile), the outputs are free text scored with ROUGE, or by
// exact match against a label list when one is given (ScoreOptions.Labels,
// an outputs file's "labels").
var generic = &taskSpec{
	num:         genericNum,
	description: "personalisation of any task (the input as given)",
	kind:        Generation,
	metrics:     []Metric{Rouge1, RougeL},
}

func specFor(num int) *taskSpec {
	if num == genericNum {
		return generic
	}
	for _, s := range specs {
		if s.num == num {
			return s
		}
	}
	return nil
}

// Task is one LaMP task, on the user-based split (LaMP_N) or the time-based
// split (LaMP_time_N). Both splits share everything but the name. The zero
// Task is invalid; get Tasks from ParseTask, NewTask, Tasks or the
// package-level variables.
type Task struct {
	num  int
	time bool
}

// The supported tasks on the user-based split. LaMP-6 (email subject
// generation) is not supported: its data (Avocado) is not public.
var (
	LaMP1 = Task{num: 1}
	LaMP2 = Task{num: 2}
	LaMP3 = Task{num: 3}
	LaMP4 = Task{num: 4}
	LaMP5 = Task{num: 5}
	LaMP7 = Task{num: 7}
	// Generic is any task in the LaMP file layout, not one of LaMP's: the
	// input used as given, ROUGE (or exact match against a label list).
	Generic = Task{num: genericNum}
)

// Tasks returns the supported tasks on the user-based split, in order.
func Tasks() []Task {
	out := make([]Task, len(specs))
	for i, s := range specs {
		out[i] = Task{num: s.num}
	}
	return out
}

// NewTask returns task number n (1-5 or 7), on the time-based split when
// timeSplit is set.
func NewTask(n int, timeSplit bool) (Task, error) {
	if n == 6 {
		return Task{}, fmt.Errorf("lamp: LaMP_6 (email subject generation) is not supported: its data is not public")
	}
	if specFor(n) == nil || n == genericNum {
		return Task{}, fmt.Errorf("lamp: no task LaMP_%d (tasks are 1-5 and 7, or generic)", n)
	}
	return Task{num: n, time: timeSplit}, nil
}

// ParseTask parses a task name leniently: case, '_', '-', '.' and spaces are
// ignored, so "LaMP_2", "lamp2", "LaMP-2", "lamp_time_2" and "LaMP-time-2"
// are all accepted. The "lamp" prefix may be left out ("2", "time_2").
// "generic" is the Generic task.
func ParseTask(name string) (Task, error) {
	if strings.EqualFold(strings.TrimSpace(name), "generic") {
		return Generic, nil
	}
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(name)) {
		switch r {
		case '_', '-', '.', ' ', '\t':
			continue
		}
		b.WriteRune(r)
	}
	s := strings.TrimPrefix(b.String(), "lamp")
	timeSplit := strings.HasPrefix(s, "time")
	s = strings.TrimPrefix(s, "time")
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || strings.HasPrefix(s, "+") {
		return Task{}, fmt.Errorf("lamp: unknown task %q (want a name like LaMP_2 or LaMP_time_2, or generic)", name)
	}
	return NewTask(n, timeSplit)
}

// MustParseTask is ParseTask for names known to be valid; it panics on error.
func MustParseTask(name string) Task {
	t, err := ParseTask(name)
	if err != nil {
		panic(err)
	}
	return t
}

func (t Task) spec() *taskSpec { return specFor(t.num) }

// Valid reports whether t is a supported task (the zero Task is not).
func (t Task) Valid() bool { return t.spec() != nil }

// Number returns the LaMP task number (1-5 or 7; 0 for the zero Task and
// for Generic).
func (t Task) Number() int {
	if t.num == genericNum {
		return 0
	}
	return t.num
}

// IsGeneric reports whether t is the Generic task.
func (t Task) IsGeneric() bool { return t.num == genericNum }

// SameAs reports whether two valid tasks are the same task, whatever their
// split.
func (t Task) SameAs(u Task) bool { return t.num == u.num }

// TimeSplit reports whether t names the time-based split (LaMP_time_N).
func (t Task) TimeSplit() bool { return t.time }

// WithTimeSplit returns the same task on the time-based (true) or
// user-based (false) split.
func (t Task) WithTimeSplit(timeSplit bool) Task {
	if t.num != genericNum {
		t.time = timeSplit
	}
	return t
}

// Name returns the canonical name used in LaMP files: "LaMP_2" or
// "LaMP_time_2"; "" for the zero Task.
func (t Task) Name() string {
	if !t.Valid() {
		return ""
	}
	if t.num == genericNum {
		return "generic"
	}
	if t.time {
		return "LaMP_time_" + strconv.Itoa(t.num)
	}
	return "LaMP_" + strconv.Itoa(t.num)
}

// String returns Name, or "invalid task" for the zero Task.
func (t Task) String() string {
	if !t.Valid() {
		return "invalid task"
	}
	return t.Name()
}

// MarshalText implements encoding.TextMarshaler with Name.
func (t Task) MarshalText() ([]byte, error) {
	if !t.Valid() {
		return nil, fmt.Errorf("lamp: cannot marshal an invalid task")
	}
	return []byte(t.Name()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseTask.
func (t *Task) UnmarshalText(b []byte) error {
	p, err := ParseTask(string(b))
	if err != nil {
		return err
	}
	*t = p
	return nil
}

// Description returns a short description such as "personalized movie
// tagging".
func (t Task) Description() string {
	if s := t.spec(); s != nil {
		return s.description
	}
	return ""
}

// Kind returns the kind of output of t.
func (t Task) Kind() Kind {
	if s := t.spec(); s != nil {
		return s.kind
	}
	return 0
}

// Labels returns the label set, in the official scorer's order, for
// classification tasks and for LaMP-3 ("1".."5"); nil for generation tasks.
// The slice is a copy.
func (t Task) Labels() []string {
	if s := t.spec(); s != nil && s.labels != nil {
		return append([]string(nil), s.labels...)
	}
	return nil
}

// LabelIndex returns the position of label in the label set, or -1 (the
// official scorer's value for anything outside the set). The comparison is
// exact and case-sensitive; label is not trimmed.
func (t Task) LabelIndex(label string) int {
	if s := t.spec(); s != nil {
		for i, l := range s.labels {
			if l == label {
				return i
			}
		}
	}
	return -1
}

// Metrics returns the metrics reported for t, in table order.
func (t Task) Metrics() []Metric {
	if s := t.spec(); s != nil {
		return append([]Metric(nil), s.metrics...)
	}
	return nil
}

// ProfileFields returns the profile item fields whose values, joined with
// TextSeparator in this order, make up an item's text for encoding and
// retrieval.
func (t Task) ProfileFields() []string {
	if s := t.spec(); s != nil {
		return append([]string(nil), s.fields...)
	}
	return nil
}

// ProfileText returns the text of a profile item for t: the values of
// ProfileFields, each trimmed of surrounding white space, skipping missing
// and blank ones, joined with TextSeparator.
func (t Task) ProfileText(item ProfileItem) string {
	var parts []string
	for _, f := range t.ProfileFields() {
		if v := strings.TrimSpace(item.Fields[f]); v != "" {
			parts = append(parts, v)
		}
	}
	return strings.Join(parts, TextSeparator)
}

// QueryMarkers returns the markers that QueryPart looks for, in order.
// LaMP-1 has none (see QueryPart).
func (t Task) QueryMarkers() []string {
	if s := t.spec(); s != nil {
		return append([]string(nil), s.markers...)
	}
	return nil
}

// QueryPart returns the part of a task input that describes the current
// item: the text the input encoder sees and the retrieval query.
//
// For tasks with markers it is the text after the first occurrence of the
// first marker (in QueryMarkers order) that the input contains, as the LaMP
// code's extract_after_* helpers do (str.find, i.e. the first occurrence,
// so that a marker repeated inside the user's text does not cut it):
//
//	LaMP-2  "... tags: [...] description: <movie>"             -> "description:"
//	LaMP-3  "... without further explanation. review: <text>"   -> "review:"
//	LaMP-4  "Generate a headline for the following article: <a>" -> "article:"
//	LaMP-5  "Generate a title for the following abstract of a paper: <abstract>"
//	        -> "paper:", then "abstract:"
//	LaMP-7  "Paraphrase the following tweet without any explanation before or
//	        after it: <tweet>" -> "before or after it:", "before or after:", "tweet:"
//
// LaMP-1 inputs ('For an author who has written the paper with the title
// "<title>", which reference is related? ... [1]: "<ref1>" [2]: "<ref2>"')
// have no such marker; as in LaMP's BM25 query, the query part is the two
// candidate references, the quoted strings after "[1]:" joined with a space
// (or, without "[1]:", every quoted string but the first, when there are at
// least three).
//
// When nothing matches, the whole input is used. The result is stripped of
// surrounding white space (Python's str.strip).
func (t Task) QueryPart(input string) string {
	s := t.spec()
	if s == nil {
		return PyStrip(input)
	}
	if s.num == 1 {
		if q, ok := citationQuery(input); ok {
			return PyStrip(q)
		}
		return PyStrip(input)
	}
	for _, m := range s.markers {
		if i := strings.Index(input, m); i >= 0 {
			return PyStrip(input[i+len(m):])
		}
	}
	return PyStrip(input)
}

// citationQuery extracts the candidate references of a LaMP-1 input.
func citationQuery(input string) (string, bool) {
	if i := strings.Index(input, "[1]:"); i >= 0 {
		if q := quoted(input[i:]); len(q) > 0 {
			return strings.Join(q, " "), true
		}
		return "", false
	}
	if q := quoted(input); len(q) >= 3 {
		return strings.Join(q[1:], " "), true
	}
	return "", false
}

// quoted returns the strings between pairs of ASCII double quotes.
func quoted(s string) []string {
	var out []string
	for {
		i := strings.IndexByte(s, '"')
		if i < 0 {
			return out
		}
		j := strings.IndexByte(s[i+1:], '"')
		if j < 0 {
			return out
		}
		out = append(out, s[i+1:i+1+j])
		s = s[i+1+j+1:]
	}
}
