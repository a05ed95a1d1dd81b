package profile

import (
	"testing"
	"time"
)

func TestParseDate(t *testing.T) {
	utc := func(y int, mo time.Month, d, h, mi, s int) time.Time {
		return time.Date(y, mo, d, h, mi, s, 0, time.UTC)
	}
	tests := []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"2013", utc(2013, 1, 1, 0, 0, 0), true},
		{"2013-05", utc(2013, 5, 1, 0, 0, 0), true},
		{"2013-05-02", utc(2013, 5, 2, 0, 0, 0), true},
		{" 2013-05-02 ", utc(2013, 5, 2, 0, 0, 0), true},
		{"2013/05/02", utc(2013, 5, 2, 0, 0, 0), true},
		{"20130502", utc(2013, 5, 2, 0, 0, 0), true},
		{"2013-05-02 10:20:30", utc(2013, 5, 2, 10, 20, 30), true},
		{"2013-05-02T10:20:30", utc(2013, 5, 2, 10, 20, 30), true},
		{"2013-05-02T10:20:30Z", utc(2013, 5, 2, 10, 20, 30), true},
		{"2013-05-02T12:20:30+02:00", utc(2013, 5, 2, 10, 20, 30), true},
		{"2013-05-02T10:20:30.5Z", time.Date(2013, 5, 2, 10, 20, 30, 5e8, time.UTC), true},
		{"Thu May 02 10:20:30 +0000 2013", utc(2013, 5, 2, 10, 20, 30), true},
		{"Thu, 02 May 2013 10:20:30 +0000", utc(2013, 5, 2, 10, 20, 30), true},
		{"May 2, 2013", utc(2013, 5, 2, 0, 0, 0), true},
		{"2 May 2013", utc(2013, 5, 2, 0, 0, 0), true},
		{"05 2, 2013", utc(2013, 5, 2, 0, 0, 0), true},
		{"1367490030", utc(2013, 5, 2, 10, 20, 30), true},
		{"1367490030.25", time.Date(2013, 5, 2, 10, 20, 30, 25e7, time.UTC), true},
		{"1.36749003e9", utc(2013, 5, 2, 10, 20, 30), true},
		{"1367490030000", utc(2013, 5, 2, 10, 20, 30), true}, // milliseconds
		{"0", utc(1970, 1, 1, 0, 0, 0), true},
		{"", time.Time{}, false},
		{"yesterday", time.Time{}, false},
		{"2013-13-01", time.Time{}, false},
		{"13/05/2013", time.Time{}, false}, // day-first and month-first are ambiguous
		{"0x10", time.Time{}, false},
		{"1e400", time.Time{}, false},
		{"NaN", time.Time{}, false},
	}
	for _, tc := range tests {
		got, ok := ParseDate(tc.in)
		if ok != tc.ok || !got.Equal(tc.want) {
			t.Errorf("ParseDate(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
