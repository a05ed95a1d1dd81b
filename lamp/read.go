package lamp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/pplug/pplug/internal/jsonscan"
	"github.com/pplug/pplug/internal/missing"
)

// QuestionReader streams the questions of a {split}_questions.json file, one
// at a time, so that files of hundreds of megabytes need not be held in
// memory.
//
// Every question must be an object with an "id" (string or number) and an
// "input" (string); "profile", when present and not null, must be an array
// of objects with an "id". Invalid UTF-8, and unpaired surrogate escapes,
// anywhere in a question's text are errors that name the question. All
// errors are *DataError values naming the file, the element index and what
// is wrong; JSON syntax errors wrap a *jsonscan.SyntaxError with line and
// column.
type QuestionReader struct {
	name   string
	js     *jsonscan.Reader
	opened bool
	n      int
	err    error
}

// NewQuestionReader returns a reader of the questions in r. name is used in
// error messages (typically the file's path).
func NewQuestionReader(r io.Reader, name string) *QuestionReader {
	return &QuestionReader{name: name, js: jsonscan.NewReader(r)}
}

// Next returns the next question, or io.EOF after the last one. Errors are
// sticky.
func (qr *QuestionReader) Next() (Question, error) {
	if qr.err != nil {
		return Question{}, qr.err
	}
	q, err := qr.next()
	if err != nil {
		qr.err = err
	}
	return q, err
}

func (qr *QuestionReader) next() (Question, error) {
	if !qr.opened {
		if err := qr.js.OpenArray(); err != nil {
			return Question{}, &DataError{File: qr.name, Index: -1, Err: fmt.Errorf("questions file: %w", err)}
		}
		qr.opened = true
	}
	el, err := qr.js.Next()
	if err == io.EOF {
		return Question{}, io.EOF
	}
	if err != nil {
		return Question{}, &DataError{File: qr.name, Index: qr.n, Err: err}
	}
	qr.n++
	q, err := decodeQuestion(el.Raw)
	if err != nil {
		return Question{}, &DataError{File: qr.name, Index: el.Index, ID: q.ID, Line: el.Line, Err: err}
	}
	return q, nil
}

// ScanQuestions calls fn for each question of the questions file at path,
// in file order, stopping at the first error (fn's errors are returned
// as they are).
func ScanQuestions(path string, fn func(q Question) error) error {
	f, err := os.Open(path)
	if err != nil {
		return missing.File(err, missing.LaMP)
	}
	defer f.Close()
	qr := NewQuestionReader(f, path)
	for {
		q, err := qr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(q); err != nil {
			return err
		}
	}
}

// ReadQuestions reads a whole questions file. Questions that share an id
// are kept, with a warning (slog) naming the ids: answers and golds are
// matched by id, so all but one of them are likely to be mismatched.
func ReadQuestions(path string) ([]Question, error) {
	var qs []Question
	err := ScanQuestions(path, func(q Question) error {
		qs = append(qs, q)
		return nil
	})
	if err == nil {
		if dups := DuplicateIDs(qs); len(dups) > 0 {
			slog.Warn(fmt.Sprintf("%s: %d question ids occur more than once (golds and predictions are matched by id; give each question its own id): %s",
				path, len(dups), listIDs(dups)))
		}
	}
	return qs, err
}

// DuplicateIDs returns the ids that more than one question carries, in the
// order of their first repetition.
func DuplicateIDs(qs []Question) []string {
	seen := make(map[string]int, len(qs))
	var dups []string
	for _, q := range qs {
		seen[q.ID]++
		if seen[q.ID] == 2 {
			dups = append(dups, q.ID)
		}
	}
	return dups
}

// ErrNotFound is returned (wrapped) by FindQuestion when no question has
// the id.
var ErrNotFound = errors.New("not found")

// FindQuestion streams the questions file at path and returns the question
// with the given id. Questions before it are checked; those after it are not
// read.
func FindQuestion(path, id string) (Question, error) {
	var found Question
	stop := errors.New("stop")
	err := ScanQuestions(path, func(q Question) error {
		if q.ID == id {
			found = q
			return stop
		}
		return nil
	})
	if err == stop {
		return found, nil
	}
	if err != nil {
		return Question{}, err
	}
	return Question{}, fmt.Errorf("lamp: %s: question %q: %w", path, id, ErrNotFound)
}

