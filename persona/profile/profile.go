// Package profile loads a user's profile: the history items whose texts
// PPlug embeds, aggregates and projects into the persona row, and that the
// retrieval baselines search.
//
// # Input formats
//
// The format is recognised from the content, not the file name:
//
//   - a JSON array of item objects: [{"id": "1", "text": "..."}, ...];
//   - JSON Lines: one item object per line (blank lines are ignored; values
//     may also simply follow each other);
//   - one LaMP question, {"id", "input", "profile": [items]}: its profile is
//     loaded and its input is returned as Profile.Query;
//   - a LaMP questions file, an array (or JSON Lines) of questions: only
//     with Options.QuestionID, which selects the user; without it Parse
//     fails with ErrNeedQuestionID. The file is streamed and reading stops at
//     the selected question.
//
// An object counts as a question when it has both "input" and "profile".
//
// # Items
//
// Item field values may be strings, numbers or booleans (numbers are kept as
// written) and are all available in Item.Fields; null values are left out,
// nested objects and arrays are ignored with a warning. The text of an item
// is chosen as follows:
//
//  1. with Options.Fields, those fields in that order;
//  2. else with Options.Task, the task's fields (lamp.Task.ProfileFields:
//     LaMP-1 title+abstract, LaMP-2 description, LaMP-3 text, LaMP-4
//     text+title, LaMP-5 title+abstract, LaMP-7 text);
//  3. else the "text" field when it is a non-blank string;
//  4. else every string field that is not metadata, "title",
//     "description" and "abstract" first, then the others in name order.
//     Metadata are "id", the date fields, keys ending in "id"/"_id", and
//     score, rating, label(s), tag(s), category/categories, url, link,
//     user, author, source and lang/language.
//
// Each value is trimmed; blank ones are skipped; the rest are joined with
// Options.Separator (one space by default, as LaMP's retrieval code does).
// An item whose text is blank is skipped with a warning.
//
// The date is read from the first present of "date", "timestamp", "time",
// "datetime", "created_at", "createdAt", "unixReviewTime", "reviewTime",
// with ParseDate.
//
// # Limits and problems
//
// At most Options.MaxItems items are kept (DefaultMaxItems, 512, as PPlug's
// aggregator): when every item has a date, the most recent ones, else the
// last ones in file order; the kept items stay in file order.
//
// Problems that do not prevent loading are returned as Profile.Warnings
// (the library never logs), each with a Reason that Summarize counts by:
// items without usable text, unparsable dates, missing requested fields,
// ignored nested fields, a question id that was not needed. Options.Strict
// turns every warning into an error. Profile.Kept says what MaxItems
// dropped. Errors name the item (index, id, line): invalid JSON (with line
// and column), an item that is not an object, invalid UTF-8 or unpaired
// surrogate escapes, an id that breaks the id rule (ErrBadID, and
// ErrDuplicateID naming both items: an id names one item, see CheckID), an
// empty profile (ErrEmpty), a profile with no usable item left
// (ErrNoUsableItems, with the reasons items were skipped and, when no item
// has the requested fields, the fields items have) and a LaMP outputs file
// (ErrOutputsFile). Load skips an incomplete last line of a JSON Lines file
// (an interrupted append) with a warning naming the line.
package profile

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/pplug/pplug/lamp"
)

// DefaultMaxItems is the number of items kept when Options.MaxItems is 0:
// PPlug's aggregator uses the most recent 512 history items.
const DefaultMaxItems = 512

// DefaultMaxItemBytes bounds an item's text when Options.MaxItemBytes is 0:
// 64 KiB, far more than an encoder reads (512 tokens) or retrieval puts in
// a prompt, so that one huge item costs bounded work and memory downstream.
const DefaultMaxItemBytes = 64 << 10

// Errors that callers may test for with errors.Is.
var (
	// ErrEmpty: the input holds no item at all.
	ErrEmpty = errors.New("profile is empty")
	// ErrNoUsableItems: every item was skipped (no usable text).
	ErrNoUsableItems = errors.New("profile has no usable items")
	// ErrNeedQuestionID: the input is a LaMP questions file and
	// Options.QuestionID is not set.
	ErrNeedQuestionID = errors.New("input is a LaMP questions file holding many users; pass a question id to select one")
	// ErrQuestionNotFound: no question has Options.QuestionID.
	ErrQuestionNotFound = errors.New("question not found")
	// ErrOutputsFile: the input is a LaMP outputs file (gold answers),
	// which holds no history.
	ErrOutputsFile = errors.New("not a profile")
)

// Options control loading.
type Options struct {
	// Task selects the text fields of the LaMP task (ignored when Fields is
	// set). The zero Task means none.
	Task lamp.Task
	// Fields, when not empty, are the fields whose values make up an item's
	// text, in order (see SplitFields for a comma list).
	Fields []string
	// Separator joins the text fields; "" means one space.
	Separator string
	// MaxItems bounds the number of items kept: 0 means DefaultMaxItems,
	// a negative value means no limit.
	MaxItems int
	// MaxItemBytes bounds the bytes of text kept per item, cut at a
	// character boundary with a warning: 0 means DefaultMaxItemBytes, a
	// negative value means no limit.
	MaxItemBytes int
	// QuestionID selects one question of a LaMP questions file.
	QuestionID string
	// Strict turns every warning into an error.
	Strict bool
}

