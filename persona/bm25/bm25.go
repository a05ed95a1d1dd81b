// Package bm25 ranks documents with Okapi BM25 exactly as BM25Okapi of the
// Python rank_bm25 package does, the retriever of the LaMP baselines.
//
// For a corpus of N documents with average length avgdl, the score of
// document d for a query is the sum over the query's tokens q (repeated
// tokens count again) of
//
//	idf(q) * f(q,d)*(k1+1) / (f(q,d) + k1*(1 - b + b*|d|/avgdl))
//
// with f(q,d) the count of q in d, k1 = 1.5 and b = 0.75. The idf of a term
// in n documents is log(N-n+0.5) - log(n+0.5); idfs below zero (terms in
// more than half the documents) are replaced by epsilon times the average
// idf of all terms (computed before the replacement), epsilon = 0.25. Note
// that this floor is itself negative when the average idf is, as rank_bm25
// does. Terms outside the corpus score zero.
package bm25

import (
	"cmp"
	"math"
	"slices"
	"strings"
	"unicode"
)

// Params are the BM25Okapi parameters.
type Params struct {
	K1      float64 // term-frequency saturation
	B       float64 // length normalisation
	Epsilon float64 // idf floor, as a fraction of the average idf
}

// DefaultParams are rank_bm25's defaults.
var DefaultParams = Params{K1: 1.5, B: 0.75, Epsilon: 0.25}

// Index is a BM25 index over a fixed corpus. It is safe for concurrent use
// once built.
type Index struct {
	p      Params
	tf     []map[string]int // per document: term -> count
	docLen []int
	avgdl  float64
	idf    map[string]float64
}

// Tokenize lower-cases s and splits it into maximal runs of letters, digits
// and combining marks (so that words written with combining accents or in
// scripts such as Devanagari stay whole); everything else separates tokens.
func Tokenize(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && !unicode.IsMark(r)
	})
}

// New indexes docs, tokenized with Tokenize, with DefaultParams.
func New(docs []string) *Index {
	toks := make([][]string, len(docs))
	for i, d := range docs {
		toks[i] = Tokenize(d)
	}
	return NewTokenized(toks, DefaultParams)
}

// NewTokenized indexes documents that are already tokenized, with the given
// parameters. (rank_bm25's own input; LaMP's baselines split on white space
// with strings.Fields-like str.split().)
func NewTokenized(docs [][]string, p Params) *Index {
	ix := &Index{
		p:      p,
		tf:     make([]map[string]int, len(docs)),
		docLen: make([]int, len(docs)),
		idf:    make(map[string]float64),
	}
	df := make(map[string]int)
	var order []string // terms in order of first appearance, as Python's dict
	total := 0
	for i, doc := range docs {
		counts := make(map[string]int, len(doc))
		for _, t := range doc {
			counts[t]++
		}
		ix.tf[i] = counts
		ix.docLen[i] = len(doc)
		total += len(doc)
		for _, t := range doc {
			if _, ok := df[t]; !ok {
				order = append(order, t)
				df[t] = 0
			}
		}
		for t := range counts {
			df[t]++
		}
	}
	if len(docs) == 0 || len(df) == 0 {
		return ix
	}
	ix.avgdl = float64(total) / float64(len(docs))
	n := float64(len(docs))
	sum := 0.0
	var negative []string
	for _, t := range order {
		v := math.Log(n-float64(df[t])+0.5) - math.Log(float64(df[t])+0.5)
		ix.idf[t] = v
		sum += v
		if v < 0 {
			negative = append(negative, t)
		}
	}
	eps := p.Epsilon * (sum / float64(len(ix.idf)))
	for _, t := range negative {
		ix.idf[t] = eps
	}
	return ix
}

// Len returns the number of documents.
func (ix *Index) Len() int { return len(ix.tf) }

// IDF returns the (floored) idf of term, 0 for terms outside the corpus.
func (ix *Index) IDF(term string) float64 { return ix.idf[term] }

// Scores returns the BM25 score of every document for query, tokenized with
// Tokenize.
func (ix *Index) Scores(query string) []float64 { return ix.ScoresTokens(Tokenize(query)) }

// ScoresTokens returns the BM25 score of every document for a tokenized
// query.
func (ix *Index) ScoresTokens(query []string) []float64 {
	scores := make([]float64, len(ix.tf))
	if ix.avgdl == 0 {
		return scores
	}
	k1, b := ix.p.K1, ix.p.B
	for _, q := range query {
		idf := ix.idf[q]
		if idf == 0 {
			continue // as rank_bm25: (idf or 0) * ... adds zero
		}
		for i, counts := range ix.tf {
			f := float64(counts[q])
			// Same operation order as rank_bm25's numpy expression.
			scores[i] += idf * (f * (k1 + 1) / (f + k1*(1-b+b*float64(ix.docLen[i])/ix.avgdl)))
		}
	}
	return scores
}

// TopK returns the indices of the k best documents for query, best first;
// ties keep the lower index first. k larger than the corpus returns every
// document; k <= 0 returns none.
func (ix *Index) TopK(query string, k int) []int { return TopK(ix.Scores(query), k) }

// TopK returns the indices of the k largest scores, largest first, ties in
// index order.
func TopK(scores []float64, k int) []int {
	if k <= 0 {
		return []int{}
	}
	idx := make([]int, len(scores))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(scores[b], scores[a]) })
	if k < len(idx) {
		idx = idx[:k]
	}
	return idx
}
