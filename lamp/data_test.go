package lamp

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pplug/pplug/internal/jsonscan"
)

const sampleQuestions = `[
  {"id": "110", "input": "Generate a headline for the following article: Stocks rose.",
   "profile": [
     {"id": "1100", "title": "Old news", "text": "Body one", "date": "2013-05-02"},
     {"id": 1101, "text": "Body two", "score": 4.0, "flag": true, "gone": null}
   ]},
  {"id": 111, "input": "x", "profile": []},
  {"id": "112", "input": "y"}
]
`

func TestReadQuestions(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "dev_questions.json", sampleQuestions)
	qs, err := ReadQuestions(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []Question{
		{ID: "110", Input: "Generate a headline for the following article: Stocks rose.", Profile: []ProfileItem{
			{ID: "1100", Fields: map[string]string{"title": "Old news", "text": "Body one", "date": "2013-05-02"}},
			{ID: "1101", Fields: map[string]string{"text": "Body two", "score": "4.0", "flag": "true"}},
		}},
		{ID: "111", Input: "x", Profile: []ProfileItem{}},
		{ID: "112", Input: "y"},
	}
	if !reflect.DeepEqual(qs, want) {
		t.Fatalf("got  %+v\nwant %+v", qs, want)
	}

	q, err := FindQuestion(p, "111")
	if err != nil || q.ID != "111" {
		t.Errorf("FindQuestion = %+v, %v", q, err)
	}
	if _, err := FindQuestion(p, "999"); !errors.Is(err, ErrNotFound) {
		t.Errorf("FindQuestion(999) error = %v", err)
	}

	// The reader works on any io.Reader and reports io.EOF at the end.
	qr := NewQuestionReader(strings.NewReader(sampleQuestions), "mem")
	n := 0
	for {
		_, err := qr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 3 {
		t.Errorf("read %d questions", n)
	}
	if _, err := qr.Next(); err != io.EOF {
		t.Errorf("Next after the end = %v", err)
	}

	// ScanQuestions passes fn's error through.
	stop := errors.New("stop")
	if err := ScanQuestions(p, func(Question) error { return stop }); err != stop {
		t.Errorf("ScanQuestions error = %v", err)
	}
	if _, err := ReadQuestions(filepath.Join(dir, "absent.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("absent file error = %v", err)
	}
}

func TestQuestionErrors(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		index int
		id    string
		line  int
		want  string
	}{
		{"not an array", `{"id": "1"}`, -1, "", 0, "expected a JSON array, found an object"},
		{"element not object", `[{"id":"1","input":"x"}, "str"]`, 1, "", 1, "expected a JSON object, found a string"},
		{"missing id", "[\n{\"input\": \"x\"}]", 0, "", 2, `missing "id"`},
		{"bool id", `[{"id": true, "input": "x"}]`, 0, "", 1, `"id" must be a string or a number, found a boolean`},
		{"missing input", `[{"id": "7"}]`, 0, "7", 1, `missing "input"`},
		{"numeric input", `[{"id": "7", "input": 3}]`, 0, "7", 1, `"input" must be a string, found a number`},
		{"profile not array", `[{"id": "7", "input": "x", "profile": {}}]`, 0, "7", 1, `"profile": expected a JSON array, found an object`},
		{"profile item not object", `[{"id": "7", "input": "x", "profile": [1]}]`, 0, "7", 1, "profile item 0: expected a JSON object, found a number"},
		{"profile item without id", `[{"id": "7", "input": "x", "profile": [{"id": "a", "text": "t"}, {"text": "t"}]}]`, 0, "7", 1, `profile item 1: missing "id"`},
		{"nested field", `[{"id": "7", "input": "x", "profile": [{"id": "a", "tags": ["x"]}]}]`, 0, "7", 1, `profile item 0 (id "a"): field "tags" is an array`},
		{"invalid utf8", "[{\"id\": \"1\", \"input\": \"ok\"},\n {\"id\": \"2\", \"input\": \"x\", \"profile\": [{\"id\": \"p\", \"text\": \"bad \xff\"}]}]", 1, "2", 2, `question "2": invalid UTF-8 byte 0xff`},
		{"lone surrogate", `[{"id": "3", "input": "\ud800"}]`, 0, "3", 1, `question "3": unpaired UTF-16 surrogate`},
		{"syntax", "[\n {\"id\": \"1\", \"input\": \"x\"},\n {\"id\": \"2\" \"input\": \"y\"}\n]", 1, "", 0, "line 3, column 13"},
		{"truncated", "[{\"id\": \"1\", \"input\": \"x\"}", 1, "", 0, "unexpected end of JSON input"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			qr := NewQuestionReader(strings.NewReader(tc.in), "q.json")
			var err error
			for err == nil {
				_, err = qr.Next()
			}
			if err == io.EOF {
				t.Fatal("no error")
			}
			var de *DataError
			if !errors.As(err, &de) {
				t.Fatalf("error %v is %T, not *DataError", err, err)
			}
			if de.File != "q.json" || de.Index != tc.index || de.ID != tc.id || de.Line != tc.line {
				t.Errorf("error %+v: want index %d, id %q, line %d", de, tc.index, tc.id, tc.line)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "lamp: q.json: ") {
				t.Errorf("error %q, want one containing %q", err, tc.want)
			}
		})
	}
	// Syntax errors keep their position type.
	qr := NewQuestionReader(strings.NewReader(`[{"id":"1","input":"x"},,]`), "")
	if _, err := qr.Next(); err != nil {
		t.Fatal(err)
	}
	_, err := qr.Next()
	var se *jsonscan.SyntaxError
	if !errors.As(err, &se) || se.Col != 25 {
		t.Errorf("error %v: want a *jsonscan.SyntaxError at column 25", err)
	}
	if !strings.HasPrefix(err.Error(), "lamp: element 1: ") {
		t.Errorf("error without a file name: %q", err)
	}
}

