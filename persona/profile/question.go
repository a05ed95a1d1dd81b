package profile

import (
	"fmt"
	"sort"
	"unicode/utf8"

	"github.com/pplug/pplug/lamp"
)

// FromQuestion builds the profile of a LaMP question that was already read
// (for example with lamp.ScanQuestions), with the rules of Load and Parse:
// the same text selection, dates, MaxItems rule, warnings and errors. The
// profile's Query is the question's input, QuestionID its id and Format
// FormatQuestion.
//
// A lamp.Question keeps every field value as text and no longer knows
// which were JSON numbers or booleans, so under the default text rule (no
// Options.Task and no Options.Fields) every field counts as a string. With
// a task or explicit fields the result is exactly what Parse gives for the
// question's JSON.
//
// Options.QuestionID, when set, must be the question's id
// (ErrQuestionNotFound otherwise). A question with no profile items gives
// ErrEmpty; one whose items all lack text gives ErrNoUsableItems; invalid
// UTF-8 in the input or an item is an error naming it.
func FromQuestion(q lamp.Question, opts Options) (*Profile, error) {
	l := newLoader("", opts)
	l.p.Format = FormatQuestion
	if err := l.fromQuestion(q); err != nil {
		return nil, loadError("", err)
	}
	if err := l.finish(); err != nil {
		return nil, loadError("", fmt.Errorf("question %q: %w", q.ID, err))
	}
	return l.p, nil
}

// fromQuestion is useQuestion for a decoded question.
func (l *loader) fromQuestion(q lamp.Question) error {
	name := fmt.Sprintf("question %q", q.ID)
	if l.opts.QuestionID != "" && l.opts.QuestionID != q.ID {
		return fmt.Errorf("%w: the question's id is %q, not %q", ErrQuestionNotFound, q.ID, l.opts.QuestionID)
	}
	if !utf8.ValidString(q.ID) || !utf8.ValidString(q.Input) {
		return fmt.Errorf("%s: the id or input is not valid UTF-8", name)
	}
	l.p.Query = q.Input
	l.p.QuestionID = q.ID
	if len(q.Profile) == 0 {
		return fmt.Errorf("%w: %s has no profile items", ErrEmpty, name)
	}
	for i, it := range q.Profile {
		if err := checkItemUTF8(it); err != nil {
			return fmt.Errorf("%s: %w", name, &itemError{index: i, id: validID(it.ID), err: err})
		}
		raw, err := it.MarshalJSON()
		if err != nil {
			return fmt.Errorf("%s: %w", name, &itemError{index: i, id: validID(it.ID), err: err})
		}
		if err := l.item(raw, i, 0); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

// checkItemUTF8 names the first field of an item that is not valid UTF-8.
func checkItemUTF8(it lamp.ProfileItem) error {
	if !utf8.ValidString(it.ID) {
		return fmt.Errorf("\"id\" is not valid UTF-8")
	}
	keys := make([]string, 0, len(it.Fields))
	for k := range it.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !utf8.ValidString(k) {
			return fmt.Errorf("a field name is not valid UTF-8 (%q)", k)
		}
		if !utf8.ValidString(it.Fields[k]) {
			return fmt.Errorf("field %q is not valid UTF-8", k)
		}
	}
	return nil
}

// validID keeps an id for messages only when it is valid UTF-8.
func validID(id string) string {
	if utf8.ValidString(id) {
		return id
	}
	return ""
}
