package profile

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// dateKeys are the fields looked at, in order, for an item's date.
var dateKeys = []string{"date", "timestamp", "time", "datetime", "created_at", "createdAt", "unixReviewTime", "reviewTime"}

// dateLayouts are tried in order by ParseDate. Layouts without a zone give
// UTC times.
var dateLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05",
	"2006-01-02T15:04",
	"2006-01-02 15:04:05Z07:00",
	"2006-01-02 15:04:05 Z07:00",
	"2006-01-02 15:04:05 -0700",
	"2006-01-02 15:04:05",
	"2006-01-02 15:04",
	"2006-01-02",
	"2006-01",
	"2006/01/02 15:04:05",
	"2006/01/02",
	time.RFC1123Z,
	time.RFC1123,
	time.RubyDate, // Twitter's created_at: "Mon Jan 02 15:04:05 -0700 2006"
	time.UnixDate,
	time.ANSIC,
	"January 2, 2006",
	"Jan 2, 2006",
	"2 January 2006",
	"2 Jan 2006",
	"01 2, 2006", // Amazon reviews' reviewTime: "09 13, 2009"
}

// ParseDate parses a date leniently. It accepts
//
//   - RFC 3339 ("2006-01-02T15:04:05Z07:00", fractional seconds allowed) and
//     the same without a zone, or with a space instead of the T;
//   - "2006-01-02", "2006-01", "2006/01/02" and a bare four-digit year
//     ("2013", as in LaMP's paper items), meaning the start of that period;
//   - "20060102" (eight digits that form a valid date);
//   - RFC 1123, Ruby/Twitter ("Mon Jan 02 15:04:05 -0700 2006"), Unix date
//     and ANSI C formats, "January 2, 2006", "Jan 2, 2006", "2 Jan 2006",
//     and Amazon's "01 2, 2006";
//   - any other number as Unix time: seconds (fractions allowed), or
//     milliseconds when its magnitude is at least 1e11 (which as seconds
//     would be beyond the year 5000).
//
// Times without a zone are taken as UTC.
func ParseDate(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, false
	}
	if isDigits(s) {
		switch len(s) {
		case 4:
			y, _ := strconv.Atoi(s)
			return time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC), true
		case 8:
			if t, err := time.Parse("20060102", s); err == nil {
				return t, true
			}
		}
	}
	if v, ok := parseNumber(s); ok {
		if math.Abs(v) >= 1e11 {
			v /= 1000
		}
		sec, frac := math.Modf(v)
		if math.Abs(sec) > 1e12 {
			return time.Time{}, false
		}
		return time.Unix(int64(sec), int64(math.Round(frac*1e9))).UTC(), true
	}
	for _, layout := range dateLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// parseNumber accepts decimal numbers as JSON writes them (optional sign,
// digits, fraction, exponent), nothing else.
func parseNumber(s string) (float64, bool) {
	i := 0
	if i < len(s) && (s[i] == '-' || s[i] == '+') {
		i++
	}
	digits := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
		digits++
	}
	if i < len(s) && s[i] == '.' {
		i++
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			digits++
		}
	}
	if digits == 0 {
		return 0, false
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '-' || s[i] == '+') {
			i++
		}
		exp := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			exp++
		}
		if exp == 0 {
			return 0, false
		}
	}
	if i != len(s) {
		return 0, false
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(v, 0) {
		return 0, false
	}
	return v, true
}
