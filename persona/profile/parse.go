package profile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/pplug/pplug/internal/jsonscan"
)

// Load reads the profile in the file at path; see Parse.
//
// A JSON Lines file whose last line is an incomplete record (a write that
// was interrupted) loads without it, with a warning naming the line.
func Load(path string, opts Options) (*Profile, error) {
	return LoadContext(context.Background(), path, opts)
}

// LoadContext is Load that stops, with ctx's error, when ctx is done: a
// profile of hundreds of megabytes is read in pieces, and each piece looks
// at ctx first.
func LoadContext(ctx context.Context, path string, opts Options) (*Profile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, loadError(path, err)
	}
	defer f.Close()
	// Wait for an append in progress (best effort: a reader goes on
	// without the lock when it cannot have it).
	if real, err := filepath.EvalSymlinks(path); err == nil {
		if unlock, err := lockProfile(real, true); err == nil {
			defer unlock()
		}
	}
	l := newLoader(path, opts)
	err = l.read(ctxReader{ctx, f})
	var se *jsonscan.SyntaxError
	if err != nil && l.p.Format == FormatJSONL && errors.As(err, &se) {
		if p, ok := l.withoutDamagedLastLine(f, se); ok {
			l = p
			err = nil
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, loadError(path, ctx.Err())
		}
		return nil, loadError(path, err)
	}
	if err := l.finish(); err != nil {
		return nil, loadError(path, err)
	}
	return l.p, nil
}

// ctxReader reads from r until ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// withoutDamagedLastLine loads a JSON Lines file again without its last
// line when that line holds the syntax error se, and warns about it. ok is
// false when the error lies elsewhere or the rest does not load either.
func (l *loader) withoutDamagedLastLine(f *os.File, se *jsonscan.SyntaxError) (*loader, bool) {
	st, err := f.Stat()
	if err != nil {
		return nil, false
	}
	start, _, err := lastRecord(f, st.Size())
	if err != nil {
		return nil, false
	}
	if start <= 0 || se.Offset < start {
		return nil, false
	}
	line, err := lineOf(f, start)
	if err != nil {
		return nil, false
	}
	again := newLoader(l.source, l.opts)
	if err := again.read(io.NewSectionReader(f, 0, start)); err != nil || again.p.Format != FormatJSONL {
		return nil, false
	}
	if err := again.warn(Warning{Index: -1, Line: line, Msg: fmt.Sprintf("line %d is an incomplete record (an interrupted write?) and was skipped: %v", line, se)}); err != nil {
		return nil, false
	}
	return again, true
}

// Parse reads a profile from r in any of the package's input formats.
func Parse(r io.Reader, opts Options) (*Profile, error) {
	return parse(r, "", opts)
}

// loader holds the state of one load.
type loader struct {
	opts     Options
	source   string
	fields   []string // requested text fields; nil for the default rule
	sep      string
	p        *Profile
	seen     int // items seen (usable or not)
	firstIdx map[string]itemPos
	// fieldsSeen are the field names items have (at most maxFieldNames).
	fieldsSeen map[string]bool
}

// newLoader prepares the state of one load: the separator and the text
// fields that opts ask for.
func newLoader(source string, opts Options) *loader {
	l := &loader{opts: opts, source: source, p: &Profile{}, sep: opts.Separator, firstIdx: make(map[string]itemPos), fieldsSeen: make(map[string]bool)}
	if l.sep == "" {
		l.sep = " "
	}
	switch {
	case len(opts.Fields) > 0:
		l.fields = opts.Fields
	case opts.Task.Valid():
		l.fields = opts.Task.ProfileFields()
	}
	return l
}

// maxTextBytes is the most bytes of text an item keeps (0: no limit).
func (l *loader) maxTextBytes() int {
	switch {
	case l.opts.MaxItemBytes == 0:
		return DefaultMaxItemBytes
	case l.opts.MaxItemBytes < 0:
		return 0
	}
	return l.opts.MaxItemBytes
}

func parse(r io.Reader, source string, opts Options) (*Profile, error) {
	l := newLoader(source, opts)
	if err := l.read(r); err != nil {
		return nil, loadError(source, err)
	}
	if err := l.finish(); err != nil {
		return nil, loadError(source, err)
	}
	return l.p, nil
}

