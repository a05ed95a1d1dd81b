package persona

import (
	"slices"
	"testing"
	"time"

	"github.com/pplug/pplug/persona/profile"
)

// TestTopOrRecent: retrieval puts the items that share a word with the
// input first (best first); when fewer than k do, the most recent of the
// others fill the rest, and an input sharing no word gets the most recent
// items, never zero-score items in file order presented as matches.
func TestTopOrRecent(t *testing.T) {
	day := func(d int) time.Time { return time.Date(2024, 1, d, 0, 0, 0, 0, time.UTC) }
	items := []profile.Item{
		{Text: "Tom built a spaceship", Date: day(1)},
		{Text: "the robot beeped", Date: day(5)},
		{Text: "Tom flew to the moon", Date: day(2)},
		{Text: "a shiny rock", Date: day(4)},
		{Text: "stars at night", Date: day(3)},
	}
	r := NewRetrieval(items)
	for _, tc := range []struct {
		query   string
		k       int
		want    []int
		matched int
	}{
		{"zzz qqq", 3, []int{1, 3, 4}, 0},          // no overlap: the 3 most recent
		{"spaceship", 3, []int{0, 1, 3}, 1},        // one match, then the most recent others
		{"Tom moon", 2, []int{2, 0}, 2},            // enough matches
		{"Tom", 5, []int{0, 2, 1, 3, 4}, 2},        // every item, matches first
		{"zzz", 9, []int{1, 3, 4, 2, 0}, 0},        // k beyond the history
		{"zzz", 0, nil, 0},                         // nothing asked
		{"rock robot stars", 3, []int{1, 3, 4}, 3}, // only matches
	} {
		scores := r.Scores(tc.query)
		got, matched := TopOrRecent(items, scores, tc.k)
		if !slices.Equal(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) || matched != tc.matched {
			t.Errorf("%q k=%d: %v (%d matched), want %v (%d)", tc.query, tc.k, got, matched, tc.want, tc.matched)
		}
		for j, i := range got {
			if (j < matched) != (scores[i] > 0) {
				t.Errorf("%q k=%d: item %d (score %v) at %d, %d matched", tc.query, tc.k, i, scores[i], j, matched)
			}
		}
	}
}
