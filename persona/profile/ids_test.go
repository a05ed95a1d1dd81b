package profile

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/pplug/pplug/lamp"
)

// An id names one item: two items with one id are an error naming both,
// in every input format, in strict mode or not, and whether or not the
// second item is usable; the item is never dropped or kept twice.
func TestDuplicateIDIsAnError(t *testing.T) {
	tests := []struct {
		name, in string
		want     string
	}{
		{"array", "[{\"id\": \"a\", \"text\": \"x\"},\n{\"id\": \"b\", \"text\": \"y\"},\n{\"id\": \"a\", \"text\": \"z\"}]",
			`item 0 (line 1) and item 2 (line 3) both have id "a"`},
		{"jsonl", "{\"id\": \"a\", \"text\": \"x\"}\n{\"id\": \"a\", \"text\": \"y\"}\n",
			`item 0 (line 1) and item 1 (line 2) both have id "a"`},
		{"number id", "{\"id\": 7, \"text\": \"x\"}\n{\"id\": \"7\", \"text\": \"y\"}\n",
			`item 0 (line 1) and item 1 (line 2) both have id "7"`},
		{"second unusable", "{\"id\": \"a\", \"text\": \"x\"}\n{\"id\": \"a\", \"text\": \" \"}\n",
			`both have id "a"`},
		{"question", `{"id": "q", "input": "i", "profile": [{"id": "1", "text": "x"}, {"id": "1", "text": "y"}]}`,
			`item 0 and item 1 both have id "1"`},
	}
	for _, tc := range tests {
		for _, strict := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s strict=%v", tc.name, strict), func(t *testing.T) {
				_, err := parseString(t, tc.in, Options{Strict: strict})
				if !errors.Is(err, ErrDuplicateID) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v, want ErrDuplicateID naming %q", err, tc.want)
				}
			})
		}
	}
	var q lamp.Question
	if err := json.Unmarshal([]byte(tests[len(tests)-1].in), &q); err != nil {
		t.Fatal(err)
	}
	if _, err := FromQuestion(q, Options{}); !errors.Is(err, ErrDuplicateID) || !strings.Contains(err.Error(), `question "q"`) {
		t.Fatalf("FromQuestion: %v", err)
	}
	// Items without ids never collide.
	if p, err := parseString(t, `[{"text": "x"}, {"text": "y"}, {"id": null, "text": "z"}]`, Options{}); err != nil || len(p.Items) != 3 {
		t.Fatalf("items without ids: %v", err)
	}
}

// An id is at most MaxIDBytes of printable UTF-8; messages quote a short
// prefix of it.
func TestBadIDIsAnError(t *testing.T) {
	long := strings.Repeat("x", 1<<20)
	for name, id := range map[string]string{
		"too long": strings.Repeat("é", MaxIDBytes/2) + "x",
		"huge":     long,
		"control":  "a\u0007b",
		"newline":  "a\nb",
	} {
		t.Run(name, func(t *testing.T) {
			js, _ := json.Marshal([]map[string]string{{"id": id, "text": "t"}})
			_, err := parseString(t, string(js), Options{})
			if !errors.Is(err, ErrBadID) || !strings.Contains(err.Error(), "item 0") {
				t.Fatalf("error %v, want ErrBadID naming item 0", err)
			}
			if len(err.Error()) > 400 {
				t.Fatalf("the error quotes %d bytes of the id", len(err.Error()))
			}
		})
	}
	for _, id := range []string{"1", "a b", "日本", strings.Repeat("x", MaxIDBytes), "a/b"} {
		if err := CheckID(id); err != nil {
			t.Errorf("%q: %v", id, err)
		}
	}
	if q := QuoteID(long); len(q) > 100 || !strings.Contains(q, "(1048576 bytes)") {
		t.Errorf("QuoteID: %q", q)
	}
	if q := QuoteID(strings.Repeat("é", 40)); !strings.HasPrefix(q, `"`+strings.Repeat("é", 32)+`"...`) {
		t.Errorf("QuoteID cuts inside a character: %q", q)
	}
}

// A profile where nothing is usable says why: the reasons with counts and
// examples, or the requested fields that no item has.
func TestNoUsableItemsSaysWhy(t *testing.T) {
	tests := []struct {
		name, in string
		opts     Options
		want     string
	}{
		{"text a number", "{\"text\": 5}\n{\"text\": 6}\n", Options{},
			`2 items: "text" is a number (a string is needed); item skipped (item 0 (line 1), item 1 (line 2))`},
		{"text an object", "{\"text\": {\"a\": 1}}\n", Options{}, `"text" is an object (a string is needed)`},
		{"no field", "{\"text\": \"a\", \"date\": \"2020-01-01\"}\n", Options{Fields: []string{"title"}},
			`no item has a field title; fields seen: "date", "text"`},
		{"task fields", "{\"text\": \"a\"}\n", Options{Task: lamp.LaMP5}, `no item has a field title, abstract; fields seen: "text"`},
		{"blank field", "{\"title\": \" \"}\n", Options{Fields: []string{"title"}}, `field(s) title blank or not text`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseString(t, tc.in, tc.opts)
			if !errors.Is(err, ErrNoUsableItems) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want ErrNoUsableItems with %q", err, tc.want)
			}
		})
	}
}

// Summarize gives one line per reason with counts and the first examples.
func TestSummarize(t *testing.T) {
	var b strings.Builder
	for i := range 1000 {
		switch {
		case i%100 == 7:
			fmt.Fprintf(&b, "{\"text\": \"t%d\", \"date\": \"someday\"}\n", i)
		case i%2 == 0:
			fmt.Fprintf(&b, "{\"id\": \"%d\", \"text\": %d}\n", i, i)
		default:
			fmt.Fprintf(&b, "{\"text\": \"t%d\"}\n", i)
		}
	}
	p, err := parseString(t, b.String(), Options{MaxItems: -1})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(Summarize(p.Warnings), "\n")
	want := `500 items: "text" is a number (a string is needed); item skipped (item 0 (id "0", line 1), item 2 (id "2", line 3), item 4 (id "4", line 5), ...)
10 items: unparsable date ignored (item 7 (line 8), item 107 (line 108), item 207 (line 208), ...)`
	if got != want {
		t.Errorf("summary:\n%s\nwant:\n%s", got, want)
	}
	if len(p.Items) != 500 || p.Kept() != "" {
		t.Errorf("%d items, kept %q", len(p.Items), p.Kept())
	}
}

// Kept says how many usable items MaxItems dropped and by which rule.
func TestKeptNamesTheCut(t *testing.T) {
	var dated, plain strings.Builder
	for i := range 600 {
		fmt.Fprintf(&dated, "{\"text\": \"t%d\", \"date\": \"2020-01-%02d\"}\n", i, i%28+1)
		fmt.Fprintf(&plain, "{\"text\": \"t%d\"}\n", i)
	}
	for in, want := range map[string]string{
		dated.String(): "kept 512 of 600 usable items, the most recent by date; 88 dropped",
		plain.String(): "kept 512 of 600 usable items, the last in file order (not every item has a date); 88 dropped",
	} {
		p, err := parseString(t, in, Options{})
		if err != nil || p.Kept() != want {
			t.Errorf("kept %q (%v), want %q", p.Kept(), err, want)
		}
	}
}
