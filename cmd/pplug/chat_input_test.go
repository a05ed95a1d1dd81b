package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/pplug/pplug/llama"
)

func TestMultilineMessages(t *testing.T) {
	feed := func(lines ...string) (msgs []string, pending bool) {
		var m multiline
		for _, l := range lines {
			if msg, ok := m.Feed(l); ok {
				msgs = append(msgs, msg)
			}
		}
		return msgs, m.Pending()
	}
	for _, c := range []struct {
		in   []string
		want []string
		open bool
	}{
		{[]string{"hello", "there"}, []string{"hello", "there"}, false},
		{[]string{`first \`, `second\`, "third"}, []string{"first \nsecond\nthird"}, false},
		{[]string{`"""`, "a", "", "  b", `"""`}, []string{"a\n\n  b"}, false},
		{[]string{`"""start`, `end"""`, "next"}, []string{"start\nend", "next"}, false},
		{[]string{`"""one line"""`}, []string{"one line"}, false},
		{[]string{`"""`, `a \`, `"""`}, []string{"a \\"}, false},
		{[]string{`"""`, "never closed"}, nil, true},
		{[]string{`a\`}, nil, true},
		{[]string{`say "hi"`}, []string{`say "hi"`}, false},
	} {
		got, open := feed(c.in...)
		if !slices.Equal(got, c.want) || open != c.open {
			t.Errorf("%q: got %q (pending %v), want %q (pending %v)", c.in, got, open, c.want, c.open)
		}
	}
	var m multiline
	m.Feed(`"""`)
	m.Feed("unfinished")
	if msg, ok := m.Flush(); !ok || msg != "unfinished" || m.Pending() {
		t.Fatalf("flush: %q %v", msg, ok)
	}
}

func TestChatSet(t *testing.T) {
	s := chatSettings{Sampler: llama.DefaultSamplerOptions(), NPredict: 512}
	for _, c := range []struct {
		args string
		ok   bool
	}{
		{"temp 0.2", true},
		{"parameter temperature 0.3", true},
		{"top_k 7", true},
		{"top-p 0.5", true},
		{"seed 42", true},
		{"n-predict 16", true},
		{"frequency-penalty 0.5", true},
		{"system Be brief.", true},
		{"temp hot", false},
		{"temp NaN", false},
		{"top-p 2", false},
		{"top-k -1", false},
		{"seed -5", false},
		{"seed 99999999999", false},
		{"n-predict -2", false},
		{"presence-penalty 9", false},
		{"colour blue", false},
		{"temp", false},
		{"temp 1 2", false},
		{"", false},
	} {
		before := s
		_, err := s.apply(strings.Fields(c.args))
		if (err == nil) != c.ok {
			t.Errorf("/set %s: err %v, want ok=%v", c.args, err, c.ok)
		}
		if err != nil && s != before {
			t.Errorf("/set %s failed but changed the settings", c.args)
		}
	}
	o := s.Sampler
	if o.Temp != 0.3 || o.TopK != 7 || o.TopP != 0.5 || o.Seed != 42 || s.NPredict != 16 || o.FrequencyPenalty != 0.5 || s.System != "Be brief." {
		t.Fatalf("settings after /set: %+v n %d system %q", o, s.NPredict, s.System)
	}
	if d := s.describe(); !strings.Contains(d, "temp 0.3") || !strings.Contains(d, "seed 42") {
		t.Fatalf("describe: %s", d)
	}
}
