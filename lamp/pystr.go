package lamp

import (
	"math"
	"strconv"
	"strings"
	"unicode"
)

// IsPySpace reports whether r is white space for Python's str.isspace and
// str.strip(): the characters of bidirectional class WS, B or S or of
// category Zs. Unlike unicode.IsSpace this includes U+001C..U+001F (the
// information separators).
func IsPySpace(r rune) bool {
	switch r {
	case '\t', '\n', '\v', '\f', '\r', 0x1c, 0x1d, 0x1e, 0x1f, ' ', 0x85, 0xa0,
		0x1680, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000:
		return true
	}
	return r >= 0x2000 && r <= 0x200a
}

// PyStrip removes leading and trailing white space as Python's str.strip()
// does without arguments; it is the only normalisation the official LaMP
// scorer applies to predictions and golds.
func PyStrip(s string) string { return strings.TrimFunc(s, IsPySpace) }

// ParsePyFloat parses s as Python's float() does for a str: surrounding
// white space is ignored; an optional sign; a decimal number with optional
// fraction and exponent, where single underscores may separate digits
// ("1_000.5"); or "inf", "infinity", "nan" in any case. Any Unicode decimal
// digit counts as a digit (float("٣") == 3.0). Hexadecimal and other forms
// that strconv accepts but Python does not are rejected. Values too large
// for a float64 give ±Inf, as in Python.
func ParsePyFloat(s string) (float64, bool) {
	s = PyStrip(s)
	if s == "" {
		return 0, false
	}
	// Map Unicode decimal digits to ASCII; any other non-ASCII rune fails.
	var b []byte
	for _, r := range s {
		switch {
		case r < 0x80:
			b = append(b, byte(r))
		case unicode.Is(unicode.Nd, r):
			b = append(b, byte('0'+digitValue(r)))
		default:
			return 0, false
		}
	}
	i := 0
	neg := false
	if b[0] == '+' || b[0] == '-' {
		neg = b[0] == '-'
		i = 1
	}
	switch strings.ToLower(string(b[i:])) {
	case "inf", "infinity":
		if neg {
			return math.Inf(-1), true
		}
		return math.Inf(1), true
	case "nan":
		return math.NaN(), true
	}
	// digitpart: digit (["_"] digit)*
	digits := func() int {
		start := i
		for i < len(b) {
			if b[i] >= '0' && b[i] <= '9' {
				i++
				continue
			}
			if b[i] == '_' && i > start && i+1 < len(b) && b[i+1] >= '0' && b[i+1] <= '9' {
				i++
				continue
			}
			break
		}
		return i - start
	}
	intDigits := digits()
	fracDigits := 0
	if i < len(b) && b[i] == '.' {
		i++
		fracDigits = digits()
	}
	if intDigits == 0 && fracDigits == 0 {
		return 0, false
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return 0, false
		}
	}
	if i != len(b) {
		return 0, false
	}
	clean := strings.ReplaceAll(string(b), "_", "")
	v, err := strconv.ParseFloat(clean, 64)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return v, true // ±Inf or ±0, as Python
		}
		return 0, false
	}
	return v, true
}

// digitValue returns the value of a Unicode decimal digit. Decimal digits
// come in contiguous runs of ten starting at zero, and the ranges of the
// unicode.Nd table start at a zero, so the offset in the range modulo ten
// is the value.
func digitValue(r rune) int {
	for _, rg := range unicode.Nd.R16 {
		if r >= rune(rg.Lo) && r <= rune(rg.Hi) {
			return int(r-rune(rg.Lo)) % 10
		}
	}
	for _, rg := range unicode.Nd.R32 {
		if r >= rune(rg.Lo) && r <= rune(rg.Hi) {
			return int(r-rune(rg.Lo)) % 10
		}
	}
	return 0
}
