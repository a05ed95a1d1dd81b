package profile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pplug/pplug/lamp"
)

func parseString(t *testing.T, in string, opts Options) (*Profile, error) {
	t.Helper()
	return Parse(strings.NewReader(in), opts)
}

func texts(p *Profile) []string { return p.Texts() }

func ids(p *Profile) []string {
	var out []string
	for _, it := range p.Items {
		out = append(out, it.ID)
	}
	return out
}

func warnings(p *Profile) string {
	var out []string
	for _, w := range p.Warnings {
		out = append(out, w.String())
	}
	return strings.Join(out, "\n")
}

const questionJSON = `{"id": "q7", "input": "Generate a headline for the following article: Rain.",
 "profile": [{"id": "1", "title": "T1", "text": "Body 1", "date": "2013-05-02"},
             {"id": "2", "title": "T2", "text": "Body 2", "date": "2014-01-01"}]}`

func TestFormats(t *testing.T) {
	questions := "[\n" + strings.ReplaceAll(questionJSON, `"q7"`, `"q1"`) + ",\n" + questionJSON + "\n]"
	questionsJSONL := strings.ReplaceAll(strings.ReplaceAll(questions, "\n", " "), "}]}, {", "}]}\n{")
	questionsJSONL = strings.TrimSuffix(strings.TrimPrefix(questionsJSONL, "[ "), " ]")
	tests := []struct {
		name   string
		in     string
		opts   Options
		format Format
		texts  []string
		lines  []int
		query  string
		qid    string
	}{
		{"array", `[{"id": "1", "text": "a"}, {"id": "2", "text": "b"}]`, Options{}, FormatArray, []string{"a", "b"}, []int{1, 1}, "", ""},
		{"pretty array", "[\n  {\"text\": \"a\"},\n  {\"text\": \"b\"}\n]", Options{}, FormatArray, []string{"a", "b"}, []int{2, 3}, "", ""},
		{"array with bom", "\xef\xbb\xbf[{\"text\": \"a\"}]", Options{}, FormatArray, []string{"a"}, []int{1}, "", ""},
		{"jsonl", "{\"id\": \"1\", \"text\": \"a\"}\n\n{\"id\": \"2\", \"text\": \"b\"}\n", Options{}, FormatJSONL, []string{"a", "b"}, []int{1, 3}, "", ""},
		{"single jsonl item", `{"text": "only"}`, Options{}, FormatJSONL, []string{"only"}, []int{1}, "", ""},
		{"question", questionJSON, Options{Task: lamp.LaMP4}, FormatQuestion, []string{"Body 1 T1", "Body 2 T2"}, []int{0, 0},
			"Generate a headline for the following article: Rain.", "q7"},
		{"question with its id", questionJSON, Options{QuestionID: "q7"}, FormatQuestion, []string{"Body 1", "Body 2"}, []int{0, 0},
			"Generate a headline for the following article: Rain.", "q7"},
		{"questions array", questions, Options{QuestionID: "q7", Fields: []string{"title"}}, FormatQuestions, []string{"T1", "T2"}, []int{0, 0},
			"Generate a headline for the following article: Rain.", "q7"},
		{"questions array first", questions, Options{QuestionID: "q1"}, FormatQuestions, []string{"Body 1", "Body 2"}, nil, "", "q1"},
		{"questions jsonl", questionsJSONL, Options{QuestionID: "q7"}, FormatQuestions, []string{"Body 1", "Body 2"}, nil, "", "q7"},
		{"questions jsonl first", questionsJSONL, Options{QuestionID: "q1"}, FormatQuestions, []string{"Body 1", "Body 2"}, nil, "", "q1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parseString(t, tc.in, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if p.Format != tc.format || !slices.Equal(texts(p), tc.texts) {
				t.Errorf("format %v, texts %q; want %v, %q", p.Format, texts(p), tc.format, tc.texts)
			}
			for i, l := range tc.lines {
				if p.Items[i].Line != l || p.Items[i].Index != i {
					t.Errorf("item %d: line %d index %d, want line %d", i, p.Items[i].Line, p.Items[i].Index, l)
				}
			}
			if tc.query != "" && p.Query != tc.query {
				t.Errorf("query %q, want %q", p.Query, tc.query)
			}
			if p.QuestionID != tc.qid {
				t.Errorf("question id %q, want %q", p.QuestionID, tc.qid)
			}
			if len(p.Warnings) != 0 {
				t.Errorf("warnings:\n%s", warnings(p))
			}
		})
	}
	if FormatJSONL.String() != "JSON Lines of items" || Format(0).String() != "Format(0)" {
		t.Error("Format.String")
	}
}

