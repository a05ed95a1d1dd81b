package lamp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/pplug/pplug/internal/jsonscan"
)

// ProfileItem is one entry of a user's profile in a questions file: its id
// and its other fields. Field values are kept as text: strings as decoded,
// numbers and booleans exactly as written in the JSON (a score of 4 is "4",
// a date of 2013 is "2013"). Fields whose value is null are left out.
type ProfileItem struct {
	ID     string
	Fields map[string]string // all fields but "id"
}

// Question is one element of a {split}_questions.json file: the task input
// for one user and that user's profile.
type Question struct {
	ID      string
	Input   string
	Profile []ProfileItem
}

// Output is one element of the "golds" array of a {split}_outputs.json file
// (or of a predictions file, which has the same format).
type Output struct {
	ID     string `json:"id"`
	Output string `json:"output"`
}

// Outputs is a {split}_outputs.json file or a predictions file:
// {"task": "LaMP_X", "golds": [{"id", "output"}, ...]}.
type Outputs struct {
	Task  string   `json:"task"` // as written in the file, e.g. "LaMP_time_2"; may be empty
	Golds []Output `json:"golds"`
	// Labels, when set (a pplug extension), are the answers a generic
	// task's golds come from: it is then scored by exact match.
	Labels []string `json:"labels,omitempty"`
}

// ParsedTask is the task the file names: a LaMP task by its name, Generic
// when it names none (no "task", or a name that is no LaMP task's, such as
// "my-notes"). A name that looks like a LaMP task but is none ("LaMP_9")
// is an error.
func (o Outputs) ParsedTask() (Task, error) {
	name := strings.TrimSpace(o.Task)
	if name == "" {
		return Generic, nil
	}
	t, err := ParseTask(name)
	if err != nil && !strings.HasPrefix(strings.ToLower(name), "lamp") {
		return Generic, nil
	}
	return t, err
}

// DataError is a problem with a LaMP data file or one of its elements.
type DataError struct {
	File  string // the file's name or path; may be empty
	Index int    // 0-based index of the element in its array; -1 when not about one element
	ID    string // the element's id, when known
	Line  int    // 1-based line of the element; 0 when unknown
	Err   error  // what is wrong
}

