package profile

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/pplug/pplug/lamp"
)

// FromQuestion on a decoded question gives what Parse gives for its JSON.
func TestFromQuestionMatchesParse(t *testing.T) {
	in := `{"id": "q3", "input": "Generate a headline for the following article: Snow.",
 "profile": [
  {"id": "1", "title": "T1", "text": "Body 1", "date": "2013-05-02"},
  {"id": "2", "title": "T2", "text": "  ", "date": "2014-01-01"},
  {"id": "3", "title": "T3", "text": "Body 3", "date": "not a date"},
  {"id": "4", "title": "T4", "text": "Body 4", "date": "2012-01-01", "extra": null},
  {"id": "5", "title": "T5", "text": "Body 5", "date": "2015-01-01"},
  {"id": "6", "abstract": "A6", "description": "D6", "date": "2016-01-01"}
 ]}`
	var q lamp.Question
	if err := json.Unmarshal([]byte(in), &q); err != nil {
		t.Fatal(err)
	}
	for name, opts := range map[string]Options{
		"task":          {Task: lamp.LaMP4},
		"fields":        {Fields: []string{"title", "abstract"}, Separator: " | "},
		"default rule":  {},
		"max items":     {Task: lamp.LaMP5, MaxItems: 2},
		"max items all": {MaxItems: 3},
		"question id":   {QuestionID: "q3", Task: lamp.LaMP7},
	} {
		t.Run(name, func(t *testing.T) {
			want, err := Parse(strings.NewReader(in), opts)
			if err != nil {
				t.Fatal(err)
			}
			got, err := FromQuestion(q, opts)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("FromQuestion:\n%+v\nParse:\n%+v", got, want)
			}
			if got.Format != FormatQuestion || got.QuestionID != "q3" || got.Query != q.Input {
				t.Errorf("format %v, id %q, query %q", got.Format, got.QuestionID, got.Query)
			}
		})
	}
	// Strict mode fails on the same warnings.
	_, perr := Parse(strings.NewReader(in), Options{Task: lamp.LaMP4, Strict: true})
	_, qerr := FromQuestion(q, Options{Task: lamp.LaMP4, Strict: true})
	if perr == nil || qerr == nil || !strings.Contains(qerr.Error(), "strict mode") {
		t.Fatalf("strict: Parse %v, FromQuestion %v", perr, qerr)
	}
}

func TestFromQuestionErrors(t *testing.T) {
	ok := lamp.Question{ID: "q", Input: "x", Profile: []lamp.ProfileItem{{ID: "1", Fields: map[string]string{"text": "a"}}}}
	bad := func(f func(q *lamp.Question)) lamp.Question {
		q := ok
		q.Profile = []lamp.ProfileItem{{ID: "1", Fields: map[string]string{"text": "a"}}}
		f(&q)
		return q
	}
	tests := []struct {
		name string
		q    lamp.Question
		opts Options
		is   error
		want string
	}{
		{"no profile", bad(func(q *lamp.Question) { q.Profile = nil }), Options{}, ErrEmpty, `question "q" has no profile items`},
		{"other id", ok, Options{QuestionID: "z"}, ErrQuestionNotFound, `not "z"`},
		{"no usable items", bad(func(q *lamp.Question) { q.Profile[0].Fields["text"] = " " }), Options{}, ErrNoUsableItems, `question "q"`},
		{"no text for the task", ok, Options{Task: lamp.LaMP2}, ErrNoUsableItems, "all 1 items were skipped"},
		{"invalid utf-8 input", bad(func(q *lamp.Question) { q.Input = "a\xffb" }), Options{}, nil, "not valid UTF-8"},
		{"invalid utf-8 field", bad(func(q *lamp.Question) { q.Profile[0].Fields["text"] = "a\xc3" }), Options{}, nil, `item 0 (id "1"): field "text" is not valid UTF-8`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := FromQuestion(tc.q, tc.opts)
			if err == nil {
				t.Fatalf("no error; items %q", p.Texts())
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
