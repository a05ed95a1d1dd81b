package jsonscan

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// collect reads all elements; it returns their raw texts, lines and offsets
// and the terminating error (nil for a clean io.EOF).
func collect(t *testing.T, r *Reader) (raws []string, lines []int, offs []int64, err error) {
	t.Helper()
	for {
		el, e := r.Next()
		if e == io.EOF {
			return raws, lines, offs, nil
		}
		if e != nil {
			return raws, lines, offs, e
		}
		raws = append(raws, string(el.Raw))
		lines = append(lines, el.Line)
		offs = append(offs, el.Offset)
		if el.Index != len(raws)-1 {
			t.Fatalf("element %d has Index %d", len(raws)-1, el.Index)
		}
	}
}

func TestArray(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		raws  []string
		lines []int
		offs  []int64
	}{
		{"empty array", "[]", nil, nil, nil},
		{"spaces", "  [ ]  \n", nil, nil, nil},
		{"compact", `[1,"a",{"b":[2]}]`, []string{"1", `"a"`, `{"b":[2]}`}, []int{1, 1, 1}, []int64{1, 3, 7}},
		{"pretty", "[\n  {\"x\": 1},\n  {\"y\": 2}\n]\n", []string{`{"x": 1}`, `{"y": 2}`}, []int{2, 3}, []int64{4, 16}},
		{"bom", "\xef\xbb\xbf[\n7]", []string{"7"}, []int{2}, []int64{5}},
		{"crlf", "[\r\n1,\r\n2]", []string{"1", "2"}, []int{2, 3}, []int64{3, 7}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// One byte at a time exercises the decoder's refills.
			for _, slow := range []bool{false, true} {
				var src io.Reader = strings.NewReader(tc.in)
				if slow {
					src = iotest.OneByteReader(src)
				}
				r := NewReader(src)
				if err := r.OpenArray(); err != nil {
					t.Fatal(err)
				}
				raws, lines, offs, err := collect(t, r)
				if err != nil {
					t.Fatal(err)
				}
				if strings.Join(raws, "|") != strings.Join(tc.raws, "|") {
					t.Fatalf("raws = %q, want %q", raws, tc.raws)
				}
				for i := range tc.lines {
					if lines[i] != tc.lines[i] || offs[i] != tc.offs[i] {
						t.Errorf("element %d at line %d offset %d, want line %d offset %d", i, lines[i], offs[i], tc.lines[i], tc.offs[i])
					}
				}
				// io.EOF is sticky.
				if _, err := r.Next(); err != io.EOF {
					t.Errorf("second end: %v", err)
				}
			}
		})
	}
}

func TestArrayErrors(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		n        int // elements read before the error
		line     int
		col      int
		contains string
	}{
		{"not array", `{"a":1}`, 0, 1, 1, "expected a JSON array, found an object"},
		{"string", ` "x"`, 0, 1, 2, "found a string"},
		{"empty", "", 0, 1, 1, "empty input"},
		{"blank", " \n ", 0, 2, 2, "empty input"},
		{"bad char in element", "[\n {\"a\": 1},\n {\"b\": x}\n]", 1, 3, 8, "invalid character 'x'"},
		{"missing comma", "[1\n 2]", 1, 2, 2, "expected comma"},
		{"trailing comma", "[1,\n]", 1, 2, 1, "invalid character ']'"},
		{"truncated", "[{\"a\": \"abc", 0, 1, 12, "unexpected end"},
		{"unclosed", "[1, 2", 2, 1, 6, "unexpected end"},
		{"trailing data", "[1]\n\n  {}", 1, 3, 3, "unexpected data after"},
		{"trailing garbage", "[1] x", 1, 1, 5, "invalid character 'x'"},
		{"wrong close", "[1}", 1, 1, 3, "invalid character '}'"},
		{"bad literal", "[tru]", 0, 1, 5, "invalid character ']'"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(strings.NewReader(tc.in))
			var raws []string
			err := r.OpenArray()
			if err == nil {
				raws, _, _, err = collect(t, r)
			}
			if err == nil {
				t.Fatalf("no error; elements %q", raws)
			}
			if len(raws) != tc.n {
				t.Errorf("read %d elements before the error, want %d", len(raws), tc.n)
			}
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("error %v (%T) is not a *SyntaxError", err, err)
			}
			if se.Line != tc.line || se.Col != tc.col {
				t.Errorf("error at %d:%d, want %d:%d (%v)", se.Line, se.Col, tc.line, tc.col, err)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("error %q does not contain %q", err, tc.contains)
			}
			// Errors are sticky.
			if _, err2 := r.Next(); err2 == nil || err2 == io.EOF {
				t.Errorf("after an error Next returned %v", err2)
			}
		})
	}
}