// isQuestion reports whether an element is a LaMP question.
func isQuestion(raw []byte) bool {
	if jsonscan.KindOf(raw) != jsonscan.Object {
		return false
	}
	m, err := jsonscan.Members(raw)
	if err != nil {
		return false
	}
	_, hasInput := m["input"]
	_, hasProfile := m["profile"]
	return hasInput && hasProfile
}

func (l *loader) read(r io.Reader) error {
	js := jsonscan.NewReader(r)
	c, err := js.Peek()
	if err == io.EOF {
		return fmt.Errorf("%w: the input is blank", ErrEmpty)
	}
	if err != nil {
		return err
	}
	switch c {
	case '[':
		if err := js.OpenArray(); err != nil {
			return err
		}
		first, err := js.Next()
		if err == io.EOF {
			return fmt.Errorf("%w: the array has no items", ErrEmpty)
		}
		if err != nil {
			return err
		}
		if isQuestion(first.Raw) {
			l.p.Format = FormatQuestions
			return l.readQuestions(js, first, 0)
		}
		l.p.Format = FormatArray
		return l.readItems(js, first)
	case '{':
		first, err := js.Next()
		if err != nil {
			return err
		}
		if isQuestion(first.Raw) {
			second, err := js.Next()
			if err == io.EOF {
				l.p.Format = FormatQuestion
				return l.useQuestion(first, false)
			}
			if err != nil {
				return err
			}
			l.p.Format = FormatQuestions
			if l.opts.QuestionID == "" {
				return ErrNeedQuestionID
			}
			if questionID(first.Raw) == l.opts.QuestionID {
				if err := l.useQuestion(first, true); err != nil {
					return err
				}
				return l.warnDuplicates(js, &second, first.Line)
			}
			return l.readQuestions(js, second, 1)
		}
		if isOutputs(first.Raw) {
			return outputsError(first.Raw)
		}
		l.p.Format = FormatJSONL
		return l.readItems(js, first)
	default:
		// Let the decoder locate invalid input; a valid scalar is the wrong
		// kind of value.
		el, err := js.Next()
		if err != nil {
			return err
		}
		return fmt.Errorf("expected a JSON array, a JSON object or JSON Lines of objects, found %s at line %d", jsonscan.Describe(jsonscan.KindOf(el.Raw)), el.Line)
	}
}

// isOutputs reports whether an element is a LaMP outputs file: an object
// with a "golds" array (the gold answers of a split).
func isOutputs(raw []byte) bool {
	m, err := jsonscan.Members(raw)
	if err != nil {
		return false
	}
	g, ok := m["golds"]
	return ok && jsonscan.KindOf(g) == jsonscan.Array
}

// outputsError explains that a LaMP outputs file is no profile.
func outputsError(raw []byte) error {
	what := "LaMP outputs file"
	m, _ := jsonscan.Members(raw)
	if task, kind, ok := jsonscan.Scalar(m["task"]); ok && kind == jsonscan.String && task != "" {
		what = fmt.Sprintf("LaMP outputs file of %s", task)
	}
	return fmt.Errorf("%w: this is a %s (the gold answers of a split, {\"task\", \"golds\"}); "+
		"pass the matching questions file (with the question id of one user), one LaMP question, or a JSON array or JSON Lines of history items", ErrOutputsFile, what)
}

// questionID returns the "id" of a question element as text, "" if none.
func questionID(raw []byte) string {
	m, err := jsonscan.Members(raw)
	if err != nil {
		return ""
	}
	s, _, ok := jsonscan.Scalar(m["id"])
	if !ok {
		return ""
	}
	return s
}

// readQuestions streams questions, starting with first, until the one with
// Options.QuestionID; skipped questions were looked at before first.
func (l *loader) readQuestions(js *jsonscan.Reader, first jsonscan.Element, skipped int) error {
	if l.opts.QuestionID == "" {
		return ErrNeedQuestionID
	}
	el := first
	n := skipped
	for {
		n++
		if questionID(el.Raw) == l.opts.QuestionID {
			if err := l.useQuestion(el, true); err != nil {
				return err
			}
			return l.warnDuplicates(js, nil, el.Line)
		}
		var err error
		el, err = js.Next()
		if err == io.EOF {
			return fmt.Errorf("%w: no question has id %q (%d questions read)", ErrQuestionNotFound, l.opts.QuestionID, n)
		}
		if err != nil {
			return err
		}
	}
}

