package lamp

import (
	"math"
	"slices"
	"testing"
)

func TestRougeTokens(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"   ", nil},
		{"Hello, World!", []string{"hello", "world"}},
		{"U.S. GDP grew 3.5%", []string{"u", "s", "gdp", "grew", "3", "5"}},
		{"don't stop-me", []string{"don", "t", "stop", "me"}},
		{"snake_case x2", []string{"snake", "case", "x2"}},
		{"café naïve", []string{"caf", "na", "ve"}},
		{"日本語", nil},
		{"Ünïcödé", []string{"n", "c", "d"}},
		{"5\u212a run", []string{"5k", "run"}},      // KELVIN SIGN lower-cases to k
		{"\u0130stanbul", []string{"i", "stanbul"}}, // İ -> "i" + combining dot
		{"ABC\tdef\nGHI", []string{"abc", "def", "ghi"}},
		{"a\u00a0b", []string{"a", "b"}},
		{"x", []string{"x"}},
	}
	for _, tc := range tests {
		if got := RougeTokens(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("RougeTokens(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-12 }

func TestRouge(t *testing.T) {
	tests := []struct {
		name         string
		target, pred string
		r1           RougeScore
		rl           RougeScore
	}{
		{"identical", "Hello, World!", "hello world", RougeScore{1, 1, 1}, RougeScore{1, 1, 1}},
		{"single word", "hello", "hello", RougeScore{1, 1, 1}, RougeScore{1, 1, 1}},
		{"single word miss", "hello", "world", RougeScore{}, RougeScore{}},
		// the:2 cat:2 vs the:3 dog:1 -> clipped overlap 2 of 4 each way; LCS "the the".
		{"repeated words", "the cat the cat", "the the the dog", RougeScore{0.5, 0.5, 0.5}, RougeScore{0.5, 0.5, 0.5}},
		// every unigram matches, but the LCS is one token.
		{"reversed", "a b c d", "d c b a", RougeScore{1, 1, 1}, RougeScore{0.25, 0.25, 0.25}},
		// overlap {the, brown}: P 2/3, R 1/2, F 4/7.
		{"partial", "the quick brown fox", "the brown dog", RougeScore{2.0 / 3, 0.5, 4.0 / 7}, RougeScore{2.0 / 3, 0.5, 4.0 / 7}},
		// R1 overlap a,b,c = 3 (P 1, R 3/4, F 6/7); LCS 2 (P 2/3, R 1/2, F 4/7).
		{"lcs shorter", "a b c a", "a c b", RougeScore{1, 0.75, 6.0 / 7}, RougeScore{2.0 / 3, 0.5, 4.0 / 7}},
		// u s gdp grew 3 5 vs us gdp grew 3 5 percent: 4 of 6 both ways.
		{"punctuation and numbers", "U.S. GDP grew 3.5%", "US GDP grew 3.5 percent", RougeScore{2.0 / 3, 2.0 / 3, 2.0 / 3}, RougeScore{2.0 / 3, 2.0 / 3, 2.0 / 3}},
		{"non-ascii letters dropped", "café", "caf", RougeScore{1, 1, 1}, RougeScore{1, 1, 1}},
		{"no tokens either side", "日本語", "日本語", RougeScore{}, RougeScore{}},
		{"empty prediction", "a b", "", RougeScore{}, RougeScore{}},
		{"whitespace prediction", "a b", " \n ", RougeScore{}, RougeScore{}},
		{"empty target", "", "a b", RougeScore{}, RougeScore{}},
		// prediction repeats a target word: clipped to the target's count.
		{"clipping", "a b", "a a a a", RougeScore{0.25, 0.5, 1.0 / 3}, RougeScore{0.25, 0.5, 1.0 / 3}},
		{"case", "ABC", "abc", RougeScore{1, 1, 1}, RougeScore{1, 1, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r1 := Rouge1Score(tc.target, tc.pred)
			rl := RougeLScore(tc.target, tc.pred)
			if !near(r1.Precision, tc.r1.Precision) || !near(r1.Recall, tc.r1.Recall) || !near(r1.F, tc.r1.F) {
				t.Errorf("ROUGE-1 = %+v, want %+v", r1, tc.r1)
			}
			if !near(rl.Precision, tc.rl.Precision) || !near(rl.Recall, tc.rl.Recall) || !near(rl.F, tc.rl.F) {
				t.Errorf("ROUGE-L = %+v, want %+v", rl, tc.rl)
			}
		})
	}
}

func TestLCS(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"a", "", 0},
		{"a b c", "a b c", 3},
		{"a b c d e", "b d e a", 3},
		{"x a y b z c", "a b c", 3},
		{"a a a", "a", 1},
		{"a b a b a", "b a b", 3},
	}
	for _, tc := range tests {
		a, b := RougeTokens(tc.a), RougeTokens(tc.b)
		if got := lcsLen(a, b); got != tc.want {
			t.Errorf("lcs(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := lcsLen(b, a); got != tc.want {
			t.Errorf("lcs(%q, %q) = %d, want %d", tc.b, tc.a, got, tc.want)
		}
	}
}
