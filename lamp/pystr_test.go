package lamp

import (
	"math"
	"testing"
	"unicode"
)

func TestPyStrip(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"   ", ""},
		{" \t\n\r\v\f x \n", "x"},
		{"\x1c\x1d\x1e\x1fx\x1f", "x"}, // Python strips the separators; unicode.IsSpace does not
		{"\u0085\u00a0x\u1680", "x"},
		{"\u2000\u2005\u200ax\u2028\u2029\u202f\u205f\u3000", "x"},
		{"\u200bx\u200b", "\u200bx\u200b"}, // zero-width space is not white space
		{"\ufeffx", "\ufeffx"},             // nor is a BOM
		{"\u180ex", "\u180ex"},             // Mongolian vowel separator: not since Unicode 6.3
		{"a b", "a b"},
	}
	for _, tc := range tests {
		if got := PyStrip(tc.in); got != tc.want {
			t.Errorf("PyStrip(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	// The exact set of Python's str.isspace() characters.
	want := []rune{0x9, 0xa, 0xb, 0xc, 0xd, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680,
		0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a,
		0x2028, 0x2029, 0x202f, 0x205f, 0x3000}
	var got []rune
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if IsPySpace(r) {
			got = append(got, r)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("IsPySpace set has %d runes, want %d: %U", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("IsPySpace set %U, want %U", got, want)
		}
	}
}

func TestParsePyFloat(t *testing.T) {
	inf := math.Inf(1)
	tests := []struct {
		in   string
		want float64
		ok   bool
	}{
		{"3", 3, true},
		{" 4 ", 4, true},
		{"\u00a05\u3000", 5, true},
		{"+2", 2, true},
		{"-1.5", -1.5, true},
		{"3.", 3, true},
		{".5", 0.5, true},
		{"1e0", 1, true},
		{"1.e1", 10, true},
		{"2E-1", 0.2, true},
		{"1_0", 10, true},
		{"1_000.5_5", 1000.55, true},
		{"1e1_0", 1e10, true},
		{"٣", 3, true},     // Arabic-Indic three
		{"３.５", 3.5, true}, // full-width digits
		{"𝟓", 5, true},     // mathematical bold five (outside the BMP)
		{"inf", inf, true}, // parsed; Score treats it as unparsable
		{"-Infinity", -inf, true},
		{"1e999", inf, true},
		{"", 0, false},
		{"   ", 0, false},
		{"abc", 0, false},
		{"4 stars", 0, false},
		{"4/5", 0, false},
		{"1__0", 0, false},
		{"_1", 0, false},
		{"1_", 0, false},
		{"1_.5", 0, false},
		{"1._5", 0, false},
		{"0x10", 0, false}, // strconv would accept hex floats
		{"0x1p-2", 0, false},
		{"1e", 0, false},
		{"1e+", 0, false},
		{".", 0, false},
		{"+", 0, false},
		{"--1", 0, false},
		{"in f", 0, false},
		{"infinit", 0, false},
		{"five", 0, false},
		{"³", 0, false}, // superscript three is a digit (No), not a decimal (Nd)
		{"1\u200b", 0, false},
	}
	for _, tc := range tests {
		got, ok := ParsePyFloat(tc.in)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("ParsePyFloat(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
	if v, ok := ParsePyFloat("nan"); !ok || !math.IsNaN(v) {
		t.Errorf("ParsePyFloat(nan) = %v, %v", v, ok)
	}
	if v, ok := ParsePyFloat("-NaN"); !ok || !math.IsNaN(v) {
		t.Errorf("ParsePyFloat(-NaN) = %v, %v", v, ok)
	}
}

func TestDigitValue(t *testing.T) {
	// Every Nd range is made of whole runs of ten starting at a zero.
	check := func(lo, hi, stride uint32) {
		if stride != 1 || (hi-lo+1)%10 != 0 {
			t.Errorf("Nd range %U-%U stride %d breaks digitValue's assumption", lo, hi, stride)
		}
	}
	for _, r := range unicode.Nd.R16 {
		check(uint32(r.Lo), uint32(r.Hi), uint32(r.Stride))
	}
	for _, r := range unicode.Nd.R32 {
		check(r.Lo, r.Hi, r.Stride)
	}
	for _, tc := range []struct {
		r    rune
		want int
	}{{'0', 0}, {'9', 9}, {'٠', 0}, {'٩', 9}, {'७', 7}, {'９', 9}, {'𝟎', 0}, {'𝟗', 9}, {'𝟘', 0}, {'𝟡', 9}, {'𝟶', 0}} {
		if got := digitValue(tc.r); got != tc.want {
			t.Errorf("digitValue(%q) = %d, want %d", tc.r, got, tc.want)
		}
	}
}