// warnDuplicates reads the rest of a questions file (from next, when set)
// for other questions with the selected id, and warns when there are some:
// the first one is used.
func (l *loader) warnDuplicates(js *jsonscan.Reader, next *jsonscan.Element, used int) error {
	var lines []string
	for {
		var el jsonscan.Element
		if next != nil {
			el, next = *next, nil
		} else {
			var err error
			if el, err = js.Next(); err == io.EOF {
				break
			} else if err != nil {
				return err
			}
		}
		if questionID(el.Raw) == l.opts.QuestionID {
			lines = append(lines, strconv.Itoa(el.Line))
		}
	}
	if len(lines) == 0 {
		return nil
	}
	return l.warn(Warning{Index: -1, Msg: fmt.Sprintf("question id %q appears %d times (also at line %s); using the first, at line %d",
		l.opts.QuestionID, len(lines)+1, strings.Join(lines, ", "), used)})
}

// useQuestion loads the profile of one question element.
func (l *loader) useQuestion(el jsonscan.Element, selected bool) error {
	id := questionID(el.Raw)
	name := fmt.Sprintf("question %q", id)
	if el.Line > 0 {
		name += fmt.Sprintf(" (line %d)", el.Line)
	}
	if !selected && l.opts.QuestionID != "" && l.opts.QuestionID != id {
		return fmt.Errorf("%w: the input holds a single question, whose id is %q, not %q", ErrQuestionNotFound, id, l.opts.QuestionID)
	}
	if err := jsonscan.CheckText(el.Raw); err != nil {
		return fmt.Errorf("%s: %v", name, err)
	}
	m, _ := jsonscan.Members(el.Raw)
	input, kind, ok := jsonscan.Scalar(m["input"])
	if !ok || kind != jsonscan.String {
		return fmt.Errorf("%s: \"input\" must be a string, found %s", name, jsonscan.Describe(kind))
	}
	l.p.Query = input
	l.p.QuestionID = id
	if jsonscan.KindOf(m["profile"]) == jsonscan.Null {
		return fmt.Errorf("%w: %s has a null profile", ErrEmpty, name)
	}
	items, err := jsonscan.Elements(m["profile"])
	if err != nil {
		return fmt.Errorf("%s: \"profile\": %v", name, err)
	}
	if len(items) == 0 {
		return fmt.Errorf("%w: %s has no profile items", ErrEmpty, name)
	}
	for i, raw := range items {
		if err := l.item(raw, i, 0); err != nil {
			return err
		}
	}
	return nil
}

