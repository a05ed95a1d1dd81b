// Package jsonscan streams large JSON data files one element at a time and
// reports problems with exact positions.
//
// It is shared by the LaMP readers (package lamp) and the user-profile loader
// (package persona/profile). A Reader walks either the elements of one
// top-level JSON array or a sequence of top-level values (JSON Lines, or
// values simply concatenated), handing each element out as raw JSON text
// together with its index, byte offset and line. Syntax errors come back as
// *SyntaxError with the byte offset, line and column of the offending byte.
//
// encoding/json silently replaces invalid UTF-8 and unpaired UTF-16
// surrogate escapes with U+FFFD; CheckText detects both in raw JSON text so
// that callers can reject them instead.
package jsonscan

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// SyntaxError is a JSON syntax error at a known place in the stream.
type SyntaxError struct {
	Offset int64  // byte offset of the offending byte (or of the end of input)
	Line   int    // 1-based line; 0 when unknown
	Col    int    // 1-based column in bytes; 0 when unknown
	Msg    string // what is wrong
}

func (e *SyntaxError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("invalid JSON at line %d, column %d (byte offset %d): %s", e.Line, e.Col, e.Offset, e.Msg)
	}
	return fmt.Sprintf("invalid JSON at byte offset %d: %s", e.Offset, e.Msg)
}

// Element is one value of an array or of a value sequence.
type Element struct {
	Raw    json.RawMessage // the value's JSON text; owned by the caller
	Index  int             // 0-based position among the elements
	Offset int64           // byte offset of the value's first byte
	Line   int             // 1-based line of the value's first byte
}

// posReader records the bytes it passes on, so that byte offsets can later be
// turned into lines and columns. Bytes before an offset handed to forget are
// dropped after their newlines have been counted, which keeps memory bounded
// by the decoder's read-ahead.
type posReader struct {
	r      io.Reader
	base   int64 // absolute offset of buf[0]
	lines  int   // newlines before base
	lastNL int64 // absolute offset of the last newline before base; -1 if none
	buf    []byte
}

func (p *posReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.buf = append(p.buf, b[:n]...)
	return n, err
}

func (p *posReader) forget(off int64) {
	k := off - p.base
	if k <= 0 {
		return
	}
	if k > int64(len(p.buf)) {
		k = int64(len(p.buf))
	}
	chunk := p.buf[:k]
	if n := bytes.Count(chunk, []byte{'\n'}); n > 0 {
		p.lines += n
		p.lastNL = p.base + int64(bytes.LastIndexByte(chunk, '\n'))
	}
	p.buf = append(p.buf[:0], p.buf[k:]...)
	p.base += k
}

// position returns the 1-based line and column of the absolute offset off.
// ok is false when off lies before the retained window.
func (p *posReader) position(off int64) (line, col int, ok bool) {
	if off < p.base {
		return 0, 0, false
	}
	k := off - p.base
	if k > int64(len(p.buf)) {
		k = int64(len(p.buf))
	}
	chunk := p.buf[:k]
	line = p.lines + bytes.Count(chunk, []byte{'\n'}) + 1
	nl := p.lastNL
	if i := bytes.LastIndexByte(chunk, '\n'); i >= 0 {
		nl = p.base + int64(i)
	}
	return line, int(off - nl), true
}

// Reader hands out the elements of a top-level JSON array (after OpenArray)
// or of a sequence of top-level values (the default).
type Reader struct {
	pos     *posReader
	br      *bufio.Reader
	dec     *json.Decoder
	skipped int64 // bytes discarded before the decoder saw the stream
	inArray bool
	index   int
	done    bool
	err     error // sticky error
}

