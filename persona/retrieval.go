package persona

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/pplug/pplug/persona/bm25"
	"github.com/pplug/pplug/persona/profile"
)

// Retrieval personalises without a plug-in: the top-k history items for
// the current input, ranked by BM25, go into the prompt (the paper's
// retrieval baseline, and the way to use a profile before a plug-in is
// trained). The same ranking serves the RAG baselines of bench and eval.
type Retrieval struct {
	items []profile.Item
	index *bm25.Index
}

// DefaultTopK is the number of retrieved items, as the paper's baselines.
const DefaultTopK = 4

// NewRetrieval indexes a profile's item texts.
func NewRetrieval(items []profile.Item) *Retrieval {
	texts := make([]string, len(items))
	for i, it := range items {
		texts[i] = it.Text
	}
	return &Retrieval{items: items, index: bm25.New(texts)}
}

// Top returns the indexes of the k items that score highest for query
// (ties: the earlier item first).
func (r *Retrieval) Top(query string, k int) []int {
	return bm25.TopK(r.index.Scores(query), k)
}

// Scores are the BM25 scores of every item for query.
func (r *Retrieval) Scores(query string) []float64 { return r.index.Scores(query) }

// TopOrRecent chooses the k items that retrieval puts into the prompt,
// given their BM25 scores for the input: the items that share a word with
// it (score > 0), best first, then, when fewer than k do, the most recent
// of the others (in Recent's order), so that an input sharing no word
// with the history gets the user's latest items, not the first ones of
// the file. matched is how many of the chosen share a word.
func TopOrRecent(items []profile.Item, scores []float64, k int) (chosen []int, matched int) {
	for _, i := range bm25.TopK(scores, k) {
		if scores[i] > 0 {
			chosen = append(chosen, i)
		}
	}
	matched = len(chosen)
	if matched == k || matched == len(items) {
		return chosen, matched
	}
	for _, i := range Recent(items, len(items)) {
		if scores[i] <= 0 {
			chosen = append(chosen, i)
			if len(chosen) == k {
				break
			}
		}
	}
	return chosen, matched
}

// Recent returns the indexes of the k most recent items: by date when every
// item has one, else the last k in profile order.
func Recent(items []profile.Item, k int) []int {
	idx := make([]int, len(items))
	for i := range idx {
		idx[i] = i
	}
	dated := len(items) > 0
	for _, it := range items {
		if !it.HasDate() {
			dated = false
			break
		}
	}
	if dated {
		// Stable insertion by date, newest first.
		for i := 1; i < len(idx); i++ {
			for j := i; j > 0 && items[idx[j]].Date.After(items[idx[j-1]].Date); j-- {
				idx[j], idx[j-1] = idx[j-1], idx[j]
			}
		}
		return idx[:min(k, len(idx))]
	}
	out := make([]int, 0, k)
	for i := len(items) - 1; i >= 0 && len(out) < k; i-- {
		out = append(out, i)
	}
	return out
}

// MaxItemChars bounds each retrieved item in the prompt, so that k items
// cannot crowd out the input.
const MaxItemChars = 600

// RetrievalPrompt puts the chosen items before the prompt:
//
//	Past texts by this user:
//	- <item>
//	- <item>
//
//	<prompt>
func RetrievalPrompt(items []profile.Item, chosen []int, prompt string) string {
	return RetrievalContext(items, chosen) + prompt
}

// RetrievalContext is the part of RetrievalPrompt before the prompt (""
// when nothing is chosen): the context that pplug+bm25 puts before its rows
// (Request.Context).
func RetrievalContext(items []profile.Item, chosen []int) string {
	if len(chosen) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("Past texts by this user:\n")
	for _, i := range chosen {
		t := strings.Join(strings.Fields(items[i].Text), " ")
		if len(t) > MaxItemChars {
			cut := MaxItemChars
			for cut > 0 && !utf8.RuneStart(t[cut]) {
				cut--
			}
			t = t[:cut] + "..."
		}
		fmt.Fprintf(&b, "- %s\n", t)
	}
	b.WriteString("\n")
	return b.String()
}