func TestErrors(t *testing.T) {
	questions := "[" + questionJSON + ", " + strings.ReplaceAll(questionJSON, `"q7"`, `"q8"`) + "]"
	tests := []struct {
		name string
		in   string
		opts Options
		is   error
		want string
	}{
		{"empty", "", Options{}, ErrEmpty, "the input is blank"},
		{"blank", " \n\t", Options{}, ErrEmpty, "the input is blank"},
		{"empty array", " [ ] ", Options{}, ErrEmpty, "the array has no items"},
		{"question without items", `{"id": "q", "input": "x", "profile": []}`, Options{}, ErrEmpty, `question "q" (line 1) has no profile items`},
		{"question with null profile", `{"id": "q", "input": "x", "profile": null}`, Options{}, ErrEmpty, "null profile"},
		{"questions without id", questions, Options{}, ErrNeedQuestionID, "pass a question id"},
		{"questions jsonl without id", questionJSON + "\n" + questionJSON, Options{}, ErrNeedQuestionID, "pass a question id"},
		{"unknown question", questions, Options{QuestionID: "q9"}, ErrQuestionNotFound, `no question has id "q9" (2 questions read)`},
		{"single question, other id", questionJSON, Options{QuestionID: "q9"}, ErrQuestionNotFound, `whose id is "q7", not "q9"`},
		{"question input not a string", `{"id": "q", "input": 5, "profile": [{"text": "a"}]}`, Options{}, nil, `question "q" (line 1): "input" must be a string, found a number`},
		{"question profile not an array", `{"id": "q", "input": "x", "profile": "a"}`, Options{}, nil, `"profile": expected a JSON array, found a string`},
		{"question invalid utf8", "{\"id\": \"q\", \"input\": \"x\", \"profile\": [{\"text\": \"\xff\"}]}", Options{}, nil, `question "q" (line 1): invalid UTF-8 byte 0xff`},
		{"scalar", ` "just a string"`, Options{}, nil, "expected a JSON array, a JSON object or JSON Lines of objects, found a string at line 1"},
		{"garbage", "\n  hello", Options{}, nil, "invalid JSON at line 2, column 3"},
		{"invalid json in array", "[\n{\"text\": \"a\"},\n{\"text\": }\n]", Options{}, nil, "invalid JSON at line 3, column 10"},
		{"invalid json in jsonl", "{\"text\": \"a\"}\n{\"text\": \"b\"\n", Options{}, nil, "line 3, column 1"},
		{"item not object", "[{\"text\": \"a\"},\n 5]", Options{}, nil, "item 1 (line 2): expected a JSON object, found a number"},
		{"jsonl item not object", "{\"text\": \"a\"}\n[1]\n", Options{}, nil, "item 1 (line 2): expected a JSON object, found an array"},
		{"invalid utf8", "[{\"id\": \"a\", \"text\": \"ok\"},\n {\"id\": \"b\", \"text\": \"bad\xc3\"}]", Options{}, nil, `item 1 (id "b", line 2): invalid UTF-8 byte 0xc3`},
		{"lone surrogate", `[{"id": 3, "text": "\udc00"}]`, Options{}, nil, `item 0 (id "3", line 1): unpaired UTF-16 surrogate`},
		{"no usable items", `[{"id": "1", "text": " "}, {"id": "2", "score": 5}]`, Options{}, ErrNoUsableItems, "all 2 items were skipped"},
		{"no usable items for task", `[{"id": "1", "text": "t"}]`, Options{Task: lamp.LaMP2}, ErrNoUsableItems, "profile has no usable items"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parseString(t, tc.in, tc.opts)
			if err == nil {
				t.Fatalf("no error; items %q", texts(p))
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "profile: ") {
				t.Errorf("error %q, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	// The extension does not matter.
	path := filepath.Join(dir, "history.txt")
	if err := os.WriteFile(path, []byte("{\"text\": \"a\"}\n{\"text\": \"b\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := Load(path, Options{})
	if err != nil || p.Format != FormatJSONL || len(p.Items) != 2 {
		t.Fatalf("Load = %+v, %v", p, err)
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte("[1]"), 0o644)
	if _, err := Load(bad, Options{}); err == nil || !strings.HasPrefix(err.Error(), "profile: "+bad+": item 0") {
		t.Errorf("error %v should name the file", err)
	}
	if _, err := Load(filepath.Join(dir, "absent.json"), Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("absent file error %v", err)
	}
}

func TestTextSelection(t *testing.T) {
	item := `{"id": "1", "title": " The Title ", "abstract": "An abstract.", "text": "Body", "description": "Desc",
	          "score": "5", "tag": "comedy", "date": "2013", "user_id": "u1", "zeta": "Z", "alpha": "A", "count": 3, "flag": true}`
	tests := []struct {
		name string
		in   string
		opts Options
		want string
	}{
		{"text field wins", item, Options{}, "Body"},
		{"default without text", strings.Replace(item, `"text": "Body", `, "", 1), Options{}, "The Title Desc An abstract. A Z"},
		{"text not a string", `{"text": 5, "title": "T"}`, Options{}, "T"},
		{"blank text", `{"text": "  ", "title": "T"}`, Options{}, "T"},
		{"only metadata and a body", `{"id": "x", "score": "3", "body": "B"}`, Options{}, "B"},
		{"lamp1", item, Options{Task: lamp.LaMP1}, "The Title An abstract."},
		{"lamp2", item, Options{Task: lamp.LaMP2}, "Desc"},
		{"lamp3", item, Options{Task: lamp.MustParseTask("LaMP_time_3")}, "Body"},
		{"lamp4 text then title", item, Options{Task: lamp.LaMP4}, "Body The Title"},
		{"lamp5", item, Options{Task: lamp.LaMP5}, "The Title An abstract."},
		{"lamp7", item, Options{Task: lamp.LaMP7}, "Body"},
		{"explicit fields override task", item, Options{Task: lamp.LaMP7, Fields: SplitFields("abstract, title")}, "An abstract. The Title"},
		{"separator", item, Options{Fields: []string{"title", "abstract"}, Separator: "\n\n"}, "The Title\n\nAn abstract."},
		{"numbers and booleans when asked", item, Options{Fields: []string{"count", "flag", "score"}}, "3 true 5"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parseString(t, "["+tc.in+"]", tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Items[0].Text; got != tc.want {
				t.Errorf("text %q, want %q", got, tc.want)
			}
		})
	}
	p, _ := parseString(t, "["+item+"]", Options{})
	it := p.Items[0]
	if it.ID != "1" || it.Fields["count"] != "3" || it.Fields["flag"] != "true" || it.Fields["title"] != " The Title " || it.Fields["id"] != "" {
		t.Errorf("fields %v", it.Fields)
	}
	if _, ok := it.Fields["id"]; ok {
		t.Error("Fields should not hold the id")
	}
}

func TestWarnings(t *testing.T) {
	in := `[
{"id": "a", "text": "one", "date": "someday"},
{"id": "b", "text": "  "},
{"id": "c", "text": "three", "extra": {"x": 1}, "gone": null},
{"id": true, "text": "four"},
{"title": "five"}
]`
	p, err := parseString(t, in, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := `item 0 (id "a", line 2): unparsable date "someday" in field "date"; date ignored
item 1 (id "b", line 3): "text" is blank; item skipped
item 2 (id "c", line 4): field "extra" is an object; ignored
item 3 (line 5): "id" is a boolean; ignored`
	if got := warnings(p); got != want {
		t.Errorf("warnings:\n%s\nwant:\n%s", got, want)
	}
	if !slices.Equal(texts(p), []string{"one", "three", "four", "five"}) || p.Usable != 4 {
		t.Errorf("texts %q usable %d", texts(p), p.Usable)
	}
	if !slices.Equal(ids(p), []string{"a", "c", "", ""}) {
		t.Errorf("ids %q", ids(p))
	}
	if p.Items[0].HasDate() {
		t.Error("unparsable date kept")
	}

	// Missing requested fields.
	p, err = parseString(t, `[{"id": "1", "title": "T"}, {"id": "2", "title": "U", "abstract": "A"}]`, Options{Task: lamp.LaMP5})
	if err != nil {
		t.Fatal(err)
	}
	if got := warnings(p); got != `item 0 (id "1", line 1): missing field(s) abstract` {
		t.Errorf("warnings %q", got)
	}
	// A question id for a plain list.
	p, err = parseString(t, `[{"text": "a"}]`, Options{QuestionID: "7"})
	if err != nil || warnings(p) != `question id "7" ignored: the input is a plain list of items` {
		t.Errorf("%v, warnings %q", err, warnings(p))
	}
	// Items in a question carry no line.
	p, err = parseString(t, `{"id": "q", "input": "x", "profile": [{"id": "1", "text": ""}, {"id": "2", "text": "b"}]}`, Options{})
	if err != nil || warnings(p) != `item 0 (id "1"): "text" is blank; item skipped` {
		t.Errorf("%v, warnings %q", err, warnings(p))
	}
}

func TestStrict(t *testing.T) {
	tests := []struct {
		name string
		in   string
		opts Options
		want string
	}{
		{"no text", `[{"id": "1", "text": "a"}, {"id": "2"}]`, Options{}, `item 1 (id "2", line 1): no text (no "text" and no other text field); item skipped (strict mode)`},
		{"date", `[{"text": "a", "date": "soon"}]`, Options{}, `unparsable date "soon"`},
		{"missing field", `[{"title": "a"}]`, Options{Task: lamp.LaMP1}, "missing field(s) abstract"},
		{"question id", `[{"text": "a"}]`, Options{QuestionID: "1"}, `question id "1" ignored`},
		{"partial dates", `[{"text": "a", "date": "2013"}, {"text": "b"}, {"text": "c"}]`, Options{MaxItems: 2}, "2 of 3 items have no date"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseString(t, tc.in, tc.opts); err != nil {
				t.Fatalf("lenient mode failed: %v", err)
			}
			tc.opts.Strict = true
			_, err := parseString(t, tc.in, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := parseString(t, `[{"id": "1", "text": "a", "date": "2013-01-01"}]`, Options{Strict: true}); err != nil {
		t.Errorf("clean profile in strict mode: %v", err)
	}
}

func TestMaxItems(t *testing.T) {
	dated := `[
{"id": "a", "text": "a", "date": "2015-01-01"},
{"id": "b", "text": "b", "date": "2011-01-01"},
{"id": "c", "text": "c", "date": "2019-01-01"},
{"id": "d", "text": "d", "date": "2012-01-01"},
{"id": "e", "text": "e", "date": "2019-01-01"}
]`
	undated := `[{"id": "a", "text": "a"}, {"id": "b", "text": "b"}, {"id": "c", "text": "c"}, {"id": "d", "text": "d"}]`
	partial := `[{"id": "a", "text": "a", "date": "2020"}, {"id": "b", "text": "b"}, {"id": "c", "text": "c"}]`
	tests := []struct {
		name string
		in   string
		max  int
		want []string
		warn string
	}{
		{"most recent, file order", dated, 3, []string{"a", "c", "e"}, ""},
		// c and e share a date: the later in the file is the more recent.
		{"tie on date", dated, 1, []string{"e"}, ""},
		{"tie on date, two", dated, 2, []string{"c", "e"}, ""},
		{"all fit", dated, 5, []string{"a", "b", "c", "d", "e"}, ""},
		{"unlimited", dated, -1, []string{"a", "b", "c", "d", "e"}, ""},
		{"undated: last in file order", undated, 2, []string{"c", "d"}, ""},
		{"partial dates: file order", partial, 2, []string{"b", "c"}, "2 of 3 items have no date; kept the last 2 in file order"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parseString(t, tc.in, Options{MaxItems: tc.max})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ids(p), tc.want) {
				t.Errorf("kept %q, want %q", ids(p), tc.want)
			}
			if warnings(p) != tc.warn {
				t.Errorf("warnings %q, want %q", warnings(p), tc.warn)
			}
		})
	}

	// The default keeps 512, and Usable counts them all.
	var b strings.Builder
	b.WriteString("[")
	for i := range 600 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"id": "%d", "text": "t%d"}`, i, i)
	}
	b.WriteString("]")
	p, err := parseString(t, b.String(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Items) != DefaultMaxItems || p.Usable != 600 || p.Items[0].ID != "88" || p.Items[511].ID != "599" || p.Items[0].Index != 88 {
		t.Errorf("kept %d items from %q, usable %d", len(p.Items), p.Items[0].ID, p.Usable)
	}
}

func TestDatesOnItems(t *testing.T) {
	in := `[{"text": "a", "date": 2013}, {"text": "b", "timestamp": 1367490030}, {"text": "c", "created_at": "Thu May 02 10:20:30 +0000 2013"},
	        {"text": "d", "time": "2013-05-02 10:20:30"}, {"text": "e"}]`
	p, err := parseString(t, in, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Time{
		time.Date(2013, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2013, 5, 2, 10, 20, 30, 0, time.UTC),
		time.Date(2013, 5, 2, 10, 20, 30, 0, time.UTC),
		time.Date(2013, 5, 2, 10, 20, 30, 0, time.UTC),
		{},
	}
	for i, w := range want {
		if !p.Items[i].Date.Equal(w) {
			t.Errorf("item %d date %v, want %v", i, p.Items[i].Date, w)
		}
	}
	if p.Items[4].HasDate() || !p.Items[0].HasDate() {
		t.Error("HasDate")
	}
}

func TestHash(t *testing.T) {
	p, err := parseString(t, `[{"id": "1", "text": "hello"}, {"id": "2", "text": " hello "}, {"id": "3", "text": "Hello"}]`, Options{})
	if err != nil {
		t.Fatal(err)
	}
	const helloSHA256 = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
	if h := p.Items[0].Hash(); h != helloSHA256 {
		t.Errorf("Hash = %s", h)
	}
	// Same selected text, same hash, whatever the id; other text, other hash.
	if p.Items[1].Hash() != helloSHA256 || p.Items[2].Hash() == helloSHA256 {
		t.Error("hash does not follow the text")
	}
	if (Item{}).Hash() != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Error("hash of the empty text")
	}
}

func TestSplitFields(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"title,abstract", []string{"title", "abstract"}},
		{" title , abstract ,", []string{"title", "abstract"}},
		{"", nil},
		{",,", nil},
		{"text", []string{"text"}},
	}
	for _, tc := range tests {
		if got := SplitFields(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("SplitFields(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestAppend(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, content string
		format        Format
	}{
		{"p.jsonl", "{\"id\":\"1\",\"text\":\"first\"}", FormatJSONL},
		{"p.json", "[{\"id\":\"1\",\"text\":\"first\"}]", FormatArray},
	} {
		path := filepath.Join(dir, tc.name)
		if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, text := range []string{"second", "third \u00e9"} {
			if err := Append(path, tc.format, map[string]string{"id": text, "text": text}); err != nil {
				t.Fatal(err)
			}
		}
		p, err := Load(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if p.Format != tc.format || len(p.Items) != 3 || p.Items[2].Text != "third \u00e9" {
			t.Fatalf("%s after appends: %+v", tc.name, p.Items)
		}
	}
	if err := Append(filepath.Join(dir, "p.json"), FormatQuestion, map[string]string{"text": "x"}); err == nil {
		t.Fatal("appended to a LaMP question")
	}
	if err := Append(filepath.Join(dir, "p.json"), FormatArray, map[string]string{"text": "bad \xff"}); err == nil {
		t.Fatal("appended invalid UTF-8")
	}
}

// TestDuplicateQuestionIDWarns: a questions file that holds the selected
// id more than once loads the first and warns, naming the others.
func TestDuplicateQuestionIDWarns(t *testing.T) {
	q := func(id, text string) string {
		return `{"id": "` + id + `", "input": "in", "profile": [{"id": "1", "text": "` + text + `"}]}`
	}
	for _, sel := range []string{"7", "9"} {
		src := "[\n" + q("7", "first") + ",\n" + q("9", "second") + ",\n" + q("7", "third") + ",\n" + q("9", "fourth") + "\n]"
		p, err := Parse(strings.NewReader(src), Options{QuestionID: sel})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"7": "first", "9": "second"}[sel]
		if len(p.Items) != 1 || p.Items[0].Text != want {
			t.Fatalf("id %s: items %v, want the first question's", sel, p.Items)
		}
		var ws []string
		for _, w := range p.Warnings {
			ws = append(ws, w.String())
		}
		line := map[string]string{"7": "line 4", "9": "line 5"}[sel]
		if len(ws) != 1 || !strings.Contains(ws[0], `question id "`+sel+`" appears 2 times`) || !strings.Contains(ws[0], line) {
			t.Fatalf("id %s: warnings %q", sel, ws)
		}
	}
	// A unique id gives no warning.
	p, err := Parse(strings.NewReader("["+q("1", "a")+","+q("2", "b")+"]"), Options{QuestionID: "1"})
	if err != nil || len(p.Warnings) != 0 {
		t.Fatalf("unique id: %v %v", err, p.Warnings)
	}
}

// TestLoadErrorsNameTheProfileOnce: every failure of Load names the
// profile and its file once ("profile: FILE: WHAT"), whatever layer it
// comes from (the file system, the context, the parser), and a LoadError
// wrapped again keeps its single prefix.
func TestLoadErrorsNameTheProfileOnce(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte("[1]"), 0o644)
	absent := filepath.Join(dir, "absent.json")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	good := filepath.Join(dir, "good.json")
	os.WriteFile(good, []byte(`[{"text": "a"}]`), 0o644)
	for _, tc := range []struct {
		name string
		err  func() error
		path string
	}{
		{"absent", func() error { _, err := Load(absent, Options{}); return err }, absent},
		{"folder", func() error { _, err := Load(dir, Options{}); return err }, dir},
		{"parse", func() error { _, err := Load(bad, Options{}); return err }, bad},
		{"cancelled", func() error { _, err := LoadContext(ctx, good, Options{}); return err }, good},
		{"wrapped twice", func() error { return loadError(bad, loadError(bad, errors.New("x"))) }, bad},
	} {
		err := tc.err()
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "profile: "+tc.path+": ") || strings.Count(msg, "profile") != 1 || strings.Count(msg, tc.path) != 1 {
			t.Errorf("%s: %q: want \"profile: %s: ...\" naming both once", tc.name, msg, tc.path)
		}
		var le *LoadError
		if !errors.As(err, &le) {
			t.Errorf("%s: %T is not a *LoadError", tc.name, err)
		}
	}
}

// TestKeepRecent is the one max-items rule: the newest by date when every
// item has one, else the last in order (a store's last inserted).
func TestKeepRecent(t *testing.T) {
	d := func(s string) time.Time { tm, _ := time.Parse("2006-01-02", s); return tm }
	dated := []Item{{Text: "a", Date: d("2024-03-01")}, {Text: "b", Date: d("2024-01-01")}, {Text: "c", Date: d("2024-02-01")}}
	kept, byDate := KeepRecent(dated, 2)
	if !byDate || len(kept) != 2 || kept[0].Text != "a" || kept[1].Text != "c" {
		t.Fatalf("dated: %+v %v", kept, byDate)
	}
	undated := append(dated[:2:2], Item{Text: "z"})
	kept, byDate = KeepRecent(undated, 2)
	if byDate || len(kept) != 2 || kept[0].Text != "b" || kept[1].Text != "z" {
		t.Fatalf("undated: %+v %v", kept, byDate)
	}
	if kept, _ := KeepRecent(dated, 0); len(kept) != 3 {
		t.Fatalf("no bound kept %d", len(kept))
	}
}