// NewReader returns a Reader over r. A leading UTF-8 byte order mark is
// skipped.
func NewReader(r io.Reader) *Reader {
	p := &posReader{r: r, lastNL: -1}
	return &Reader{pos: p, br: bufio.NewReaderSize(p, 64<<10)}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// Peek returns the first byte of the first value, skipping a byte order mark
// and whitespace, without consuming the value. It returns io.EOF for an input
// that holds nothing but whitespace. It may only be called before the first
// OpenArray or Next.
func (r *Reader) Peek() (byte, error) {
	if r.dec != nil {
		return 0, errors.New("jsonscan: Peek after reading started")
	}
	if r.skipped == 0 {
		if b, _ := r.br.Peek(3); bytes.Equal(b, []byte("\xef\xbb\xbf")) {
			r.br.Discard(3)
			r.skipped = 3
		}
	}
	for {
		b, err := r.br.Peek(1)
		if len(b) == 0 {
			if err == nil || err == io.EOF {
				return 0, io.EOF
			}
			return 0, err
		}
		if !isSpace(b[0]) {
			return b[0], nil
		}
		r.br.Discard(1)
		r.skipped++
	}
}

func (r *Reader) start() error {
	if r.dec != nil {
		return nil
	}
	if _, err := r.Peek(); err != nil && err != io.EOF {
		return err
	}
	r.dec = json.NewDecoder(r.br)
	return nil
}

// offset is the absolute stream offset of the decoder's position.
func (r *Reader) offset() int64 { return r.skipped + r.dec.InputOffset() }

// Position returns the 1-based line and column of an absolute byte offset
// that lies in or after the most recently returned element; ok is false for
// older offsets, whose bytes have been discarded.
func (r *Reader) Position(off int64) (line, col int, ok bool) { return r.pos.position(off) }

func (r *Reader) syntaxError(off int64, msg string) *SyntaxError {
	e := &SyntaxError{Offset: off, Msg: msg}
	if line, col, ok := r.pos.position(off); ok {
		e.Line, e.Col = line, col
	}
	return e
}

// OpenArray consumes the opening bracket of a top-level array; Next then
// returns the array's elements. It fails when the input is not an array.
func (r *Reader) OpenArray() error {
	if r.err != nil {
		return r.err
	}
	err := r.openArray()
	r.err = err
	return err
}

func (r *Reader) openArray() error {
	if r.dec == nil {
		c, err := r.Peek()
		if err == io.EOF {
			return r.syntaxError(r.skipped, "empty input, expected a JSON array")
		}
		if err != nil {
			return err
		}
		if c != '[' {
			return r.syntaxError(r.skipped, "expected a JSON array, found "+Describe(KindOf([]byte{c})))
		}
	}
	if err := r.start(); err != nil {
		return err
	}
	tok, err := r.dec.Token()
	if err != nil {
		return r.decodeError(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return errors.New("jsonscan: OpenArray called twice or after Next")
	}
	r.inArray = true
	return nil
}

func describeToken(tok json.Token) string {
	switch t := tok.(type) {
	case json.Delim:
		if t == '{' {
			return "an object"
		}
		return fmt.Sprintf("%q", string(t))
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	default:
		return "a number"
	}
}

// Next returns the next element. At the end of the array (or of the value
// sequence) it returns io.EOF, after checking that nothing but whitespace
// follows the array. Errors are sticky.
func (r *Reader) Next() (Element, error) {
	if r.err != nil {
		return Element{}, r.err
	}
	if r.done {
		return Element{}, io.EOF
	}
	el, err := r.next()
	if err != nil {
		if err == io.EOF {
			r.done = true
		} else {
			r.err = err
		}
	}
	return el, err
}

func (r *Reader) next() (Element, error) {
	if err := r.start(); err != nil {
		return Element{}, err
	}
	if r.inArray && !r.dec.More() {
		off := r.offset()
		tok, err := r.dec.Token()
		if err != nil {
			return Element{}, r.decodeError(err)
		}
		if d, ok := tok.(json.Delim); !ok || d != ']' {
			return Element{}, r.syntaxError(off, fmt.Sprintf("unexpected %s in array", describeToken(tok)))
		}
		off = r.offset()
		if _, err := r.dec.Token(); err != io.EOF {
			if err != nil {
				return Element{}, r.decodeError(err)
			}
			return Element{}, r.syntaxError(r.nextValueOffset(off), "unexpected data after the end of the top-level array")
		}
		return Element{}, io.EOF
	}
	var raw json.RawMessage
	if err := r.dec.Decode(&raw); err != nil {
		if err == io.EOF && !r.inArray {
			return Element{}, io.EOF
		}
		return Element{}, r.decodeError(err)
	}
	end := r.offset()
	start := end - int64(len(raw))
	el := Element{Raw: raw, Index: r.index, Offset: start}
	el.Line, _, _ = r.pos.position(start)
	r.index++
	r.pos.forget(start)
	return el, nil
}

// nextValueOffset returns the offset of the first non-space byte at or after
// off, when it is still buffered; else off.
func (r *Reader) nextValueOffset(off int64) int64 {
	if off < r.pos.base || off-r.pos.base > int64(len(r.pos.buf)) {
		return off
	}
	b := r.pos.buf[off-r.pos.base:]
	for i, c := range b {
		if !isSpace(c) {
			return off + int64(i)
		}
	}
	return off
}

// decodeError locates a failed Decode. The decoder's own offsets for errors
// inside a value are not absolute, so the buffered, not yet consumed bytes
// are scanned again to find the offending byte.
func (r *Reader) decodeError(err error) error {
	var se *json.SyntaxError
	isSyntax := errors.As(err, &se)
	if !isSyntax && err != io.ErrUnexpectedEOF && err != io.EOF {
		return err
	}
	// Errors raised before the value itself (a missing comma) carry an
	// absolute offset.
	start := r.offset()
	if isSyntax && isTokenMessage(se.Error()) {
		return r.syntaxError(r.skipped+se.Offset, se.Error())
	}
	rest, _ := io.ReadAll(r.dec.Buffered())
	var raw json.RawMessage
	uerr := json.Unmarshal(rest, &raw)
	var use *json.SyntaxError
	if errors.As(uerr, &use) {
		off := use.Offset
		if off > 0 && !isEOFMessage(use) {
			off-- // Offset counts the offending byte itself.
		}
		return r.syntaxError(start+off, use.Error())
	}
	if isSyntax {
		return r.syntaxError(start, se.Error())
	}
	return r.syntaxError(start+int64(len(rest)), "unexpected end of input")
}

func isEOFMessage(e *json.SyntaxError) bool { return e.Error() == "unexpected end of JSON input" }

// isTokenMessage reports whether msg is one of the errors the decoder raises
// between values, whose offsets are absolute.
func isTokenMessage(msg string) bool {
	switch msg {
	case "expected comma after array element", "expected colon after object key", "not at beginning of value":
		return true
	}
	return false
}

// CheckText reports invalid UTF-8 and unpaired UTF-16 surrogate escapes
// (\uD800-\uDFFF without their partner) in raw JSON text. Both would be
// replaced silently by U+FFFD when decoding. The error names the byte offset
// within raw.
func CheckText(raw []byte) error {
	if !utf8.Valid(raw) {
		for i := 0; i < len(raw); {
			r, size := utf8.DecodeRune(raw[i:])
			if r == utf8.RuneError && size <= 1 {
				return fmt.Errorf("invalid UTF-8 byte 0x%02x at offset %d", raw[i], i)
			}
			i += size
		}
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		if i+1 < len(raw) && raw[i+1] == 'u' {
			v, ok := hex4(raw, i+2)
			if ok && v >= 0xD800 && v <= 0xDFFF {
				if v >= 0xDC00 {
					return fmt.Errorf("unpaired UTF-16 surrogate escape \\u%04X at offset %d", v, i)
				}
				// A high surrogate must be followed by an escaped low one.
				lo, ok2 := -1, false
				if i+7 < len(raw) && raw[i+6] == '\\' && raw[i+7] == 'u' {
					lo, ok2 = hex4(raw, i+8)
				}
				if !ok2 || lo < 0xDC00 || lo > 0xDFFF {
					return fmt.Errorf("unpaired UTF-16 surrogate escape \\u%04X at offset %d", v, i)
				}
				i += 6 // skip the high escape; the loop skips past the low one's backslash
			}
		}
		i++ // skip the escaped character
	}
	return nil
}

func hex4(b []byte, at int) (int, bool) {
	if at+4 > len(b) {
		return 0, false
	}
	v := 0
	for _, c := range b[at : at+4] {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | int(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | int(c-'a'+10)
		case c >= 'A' && c <= 'F':
			v = v<<4 | int(c-'A'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

// Kind is the JSON type of a value.
type Kind int

// JSON value kinds.
const (
	Invalid Kind = iota
	String
	Number
	Bool
	Null
	Object
	Array
)

func (k Kind) String() string {
	switch k {
	case String:
		return "string"
	case Number:
		return "number"
	case Bool:
		return "boolean"
	case Null:
		return "null"
	case Object:
		return "object"
	case Array:
		return "array"
	}
	return "invalid"
}

// KindOf returns the JSON type of raw, a syntactically valid value.
func KindOf(raw []byte) Kind {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return Invalid
	}
	switch c := raw[0]; {
	case c == '"':
		return String
	case c == '{':
		return Object
	case c == '[':
		return Array
	case c == 't' || c == 'f':
		return Bool
	case c == 'n':
		return Null
	case c == '-' || (c >= '0' && c <= '9'):
		return Number
	}
	return Invalid
}

// Scalar renders a string, number or boolean value as text: strings are
// decoded, numbers and booleans are kept exactly as written in the JSON
// (so 4.0 stays "4.0" and 1e3 stays "1e3"). For null, objects and arrays it
// returns ok == false and the value's kind.
func Scalar(raw []byte) (s string, kind Kind, ok bool) {
	kind = KindOf(raw)
	switch kind {
	case String:
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", Invalid, false
		}
		return s, kind, true
	case Number, Bool:
		return string(bytes.TrimSpace(raw)), kind, true
	}
	return "", kind, false
}

// Members decodes raw as a JSON object into its members. Unlike decoding into
// a Go struct, keys are matched exactly (case-sensitively). When a key occurs
// more than once the last occurrence wins, as in Python's json module.
func Members(raw []byte) (map[string]json.RawMessage, error) {
	if k := KindOf(raw); k != Object {
		return nil, fmt.Errorf("expected a JSON object, found %s", kindArticle(k))
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	return m, nil
}

// Elements decodes raw as a JSON array into its elements' raw text.
func Elements(raw []byte) ([]json.RawMessage, error) {
	if k := KindOf(raw); k != Array {
		return nil, fmt.Errorf("expected a JSON array, found %s", kindArticle(k))
	}
	var a []json.RawMessage
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, err
	}
	return a, nil
}

func kindArticle(k Kind) string {
	switch k {
	case Object, Array:
		return "an " + k.String()
	case Null:
		return "null"
	case Invalid:
		return "invalid JSON"
	}
	return "a " + k.String()
}

// Describe returns a short phrase naming the kind of a value, such as
// "a string" or "an object", for error messages.
func Describe(k Kind) string { return kindArticle(k) }

// LineCol converts a byte offset in data into a 1-based line and byte column.
func LineCol(data []byte, off int64) (line, col int) {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	head := data[:off]
	line = bytes.Count(head, []byte{'\n'}) + 1
	col = int(off) - bytes.LastIndexByte(head, '\n')
	return line, col
}
