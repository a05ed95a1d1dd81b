package bm25

import (
	"math"
	"slices"
	"testing"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-12 }

func TestTokenize(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"  ,;  ", nil},
		{"Hello, World!", []string{"hello", "world"}},
		{"GPT-4o costs $3.50", []string{"gpt", "4o", "costs", "3", "50"}},
		{"snake_case", []string{"snake", "case"}},
		{"Café NAÏVE", []string{"café", "naïve"}},
		{"cafe\u0301", []string{"cafe\u0301"}},          // combining accent stays in the word
		{"नमस्ते दुनिया", []string{"नमस्ते", "दुनिया"}}, // Devanagari vowel signs are marks
		{"東京 tower", []string{"東京", "tower"}},
		{"٣ apples", []string{"٣", "apples"}},
		{"ΣΟΦΙΑ", []string{"σοφια"}},
	}
	for _, tc := range tests {
		if got := Tokenize(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("Tokenize(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// The 3-document corpus of the hand computation:
//
//	d0 "Apple banana apple"           [apple banana apple]          |d| = 3
//	d1 "banana, cherry"               [banana cherry]               |d| = 2
//	d2 "durian elderberry fig grape"  [durian elderberry fig grape] |d| = 4
//
// N = 3, avgdl = 9/3 = 3. banana is in 2 documents, every other term in 1:
//
//	idf(n=1) = log(2.5) - log(1.5) = log(5/3)          = 0.5108256237659907
//	idf(n=2) = log(1.5) - log(2.5)                     < 0, so floored:
//	average idf = (6*0.51082562 - 0.51082562)/7        = 0.3648754455471362
//	idf(banana) = 0.25 * 0.3648754455471362            = 0.09121886138678405
//
// Query "apple banana":
//
//	d0: apple f=2: 2*2.5/(2 + 1.5*(0.25 + 0.75*3/3)) = 5/3.5   = 1.4285714285714286
//	             * 0.5108256237659907                          = 0.7297508910942724
//	    banana f=1: 2.5/(1 + 1.5) = 1, * 0.09121886138678405   = 0.09121886138678405
//	    total                                                  = 0.8209697524810565
//	d1: banana f=1, |d|=2: 2.5/(1 + 1.5*(0.25 + 0.5)) = 2.5/2.125 = 1.1764705882352942
//	             * 0.09121886138678405                         = 0.10731630751386359
//	d2: 0
//
// Query "fig": d2 f=1, |d|=4: 2.5/(1 + 1.5*(0.25 + 1)) = 2.5/2.875,
// * 0.5108256237659907 = 0.44419619457912235.
var corpus = []string{"Apple banana apple", "banana, cherry", "durian elderberry fig grape"}

func TestScores(t *testing.T) {
	ix := New(corpus)
	if ix.Len() != 3 {
		t.Fatalf("Len = %d", ix.Len())
	}
	if !near(ix.IDF("apple"), 0.5108256237659907) || !near(ix.IDF("banana"), 0.09121886138678405) || ix.IDF("zebra") != 0 {
		t.Errorf("idf apple %v banana %v", ix.IDF("apple"), ix.IDF("banana"))
	}
	tests := []struct {
		query string
		want  []float64
		top   []int
	}{
		{"apple banana", []float64{0.8209697524810565, 0.10731630751386359, 0}, []int{0, 1, 2}},
		{"APPLE, Banana!", []float64{0.8209697524810565, 0.10731630751386359, 0}, []int{0, 1, 2}},
		{"fig", []float64{0, 0, 0.44419619457912235}, []int{2, 0, 1}},
		// A repeated query token counts twice.
		{"apple apple", []float64{2 * 0.7297508910942724, 0, 0}, []int{0, 1, 2}},
		{"zebra", []float64{0, 0, 0}, []int{0, 1, 2}},
		{"", []float64{0, 0, 0}, []int{0, 1, 2}},
		// cherry (d1) and grape (d2) have the same idf, but d1 is shorter.
		{"cherry grape", []float64{0, 0.5108256237659907 * 2.5 / (1 + 1.5*(0.25+0.75*2.0/3)), 0.44419619457912235}, []int{1, 2, 0}},
	}
	for _, tc := range tests {
		got := ix.Scores(tc.query)
		if len(got) != 3 || !near(got[0], tc.want[0]) || !near(got[1], tc.want[1]) || !near(got[2], tc.want[2]) {
			t.Errorf("Scores(%q) = %v, want %v", tc.query, got, tc.want)
		}
		if top := ix.TopK(tc.query, 3); !slices.Equal(top, tc.top) {
			t.Errorf("TopK(%q, 3) = %v, want %v", tc.query, top, tc.top)
		}
	}
}

// When most terms are in most documents the average idf is negative, and so
// is the floor rank_bm25 puts under negative idfs.
func TestNegativeFloor(t *testing.T) {
	// d0 [the cat sat], d1 [the dog sat down], d2 [a cat and a dog]:
	// the, cat, sat, dog in 2 documents (idf log(0.6)); down, a, and in 1
	// (idf log(5/3)). Average idf = (4*log(0.6) + 3*log(5/3))/7 = -log(5/3)/7.
	ix := New([]string{"the cat sat", "the dog sat down", "a cat and a dog"})
	l := math.Log(2.5) - math.Log(1.5)
	eps := 0.25 * (4*(math.Log(1.5)-math.Log(2.5)) + 3*l) / 7
	if !near(ix.IDF("the"), eps) || eps >= 0 || !near(ix.IDF("down"), l) {
		t.Fatalf("idf the %v (want %v), down %v", ix.IDF("the"), eps, ix.IDF("down"))
	}
	// avgdl 4. "cat": d0 f=1 |d|=3: 2.5/(1+1.5*(0.25+0.75*3/4)); d2 |d|=5.
	s := ix.Scores("cat")
	w0 := eps * 2.5 / (1 + 1.5*(0.25+0.75*3.0/4))
	w2 := eps * 2.5 / (1 + 1.5*(0.25+0.75*5.0/4))
	if !near(s[0], w0) || s[1] != 0 || !near(s[2], w2) {
		t.Errorf("Scores(cat) = %v, want [%v 0 %v]", s, w0, w2)
	}
	// Negative scores rank below the documents without the term.
	if top := ix.TopK("cat", 3); !slices.Equal(top, []int{1, 2, 0}) {
		t.Errorf("TopK(cat) = %v", top)
	}
}

func TestTopK(t *testing.T) {
	tests := []struct {
		scores []float64
		k      int
		want   []int
	}{
		{[]float64{1, 3, 2}, 2, []int{1, 2}},
		{[]float64{1, 3, 2}, 5, []int{1, 2, 0}},
		{[]float64{1, 3, 2}, 0, []int{}},
		{[]float64{1, 3, 2}, -1, []int{}},
		{[]float64{2, 1, 2, 2}, 3, []int{0, 2, 3}},
		{[]float64{0, 0, 0}, 2, []int{0, 1}},
		{nil, 3, []int{}},
	}
	for _, tc := range tests {
		if got := TopK(tc.scores, tc.k); !slices.Equal(got, tc.want) {
			t.Errorf("TopK(%v, %d) = %v, want %v", tc.scores, tc.k, got, tc.want)
		}
	}
}

func TestDegenerateCorpora(t *testing.T) {
	empty := New(nil)
	if empty.Len() != 0 || len(empty.Scores("x")) != 0 || len(empty.TopK("x", 3)) != 0 {
		t.Error("empty corpus")
	}
	blank := New([]string{"", "  ", "!!"})
	if s := blank.Scores("x"); !slices.Equal(s, []float64{0, 0, 0}) {
		t.Errorf("blank corpus scores %v", s)
	}
	// A document of length zero among others scores zero, not NaN.
	ix := New([]string{"", "a b", "b c"})
	for _, v := range ix.Scores("a b c") {
		if math.IsNaN(v) {
			t.Fatal("NaN score")
		}
	}
	if ix.Scores("a")[0] != 0 {
		t.Error("empty document scored")
	}
}

func TestNewTokenized(t *testing.T) {
	// LaMP's baseline splits on white space and keeps case.
	ix := NewTokenized([][]string{{"Apple", "pie"}, {"apple", "tart"}, {"plum"}}, DefaultParams)
	s := ix.ScoresTokens([]string{"Apple"})
	if s[0] <= 0 || s[1] != 0 || s[2] != 0 {
		t.Errorf("case-sensitive scores %v", s)
	}
	// Other parameters: with b = 0 document length does not matter.
	flat := NewTokenized([][]string{{"x"}, {"x", "y", "z", "w"}, {"q"}}, Params{K1: 1.2, B: 0, Epsilon: 0.25})
	fs := flat.ScoresTokens([]string{"x"})
	if !near(fs[0], fs[1]) || fs[0] <= 0 {
		t.Errorf("b=0 scores %v", fs)
	}
	// k1 = 0 makes term frequency irrelevant: score = idf.
	k0 := NewTokenized([][]string{{"x", "x", "x"}, {"y"}, {"z"}}, Params{K1: 0, B: 0.75, Epsilon: 0.25})
	if got := k0.ScoresTokens([]string{"x"})[0]; !near(got, k0.IDF("x")) {
		t.Errorf("k1=0 score %v, idf %v", got, k0.IDF("x"))
	}
}