func TestSequence(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		raws  []string
		lines []int
		err   string
	}{
		{"jsonl", "{\"a\":1}\n{\"b\":2}\n", []string{`{"a":1}`, `{"b":2}`}, []int{1, 2}, ""},
		{"blank lines", "\n\n{\"a\":1}\n\n\n{\"b\":2}", []string{`{"a":1}`, `{"b":2}`}, []int{3, 6}, ""},
		{"concatenated", `{"a":1}{"b":2} 3`, []string{`{"a":1}`, `{"b":2}`, "3"}, []int{1, 1, 1}, ""},
		{"empty", "", nil, nil, ""},
		{"bad second line", "{\"a\":1}\n{\"b\":}\n", []string{`{"a":1}`}, nil, "line 2, column 6"},
		{"truncated", "{\"a\":1}\n{\"b\":", []string{`{"a":1}`}, nil, "line 2, column 6"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(strings.NewReader(tc.in))
			raws, lines, _, err := collect(t, r)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if strings.Join(raws, "|") != strings.Join(tc.raws, "|") {
				t.Fatalf("raws = %q, want %q", raws, tc.raws)
			}
			for i := range tc.lines {
				if lines[i] != tc.lines[i] {
					t.Errorf("element %d at line %d, want %d", i, lines[i], tc.lines[i])
				}
			}
		})
	}
}

func TestPeek(t *testing.T) {
	tests := []struct {
		in   string
		want byte
		err  error
	}{
		{"[1]", '[', nil},
		{"\xef\xbb\xbf \n{", '{', nil},
		{" \t\r\n", 0, io.EOF},
		{"", 0, io.EOF},
		{"x", 'x', nil},
	}
	for _, tc := range tests {
		r := NewReader(strings.NewReader(tc.in))
		c, err := r.Peek()
		if c != tc.want || err != tc.err {
			t.Errorf("Peek(%q) = %q, %v; want %q, %v", tc.in, c, err, tc.want, tc.err)
		}
	}
	// Peek leaves the value in place and the offsets intact.
	r := NewReader(strings.NewReader("\xef\xbb\xbf\n  [\"v\"]"))
	if c, _ := r.Peek(); c != '[' {
		t.Fatalf("Peek = %q", c)
	}
	if err := r.OpenArray(); err != nil {
		t.Fatal(err)
	}
	el, err := r.Next()
	if err != nil || string(el.Raw) != `"v"` || el.Offset != 7 || el.Line != 2 {
		t.Fatalf("Next = %+v, %v", el, err)
	}
	if _, err := r.Peek(); err == nil {
		t.Error("Peek after reading started should fail")
	}
}

func TestCheckText(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		err  string
	}{
		{"ascii", `{"a":"b"}`, ""},
		{"utf8", `{"a":"héllo — 日本"}`, ""},
		{"escaped pair", `"\ud83d\ude00"`, ""},
		{"escaped bmp", `"\u00e9\u4e2d"`, ""},
		{"escaped backslash then u", `"\\ud800"`, ""},
		{"bad byte", "\"a\xffb\"", "invalid UTF-8 byte 0xff at offset 2"},
		{"truncated rune", "\"\xe6\x97\"", "invalid UTF-8 byte 0xe6 at offset 1"},
		{"overlong", "\"\xc0\xaf\"", "invalid UTF-8"},
		{"encoded surrogate", "\"\xed\xa0\x80\"", "invalid UTF-8"},
		{"lone high", `"x\ud800y"`, `unpaired UTF-16 surrogate escape \uD800 at offset 2`},
		{"lone high at end", `"\uD83D"`, "unpaired"},
		{"lone low", `"\udc00"`, "unpaired"},
		{"high then non-low", `"\ud800\u0041"`, "unpaired"},
		{"reversed pair", `"\ude00\ud83d"`, "unpaired"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckText([]byte(tc.raw))
			if tc.err == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want one containing %q", err, tc.err)
			}
		})
	}
}