func TestDecodeOutputs(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Outputs
	}{
		{"basic", `{"task": "LaMP_2", "golds": [{"id": "1", "output": "comedy"}, {"id": 2, "output": 4}]}`,
			Outputs{Task: "LaMP_2", Golds: []Output{{"1", "comedy"}, {"2", "4"}}}},
		{"golds first, extra keys", `{"golds": [{"id": "1", "output": "", "extra": 1}], "task": "LaMP_time_7", "meta": {"x": [1]}}`,
			Outputs{Task: "LaMP_time_7", Golds: []Output{{"1", ""}}}},
		{"no task", `{"golds": []}`, Outputs{Golds: []Output{}}},
		{"bom", "\xef\xbb\xbf{\"golds\": [{\"id\": \"1\", \"output\": \"a\"}]}", Outputs{Golds: []Output{{"1", "a"}}}},
		{"float output kept as written", `{"golds": [{"id": "1", "output": 4.0}]}`, Outputs{Golds: []Output{{"1", "4.0"}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeOutputs(strings.NewReader(tc.in), "o.json")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestDecodeOutputsErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"array", `[]`, "lamp: o.json: outputs file must be a JSON object"},
		{"syntax", "{\"golds\": [\n{\"id\": \"1\",, \"output\": \"a\"}]}", "line 2, column 12"},
		{"truncated", "{\"golds\": [", "unexpected end of JSON input"},
		{"no golds", `{"task": "LaMP_1"}`, `no "golds" array`},
		{"golds not array", `{"golds": {"id": "1"}}`, `"golds" must be an array, found an object`},
		{"golds null", `{"golds": null}`, `"golds" must be an array, found null`},
		{"task not string", `{"task": 2, "golds": []}`, `"task" must be a string, found a number`},
		{"missing output", "{\"golds\": [{\"id\": \"1\", \"output\": \"a\"},\n {\"id\": \"2\"}]}", `element 1 (id "2", line 2): missing "output"`},
		{"null output", `{"golds": [{"id": "1", "output": null}]}`, `element 0 (id "1", line 1): "output" must be a string or a number, found null`},
		{"missing id", `{"golds": [{"output": "a"}]}`, `element 0 (line 1): missing "id"`},
		{"element not object", `{"golds": ["a"]}`, "element 0 (line 1): expected a JSON object, found a string"},
		{"invalid utf8", "{\"golds\": [{\"id\": \"9\", \"output\": \"\xfe\"}]}", `element 0 (id "9", line 1): invalid UTF-8`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeOutputs(strings.NewReader(tc.in), "o.json")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestWriteReadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	o := Outputs{Task: "LaMP_time_4", Golds: []Output{{"1", "A <b> & \"c\"\nline"}, {"2", "日本語 ✓"}, {"3", ""}}}
	p := filepath.Join(dir, "preds.json")
	if err := WriteOutputs(p, o); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(p)
	if !strings.Contains(string(data), `"A <b> & \"c\"\nline"`) || !strings.HasPrefix(string(data), "{\"task\":\"LaMP_time_4\",\"golds\":[\n{\"id\":\"1\"") {
		t.Errorf("file content:\n%s", data)
	}
	back, err := ReadOutputs(p)
	if err != nil || !reflect.DeepEqual(back, o) {
		t.Fatalf("round trip %+v, %v", back, err)
	}
	empty := filepath.Join(dir, "empty.json")
	if err := WriteOutputs(empty, Outputs{Task: "LaMP_1"}); err != nil {
		t.Fatal(err)
	}
	if back, err := ReadOutputs(empty); err != nil || back.Task != "LaMP_1" || len(back.Golds) != 0 {
		t.Fatalf("empty round trip %+v, %v", back, err)
	}

	qs := []Question{
		{ID: "1", Input: "review: good", Profile: []ProfileItem{{ID: "10", Fields: map[string]string{"text": "fine", "score": "4"}}}},
		{ID: "2", Input: "x", Profile: []ProfileItem{}},
	}
	qp := filepath.Join(dir, "q.json")
	if err := WriteQuestions(qp, qs); err != nil {
		t.Fatal(err)
	}
	qback, err := ReadQuestions(qp)
	if err != nil || !reflect.DeepEqual(qback, qs) {
		t.Fatalf("questions round trip %+v, %v", qback, err)
	}
	data, _ = os.ReadFile(qp)
	if !strings.Contains(string(data), `{"id":"10","score":"4","text":"fine"}`) {
		t.Errorf("questions file:\n%s", data)
	}
	if err := WriteQuestions(qp, nil); err != nil {
		t.Fatal(err)
	}
	if qback, err := ReadQuestions(qp); err != nil || len(qback) != 0 {
		t.Fatalf("empty questions %+v, %v", qback, err)
	}
}

func TestWriteRejectsInvalidUTF8(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "o.json")
	if err := WriteOutputs(p, Outputs{Task: "LaMP_4", Golds: []Output{{"1", "ok"}}}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(p)
	err := WriteOutputs(p, Outputs{Task: "LaMP_4", Golds: []Output{{"1", "ok"}, {"2", "bad\xff"}}})
	if err == nil || !strings.Contains(err.Error(), "element 1") || !strings.Contains(err.Error(), "invalid UTF-8") {
		t.Fatalf("error %v", err)
	}
	after, _ := os.ReadFile(p)
	if string(after) != string(before) {
		t.Error("failed write changed the file")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
	if err := WriteQuestions(p, []Question{{ID: "1", Input: "x", Profile: []ProfileItem{{ID: "a", Fields: map[string]string{"t": "\xc3"}}}}}); err == nil {
		t.Error("invalid UTF-8 in a profile field should fail")
	}
}

func TestWriteAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f.txt")
	boom := errors.New("boom")
	if err := WriteAtomic(p, func(w io.Writer) error { io.WriteString(w, "partial"); return boom }); err != boom {
		t.Fatalf("error %v", err)
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Error("failed write created the file")
	}
	if err := WriteAtomic(p, func(w io.Writer) error { _, err := io.WriteString(w, "one"); return err }); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o644 {
		t.Errorf("new file mode %v", st.Mode().Perm())
	}
	os.Chmod(p, 0o600)
	if err := WriteAtomic(p, func(w io.Writer) error { _, err := io.WriteString(w, "two"); return err }); err != nil {
		t.Fatal(err)
	}
	st, _ = os.Stat(p)
	data, _ := os.ReadFile(p)
	if string(data) != "two" || st.Mode().Perm() != 0o600 {
		t.Errorf("content %q mode %v", data, st.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
	if err := WriteAtomic(filepath.Join(dir, "no", "such", "dir.txt"), func(io.Writer) error { return nil }); err == nil {
		t.Error("write into a missing directory should fail")
	}
}

func TestJSONMethods(t *testing.T) {
	var it ProfileItem
	if err := it.UnmarshalJSON([]byte(`{"id": 5, "score": 3, "text": "t"}`)); err != nil || it.ID != "5" || it.Fields["score"] != "3" {
		t.Errorf("ProfileItem = %+v, %v", it, err)
	}
	if err := it.UnmarshalJSON([]byte("{\"id\": \"1\", \"t\": \"\xff\"}")); err == nil {
		t.Error("invalid UTF-8 accepted")
	}
	var q Question
	if err := q.UnmarshalJSON([]byte(`{"id": "1"}`)); err == nil {
		t.Error("question without input accepted")
	}
	var o Output
	if err := o.UnmarshalJSON([]byte(`{"id": 1, "output": 2.50}`)); err != nil || o != (Output{"1", "2.50"}) {
		t.Errorf("Output = %+v, %v", o, err)
	}
	if _, err := (Output{ID: "\xff"}).MarshalJSON(); err == nil {
		t.Error("invalid id accepted")
	}
	// A file that names no LaMP task holds a generic task; a LaMP-like name
	// that is none is an error.
	for _, name := range []string{"", "  ", "my-notes", "generic", "Generic"} {
		if task, err := (Outputs{Task: name}).ParsedTask(); err != nil || task != Generic || task.Name() != "generic" {
			t.Errorf("ParsedTask(%q) = %v, %v", name, task, err)
		}
	}
	if _, err := (Outputs{Task: "LaMP_9"}).ParsedTask(); err == nil {
		t.Error("LaMP_9 parsed")
	}
	if task, err := (Outputs{Task: "LaMP_time_5"}).ParsedTask(); err != nil || task != LaMP5.WithTimeSplit(true) {
		t.Errorf("ParsedTask = %v, %v", task, err)
	}
}

// The labels of an outputs file survive a write and a read.
func TestOutputsLabelsRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "o.json")
	in := Outputs{Task: "generic", Labels: []string{"yes", "no \"maybe\""}, Golds: []Output{{"1", "yes"}}}
	if err := WriteOutputs(path, in); err != nil {
		t.Fatal(err)
	}
	out, err := ReadOutputs(path)
	if err != nil || out.Task != "generic" || len(out.Labels) != 2 || out.Labels[1] != `no "maybe"` || len(out.Golds) != 1 {
		t.Fatalf("%+v %v", out, err)
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`{"labels": [1, 2], "golds": []}`), 0o644)
	if _, err := ReadOutputs(bad); err == nil || !strings.Contains(err.Error(), "labels") {
		t.Fatalf("numeric labels: %v", err)
	}
}