// readItems reads item elements, starting with first.
func (l *loader) readItems(js *jsonscan.Reader, first jsonscan.Element) error {
	if l.opts.QuestionID != "" {
		if err := l.warn(Warning{Index: -1, Msg: fmt.Sprintf("question id %q ignored: the input is a plain list of items", l.opts.QuestionID)}); err != nil {
			return err
		}
	}
	el := first
	for {
		if err := l.item(el.Raw, el.Index, el.Line); err != nil {
			return err
		}
		var err error
		el, err = js.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// warn records a warning, or returns it as an error in strict mode.
func (l *loader) warn(w Warning) error {
	if l.opts.Strict {
		if w.Index < 0 {
			return fmt.Errorf("%s (strict mode)", w.Msg)
		}
		return &itemError{index: w.Index, id: w.ID, line: w.Line, err: fmt.Errorf("%s (strict mode)", w.Msg)}
	}
	l.p.Warnings = append(l.p.Warnings, w)
	return nil
}

// metadataKeys are never part of the default text.
var metadataKeys = map[string]bool{
	"id": true, "score": true, "rating": true, "label": true, "labels": true,
	"tag": true, "tags": true, "category": true, "categories": true,
	"url": true, "link": true, "user": true, "author": true, "source": true,
	"lang": true, "language": true,
}

func isMetadata(key string) bool {
	k := strings.ToLower(key)
	if metadataKeys[k] || strings.HasSuffix(k, "id") {
		return true
	}
	for _, d := range dateKeys {
		if strings.EqualFold(d, key) {
			return true
		}
	}
	return false
}

// defaultOrder lists the fields that come first in the default text.
var defaultOrder = []string{"title", "description", "abstract"}

// item decodes and checks one item and appends it when usable.
func (l *loader) item(raw json.RawMessage, index, line int) error {
	l.seen++
	fail := func(id string, err error) error { return &itemError{index: index, id: id, line: line, err: err} }
	m, err := jsonscan.Members(raw)
	if err != nil {
		return fail("", err)
	}
	it := Item{Index: index, Line: line, Fields: make(map[string]string, len(m))}
	notes := itemID(m, &it)
	if err := jsonscan.CheckText(raw); err != nil {
		return fail(it.ID, err)
	}
	if err := l.checkID(it, itemPos{index, line}); err != nil {
		return err
	}
	keys, isString, w := scalarFields(m, it.Fields)
	l.noteFields(keys)
	notes = append(notes, w...)
	notes = append(notes, itemDate(&it)...)
	var tw []note
	it.Text, tw = l.itemText(it.Fields, keys, isString)
	notes = append(notes, tw...)
	for _, n := range notes {
		if err := l.warn(Warning{Index: index, ID: it.ID, Line: line, Msg: n.msg, Reason: n.reason}); err != nil {
			return err
		}
	}
	if it.Text == "" {
		reason := l.skipReason(m, isString) + "; item skipped"
		return l.warn(Warning{Index: index, ID: it.ID, Line: line, Msg: reason, Reason: reason, Skipped: true})
	}
	l.p.Items = append(l.p.Items, it)
	return nil
}

// itemID sets the item's id from its "id" member (a string or a number).
func itemID(m map[string]json.RawMessage, it *Item) []note {
	idRaw, ok := m["id"]
	if !ok {
		return nil
	}
	s, kind, ok := jsonscan.Scalar(idRaw)
	switch {
	case ok && kind != jsonscan.Bool:
		it.ID = s
	case kind != jsonscan.Null:
		return []note{{"\"id\" ignored (not a string or number)", fmt.Sprintf("\"id\" is %s; ignored", jsonscan.Describe(kind))}}
	}
	return nil
}

// checkID applies the id rule: a valid id, used by one item of the input.
func (l *loader) checkID(it Item, pos itemPos) error {
	if it.ID == "" {
		return nil
	}
	if err := CheckID(it.ID); err != nil {
		return &itemError{index: pos.index, line: pos.line, err: err}
	}
	if first, dup := l.firstIdx[it.ID]; dup {
		return duplicateError(it.ID, first, pos)
	}
	l.firstIdx[it.ID] = pos
	return nil
}

// maxFieldNames bounds the field names a load remembers for messages.
const maxFieldNames = 64

// noteFields remembers the field names items have (for the message when
// no item has the requested ones).
func (l *loader) noteFields(keys []string) {
	for _, k := range keys {
		if len(l.fieldsSeen) >= maxFieldNames {
			return
		}
		l.fieldsSeen[k] = true
	}
}

// skipReason says why an item has no text.
func (l *loader) skipReason(m map[string]json.RawMessage, isString map[string]bool) string {
	if l.fields != nil {
		var have []string
		for _, f := range l.fields {
			if _, ok := m[f]; ok {
				have = append(have, f)
			}
		}
		if len(have) == 0 {
			return "no field " + strings.Join(l.fields, ", ")
		}
		return "field(s) " + strings.Join(have, ", ") + " blank or not text"
	}
	if raw, ok := m["text"]; ok {
		if kind := jsonscan.KindOf(raw); kind != jsonscan.String {
			return fmt.Sprintf("\"text\" is %s (a string is needed)", jsonscan.Describe(kind))
		}
		return "\"text\" is blank"
	}
	for k, s := range isString {
		if s && !isMetadata(k) {
			return "no text (its text fields are blank)"
		}
	}
	return "no text (no \"text\" and no other text field)"
}

// scalarFields copies an item's scalar members but "id" into fields (as
// text) and returns their sorted names, which of them are strings, and
// warnings about the members that are no scalars.
func scalarFields(m map[string]json.RawMessage, fields map[string]string) (keys []string, isString map[string]bool, warnings []note) {
	isString = make(map[string]bool, len(m))
	keys = make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k == "id" {
			continue
		}
		s, kind, ok := jsonscan.Scalar(m[k])
		if !ok {
			if kind != jsonscan.Null {
				warnings = append(warnings, note{"nested field ignored", fmt.Sprintf("field %q is %s; ignored", k, jsonscan.Describe(kind))})
			}
			continue
		}
		fields[k] = s
		isString[k] = kind == jsonscan.String
	}
	return keys, isString, warnings
}

// itemDate sets the item's date from the first date field it has.
func itemDate(it *Item) []note {
	for _, k := range dateKeys {
		v, ok := it.Fields[k]
		if !ok {
			continue
		}
		if d, ok := ParseDate(v); ok {
			it.Date = d
			return nil
		}
		return []note{{"unparsable date ignored", fmt.Sprintf("unparsable date %q in field %q; date ignored", v, k)}}
	}
	return nil
}

// itemText is an item's text: the chosen fields, or "text", or the
// other text fields in the default order, joined and cut to the limit.
func (l *loader) itemText(fields map[string]string, keys []string, isString map[string]bool) (string, []note) {
	var parts []string
	var warnings []note
	if l.fields != nil {
		var missing []string
		for _, f := range l.fields {
			v, ok := fields[f]
			if !ok {
				missing = append(missing, f)
				continue
			}
			if v = strings.TrimSpace(v); v != "" {
				parts = append(parts, v)
			}
		}
		if len(missing) > 0 && len(parts) > 0 {
			warnings = append(warnings, note{"missing field(s) " + strings.Join(missing, ", "), fmt.Sprintf("missing field(s) %s", strings.Join(missing, ", "))})
		}
	} else if v := strings.TrimSpace(fields["text"]); v != "" && isString["text"] {
		parts = []string{v}
	} else {
		var rest []string
		for _, k := range keys {
			if isString[k] && !isMetadata(k) && !slices.Contains(defaultOrder, k) {
				rest = append(rest, k)
			}
		}
		for _, k := range append(slices.Clone(defaultOrder), rest...) {
			if !isString[k] {
				continue
			}
			if v := strings.TrimSpace(fields[k]); v != "" {
				parts = append(parts, v)
			}
		}
	}
	text := strings.Join(parts, l.sep)
	if maxText := l.maxTextBytes(); maxText > 0 && len(text) > maxText {
		warnings = append(warnings, note{fmt.Sprintf("text cut to %d bytes", maxText), fmt.Sprintf("text of %d bytes cut to its first %d (an item is at most %d bytes; the encoder reads a few hundred tokens of it)",
			len(text), maxText, maxText)})
		text = strings.ToValidUTF8(text[:maxText], "")
	}
	return text, warnings
}

// finish applies MaxItems and the final checks.
func (l *loader) finish() error {
	if l.seen == 0 {
		return ErrEmpty
	}
	if len(l.p.Items) == 0 {
		return l.noUsableError()
	}
	l.p.Usable = len(l.p.Items)
	max := l.opts.MaxItems
	if max == 0 {
		max = DefaultMaxItems
	}
	if max < 0 || len(l.p.Items) <= max {
		return nil
	}
	items := l.p.Items
	dated := 0
	for _, it := range items {
		if it.HasDate() {
			dated++
		}
	}
	if dated > 0 && dated < len(items) {
		if err := l.warn(Warning{Index: -1, Msg: fmt.Sprintf("%d of %d items have no date; kept the last %d in file order", len(items)-dated, len(items), max)}); err != nil {
			return err
		}
	}
	l.p.Items, l.p.ByDate = KeepRecent(items, max)
	return nil
}

// KeepRecent is the one max-items rule: at most max items (max <= 0: all),
// the most recent by date when every item has a date (among equal dates
// the later one; kept in their order), else the last max in order (for a
// store, the last inserted). byDate says which rule applied. Loading a
// profile file applies it (Options.MaxItems); the server applies it to
// the items of its store.
func KeepRecent(items []Item, max int) (kept []Item, byDate bool) {
	if max <= 0 || len(items) <= max {
		return items, false
	}
	for _, it := range items {
		if !it.HasDate() {
			return slices.Clone(items[len(items)-max:]), false
		}
	}
	order := make([]int, len(items))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool {
		da, db := items[order[a]].Date, items[order[b]].Date
		if !da.Equal(db) {
			return da.After(db)
		}
		return order[a] > order[b]
	})
	keep := order[:max]
	sort.Ints(keep)
	kept = make([]Item, len(keep))
	for i, k := range keep {
		kept[i] = items[k]
	}
	return kept, true
}