// SplitFields splits a comma-separated list of field names ("title,
// abstract"), trimming spaces and dropping empty names.
func SplitFields(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// Format is the recognised input format.
type Format int

// Input formats.
const (
	FormatArray     Format = iota + 1 // a JSON array of items
	FormatJSONL                       // JSON Lines of items
	FormatQuestion                    // a single LaMP question
	FormatQuestions                   // a LaMP questions file (array or JSON Lines)
)

func (f Format) String() string {
	switch f {
	case FormatArray:
		return "JSON array of items"
	case FormatJSONL:
		return "JSON Lines of items"
	case FormatQuestion:
		return "LaMP question"
	case FormatQuestions:
		return "LaMP questions file"
	}
	return "Format(" + strconv.Itoa(int(f)) + ")"
}

// Item is one history item of the profile.
type Item struct {
	ID     string            // the item's "id" ("" when it has none)
	Index  int               // 0-based position among the source's items
	Line   int               // 1-based line where the item starts; 0 when unknown
	Text   string            // the text used for encoding and retrieval
	Date   time.Time         // zero when unknown
	Fields map[string]string // every string, number and boolean field but "id"
}

// HasDate reports whether the item's date is known.
func (it Item) HasDate() bool { return !it.Date.IsZero() }

// Hash returns a stable content hash of the item for caches: the lower-case
// hex SHA-256 of its Text. Items with the same text share a hash whatever
// their id, date or position.
func (it Item) Hash() string {
	sum := sha256.Sum256([]byte(it.Text))
	return hex.EncodeToString(sum[:])
}

// Warning is a problem that did not stop loading.
type Warning struct {
	Index int    // the item's index; -1 when not about one item
	ID    string // the item's id, when known
	Line  int    // the item's line, when known
	Msg   string
	// Reason is the kind of problem without the item's values (such as
	// "unparsable date ignored"): Summarize counts warnings by it.
	Reason string
	// Skipped is set when the item was left out.
	Skipped bool
}

// note is a warning about the item being read: its reason and message.
type note struct{ reason, msg string }

func (w Warning) String() string {
	if w.Index < 0 {
		return w.Msg
	}
	return itemName(w.Index, w.ID, w.Line) + ": " + w.Msg
}

func itemName(index int, id string, line int) string {
	var extra []string
	if id != "" {
		extra = append(extra, "id "+QuoteID(id))
	}
	if line > 0 {
		extra = append(extra, "line "+strconv.Itoa(line))
	}
	s := "item " + strconv.Itoa(index)
	if len(extra) > 0 {
		s += " (" + strings.Join(extra, ", ") + ")"
	}
	return s
}

// Profile is a loaded user profile.
type Profile struct {
	// Items are the kept items, in source order.
	Items []Item
	// Query is the input of the LaMP question the profile came from ("" for
	// plain item lists). Task.QueryPart(Query) gives the part to encode.
	Query string
	// QuestionID is the id of that question.
	QuestionID string
	// Format is the recognised input format.
	Format Format
	// Usable is the number of usable items before MaxItems was applied.
	Usable int
	// ByDate is set when MaxItems kept the most recent items by date
	// rather than the last ones in file order.
	ByDate bool
	// Warnings are the problems that did not stop loading.
	Warnings []Warning
}

// Texts returns the items' texts in order.
func (p *Profile) Texts() []string {
	out := make([]string, len(p.Items))
	for i, it := range p.Items {
		out[i] = it.Text
	}
	return out
}

// LoadError is how Load, LoadContext, Parse and FromQuestion report a
// failure: "profile: SOURCE: WHAT". It names the profile once; callers
// wrap it without another "profile" prefix.
type LoadError struct {
	Source string // the file ("" for a reader or a decoded question)
	Err    error
}

func (e *LoadError) Error() string {
	if e.Source == "" {
		return "profile: " + e.Err.Error()
	}
	return "profile: " + e.Source + ": " + e.Err.Error()
}

func (e *LoadError) Unwrap() error { return e.Err }

// loadError wraps err as a LoadError of source, once: an error that is
// already one keeps its own prefix, and an error of the file system loses
// the path it repeats ("open FILE: ...").
func loadError(source string, err error) error {
	var le *LoadError
	if errors.As(err, &le) {
		return err
	}
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Path == source {
		err = pe.Err
	}
	return &LoadError{Source: source, Err: err}
}

// itemError is a problem with one item.
type itemError struct {
	index int
	id    string
	line  int
	err   error
}

func (e *itemError) Error() string { return itemName(e.index, e.id, e.line) + ": " + e.err.Error() }
func (e *itemError) Unwrap() error { return e.err }