func TestScalar(t *testing.T) {
	tests := []struct {
		raw  string
		s    string
		kind Kind
		ok   bool
	}{
		{`"a\nb"`, "a\nb", String, true},
		{`""`, "", String, true},
		{`4`, "4", Number, true},
		{`4.0`, "4.0", Number, true},
		{`-1e3`, "-1e3", Number, true},
		{` 12 `, "12", Number, true},
		{`true`, "true", Bool, true},
		{`false`, "false", Bool, true},
		{`null`, "", Null, false},
		{`{"a":1}`, "", Object, false},
		{`[1]`, "", Array, false},
	}
	for _, tc := range tests {
		s, kind, ok := Scalar([]byte(tc.raw))
		if s != tc.s || kind != tc.kind || ok != tc.ok {
			t.Errorf("Scalar(%s) = %q, %v, %v; want %q, %v, %v", tc.raw, s, kind, ok, tc.s, tc.kind, tc.ok)
		}
	}
}

func TestMembersAndElements(t *testing.T) {
	m, err := Members([]byte(`{"id":"1","ID":"2","id":"3"}`))
	if err != nil {
		t.Fatal(err)
	}
	if string(m["id"]) != `"3"` || string(m["ID"]) != `"2"` {
		t.Errorf("Members = %v", m)
	}
	if _, err := Members([]byte(`[1]`)); err == nil || !strings.Contains(err.Error(), "found an array") {
		t.Errorf("Members(array) error = %v", err)
	}
	if _, err := Members([]byte(`"s"`)); err == nil || !strings.Contains(err.Error(), "found a string") {
		t.Errorf("Members(string) error = %v", err)
	}
	a, err := Elements([]byte(` [1, {"a":2}, "x"]`))
	if err != nil || len(a) != 3 || string(a[1]) != `{"a":2}` {
		t.Errorf("Elements = %q, %v", a, err)
	}
	if _, err := Elements([]byte(`null`)); err == nil || !strings.Contains(err.Error(), "found null") {
		t.Errorf("Elements(null) error = %v", err)
	}
}

func TestLineCol(t *testing.T) {
	data := []byte("ab\ncd\n\nef")
	tests := []struct {
		off       int64
		line, col int
	}{
		{0, 1, 1}, {1, 1, 2}, {2, 1, 3}, {3, 2, 1}, {6, 3, 1}, {7, 4, 1}, {8, 4, 2}, {9, 4, 3}, {100, 4, 3},
	}
	for _, tc := range tests {
		if l, c := LineCol(data, tc.off); l != tc.line || c != tc.col {
			t.Errorf("LineCol(%d) = %d:%d, want %d:%d", tc.off, l, c, tc.line, tc.col)
		}
	}
}

// A long array read through a slow reader keeps the position window small.
func TestForgetBoundsMemory(t *testing.T) {
	var b strings.Builder
	b.WriteString("[\n")
	for i := 0; i < 5000; i++ {
		if i > 0 {
			b.WriteString(",\n")
		}
		b.WriteString(`{"k": "` + strings.Repeat("x", 100) + `"}`)
	}
	b.WriteString("\n]")
	r := NewReader(strings.NewReader(b.String()))
	if err := r.OpenArray(); err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		el, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if el.Line != n+2 {
			t.Fatalf("element %d on line %d", n, el.Line)
		}
		n++
		if len(r.pos.buf) > 200<<10 {
			t.Fatalf("position buffer grew to %d bytes", len(r.pos.buf))
		}
	}
	if n != 5000 {
		t.Fatalf("read %d elements", n)
	}
}