func (e *DataError) Error() string {
	var b bytes.Buffer
	b.WriteString("lamp: ")
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	if e.Index >= 0 {
		fmt.Fprintf(&b, "element %d", e.Index)
		var extra []string
		if e.ID != "" {
			extra = append(extra, "id "+strconv.Quote(e.ID))
		}
		if e.Line > 0 {
			extra = append(extra, "line "+strconv.Itoa(e.Line))
		}
		if len(extra) > 0 {
			b.WriteString(" (")
			for i, x := range extra {
				if i > 0 {
					b.WriteString(", ")
				}
				b.WriteString(x)
			}
			b.WriteString(")")
		}
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *DataError) Unwrap() error { return e.Err }

// scalarField decodes a member that must be a string or a number.
func scalarField(m map[string]json.RawMessage, key string, numberOK bool) (string, error) {
	raw, ok := m[key]
	if !ok {
		return "", fmt.Errorf("missing %q", key)
	}
	s, kind, ok := jsonscan.Scalar(raw)
	if !ok || kind == jsonscan.Bool || (kind == jsonscan.Number && !numberOK) {
		want := "a string"
		if numberOK {
			want = "a string or a number"
		}
		return "", fmt.Errorf("%q must be %s, found %s", key, want, jsonscan.Describe(kind))
	}
	return s, nil
}

// decodeProfileItem decodes one profile item object.
func decodeProfileItem(raw json.RawMessage) (ProfileItem, error) {
	m, err := jsonscan.Members(raw)
	if err != nil {
		return ProfileItem{}, err
	}
	id, err := scalarField(m, "id", true)
	if err != nil {
		return ProfileItem{}, err
	}
	it := ProfileItem{ID: id, Fields: make(map[string]string, len(m)-1)}
	for k, v := range m {
		if k == "id" {
			continue
		}
		s, kind, ok := jsonscan.Scalar(v)
		if !ok {
			if kind == jsonscan.Null {
				continue
			}
			return it, fmt.Errorf("field %q is %s; only strings, numbers and booleans are supported", k, jsonscan.Describe(kind))
		}
		it.Fields[k] = s
	}
	return it, nil
}

// decodeQuestion decodes one question object. On error it returns whatever
// id it could read, so that the error can name the question.
func decodeQuestion(raw json.RawMessage) (Question, error) {
	m, err := jsonscan.Members(raw)
	if err != nil {
		return Question{}, err
	}
	id, err := scalarField(m, "id", true)
	if err != nil {
		return Question{}, err
	}
	q := Question{ID: id}
	if err := jsonscan.CheckText(raw); err != nil {
		return q, fmt.Errorf("question %q: %v", id, err)
	}
	if q.Input, err = scalarField(m, "input", false); err != nil {
		return q, err
	}
	praw, ok := m["profile"]
	if !ok || jsonscan.KindOf(praw) == jsonscan.Null {
		return q, nil
	}
	elems, err := jsonscan.Elements(praw)
	if err != nil {
		return q, fmt.Errorf("\"profile\": %v", err)
	}
	q.Profile = make([]ProfileItem, len(elems))
	for i, e := range elems {
		it, err := decodeProfileItem(e)
		if err != nil {
			if it.ID != "" {
				return q, fmt.Errorf("profile item %d (id %q): %v", i, it.ID, err)
			}
			return q, fmt.Errorf("profile item %d: %v", i, err)
		}
		q.Profile[i] = it
	}
	return q, nil
}

// decodeOutput decodes one element of a "golds" array.
func decodeOutput(raw json.RawMessage) (Output, error) {
	m, err := jsonscan.Members(raw)
	if err != nil {
		return Output{}, err
	}
	id, err := scalarField(m, "id", true)
	if err != nil {
		return Output{}, err
	}
	o := Output{ID: id}
	if err := jsonscan.CheckText(raw); err != nil {
		return o, err
	}
	if o.Output, err = scalarField(m, "output", true); err != nil {
		return o, err
	}
	return o, nil
}

// UnmarshalJSON decodes a profile item with the rules of the file readers:
// "id" is required (string or number), other fields must be strings,
// numbers, booleans or null.
func (p *ProfileItem) UnmarshalJSON(b []byte) error {
	if err := jsonscan.CheckText(b); err != nil {
		return err
	}
	it, err := decodeProfileItem(b)
	if err != nil {
		return err
	}
	*p = it
	return nil
}

// MarshalJSON encodes the item as an object with "id" first and the other
// fields in sorted order, all as strings.
func (p ProfileItem) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`{"id":`)
	if err := writeJSONString(&b, p.ID); err != nil {
		return nil, fmt.Errorf("profile item id: %w", err)
	}
	keys := make([]string, 0, len(p.Fields))
	for k := range p.Fields {
		if k != "id" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteByte(',')
		if err := writeJSONString(&b, k); err != nil {
			return nil, fmt.Errorf("profile item %q: field name: %w", p.ID, err)
		}
		b.WriteByte(':')
		if err := writeJSONString(&b, p.Fields[k]); err != nil {
			return nil, fmt.Errorf("profile item %q: field %q: %w", p.ID, k, err)
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalJSON decodes a question with the rules of the file readers.
func (q *Question) UnmarshalJSON(b []byte) error {
	d, err := decodeQuestion(b)
	if err != nil {
		return err
	}
	*q = d
	return nil
}

// MarshalJSON encodes the question as {"id", "input", "profile"}.
func (q Question) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`{"id":`)
	if err := writeJSONString(&b, q.ID); err != nil {
		return nil, fmt.Errorf("question id: %w", err)
	}
	b.WriteString(`,"input":`)
	if err := writeJSONString(&b, q.Input); err != nil {
		return nil, fmt.Errorf("question %q: input: %w", q.ID, err)
	}
	b.WriteString(`,"profile":[`)
	for i, it := range q.Profile {
		if i > 0 {
			b.WriteByte(',')
		}
		ib, err := it.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("question %q: %w", q.ID, err)
		}
		b.Write(ib)
	}
	b.WriteString("]}")
	return b.Bytes(), nil
}

// UnmarshalJSON decodes an output, accepting numbers for "id" and "output".
func (o *Output) UnmarshalJSON(b []byte) error {
	d, err := decodeOutput(b)
	if err != nil {
		return err
	}
	*o = d
	return nil
}

// MarshalJSON encodes the output as {"id", "output"}, failing on invalid
// UTF-8 rather than replacing it.
func (o Output) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`{"id":`)
	if err := writeJSONString(&b, o.ID); err != nil {
		return nil, fmt.Errorf("output id: %w", err)
	}
	b.WriteString(`,"output":`)
	if err := writeJSONString(&b, o.Output); err != nil {
		return nil, fmt.Errorf("output %q: %w", o.ID, err)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// writeJSONString writes s as a JSON string without HTML escaping. Invalid
// UTF-8 is an error (encoding/json would silently replace it).
func writeJSONString(b *bytes.Buffer, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("invalid UTF-8 in %q", s)
	}
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return err
	}
	b.Truncate(b.Len() - 1) // Encode adds a newline
	return nil
}