// ReadOutputs reads an outputs (golds) or predictions file.
func ReadOutputs(path string) (Outputs, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Outputs{}, missing.File(err, missing.LaMP)
	}
	return decodeOutputs(data, path)
}

// DecodeOutputs reads an outputs or predictions file from r; name is used in
// error messages. Outputs files are small, so they are read whole.
//
// The file must be an object with a "golds" array whose elements are
// objects with "id" and "output" (strings, or numbers kept as written);
// "task", when present, must be a string, and "labels" an array of
// strings. Other members are ignored.
func DecodeOutputs(r io.Reader, name string) (Outputs, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return Outputs{}, err
	}
	return decodeOutputs(data, name)
}

func decodeOutputs(data []byte, name string) (Outputs, error) {
	fail := func(index int, id string, off int64, err error) (Outputs, error) {
		e := &DataError{File: name, Index: index, ID: id, Err: err}
		if off >= 0 {
			e.Line, _ = jsonscan.LineCol(data, off)
		}
		return Outputs{}, e
	}
	body := bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	bom := int64(len(data) - len(body))
	var whole json.RawMessage
	if err := json.Unmarshal(body, &whole); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			off := se.Offset
			if off > 0 && se.Error() != "unexpected end of JSON input" {
				off--
			}
			line, col := jsonscan.LineCol(data, bom+off)
			return fail(-1, "", -1, &jsonscan.SyntaxError{Offset: bom + off, Line: line, Col: col, Msg: se.Error()})
		}
		return fail(-1, "", -1, err)
	}
	if k := jsonscan.KindOf(body); k != jsonscan.Object {
		return fail(-1, "", -1, fmt.Errorf("outputs file must be a JSON object with \"task\" and \"golds\", found %s", jsonscan.Describe(k)))
	}
	// Walk the object with the token API to know where each gold starts.
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.Token() // '{'
	var out Outputs
	sawGolds := false
	for dec.More() {
		tok, _ := dec.Token()
		key := tok.(string)
		switch key {
		case "task":
			var raw json.RawMessage
			dec.Decode(&raw)
			s, kind, ok := jsonscan.Scalar(raw)
			if !ok || kind != jsonscan.String {
				return fail(-1, "", -1, fmt.Errorf("\"task\" must be a string, found %s", jsonscan.Describe(kind)))
			}
			out.Task = s
		case "labels":
			var raw json.RawMessage
			dec.Decode(&raw)
			if err := json.Unmarshal(raw, &out.Labels); err != nil {
				return fail(-1, "", -1, fmt.Errorf("\"labels\" must be an array of strings: %v", err))
			}
		case "golds":
			sawGolds = true
			out.Golds = []Output{}
			start := bom + dec.InputOffset()
			tok, _ := dec.Token()
			if d, ok := tok.(json.Delim); !ok || d != '[' {
				return fail(-1, "", start, fmt.Errorf("\"golds\" must be an array, found %s", jsonscan.Describe(tokenKind(tok))))
			}
			for i := 0; dec.More(); i++ {
				var raw json.RawMessage
				dec.Decode(&raw)
				off := bom + dec.InputOffset() - int64(len(raw))
				o, err := decodeOutput(raw)
				if err != nil {
					return fail(i, o.ID, off, err)
				}
				out.Golds = append(out.Golds, o)
			}
			dec.Token() // ']'
		default:
			var skip json.RawMessage
			dec.Decode(&skip)
		}
	}
	if !sawGolds {
		return fail(-1, "", -1, errors.New("outputs file has no \"golds\" array"))
	}
	return out, nil
}

// tokenKind returns the kind of value that a json.Decoder token starts.
func tokenKind(tok json.Token) jsonscan.Kind {
	switch t := tok.(type) {
	case json.Delim:
		if t == '[' {
			return jsonscan.Array
		}
		return jsonscan.Object
	case string:
		return jsonscan.String
	case bool:
		return jsonscan.Bool
	case nil:
		return jsonscan.Null
	}
	return jsonscan.Number
}
