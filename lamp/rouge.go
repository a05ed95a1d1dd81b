package lamp

import "unicode"

// RougeTokens tokenizes text as Google's rouge_score DefaultTokenizer does
// without stemming: lower-case (Python's str.lower), replace every character
// outside [a-z0-9] with a space, split on white space. Non-ASCII letters
// therefore vanish ("café" -> "caf"), except the two whose lower case is
// ASCII: U+212A KELVIN SIGN -> "k" and U+0130 (capital I with dot above)
// -> "i" followed by a combining dot that ends the token ("İstanbul" ->
// "i", "stanbul").
func RougeTokens(text string) []string {
	var tokens []string
	var cur []byte
	flush := func() {
		if len(cur) > 0 {
			tokens = append(tokens, string(cur))
			cur = cur[:0]
		}
	}
	for _, r := range text {
		if r == '\u0130' {
			// Python lower-cases it to "i" + U+0307 COMBINING DOT ABOVE,
			// and the combining dot then separates tokens.
			cur = append(cur, 'i')
			flush()
			continue
		}
		r = unicode.ToLower(r)
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			cur = append(cur, byte(r))
		} else {
			flush()
		}
	}
	flush()
	return tokens
}

// RougeScore is the precision, recall and F-measure of one comparison.
type RougeScore struct {
	Precision, Recall, F float64
}

func fmeasure(p, r float64) float64 {
	if p+r > 0 {
		return 2 * p * r / (p + r)
	}
	return 0
}

// Rouge1Score returns ROUGE-1 of prediction against target as rouge_score
// computes it: the clipped unigram overlap (each token counts at most as
// often as it occurs in both) divided by the prediction's token count
// (precision) and the target's (recall), each count floored at one.
func Rouge1Score(target, prediction string) RougeScore {
	return rouge1Tokens(RougeTokens(target), RougeTokens(prediction))
}

func rouge1Tokens(target, pred []string) RougeScore {
	counts := make(map[string]int, len(target))
	for _, t := range target {
		counts[t]++
	}
	overlap := 0
	for _, p := range pred {
		if counts[p] > 0 {
			counts[p]--
			overlap++
		}
	}
	p := float64(overlap) / float64(max(len(pred), 1))
	r := float64(overlap) / float64(max(len(target), 1))
	return RougeScore{Precision: p, Recall: r, F: fmeasure(p, r)}
}

// RougeLScore returns ROUGE-L of prediction against target as rouge_score
// computes it: LCS length over the prediction's token count (precision) and
// the target's (recall); all zero when either side has no tokens.
func RougeLScore(target, prediction string) RougeScore {
	return rougeLTokens(RougeTokens(target), RougeTokens(prediction))
}

func rougeLTokens(target, pred []string) RougeScore {
	if len(target) == 0 || len(pred) == 0 {
		return RougeScore{}
	}
	l := lcsLen(target, pred)
	p := float64(l) / float64(len(pred))
	r := float64(l) / float64(len(target))
	return RougeScore{Precision: p, Recall: r, F: fmeasure(p, r)}
}

// lcsLen returns the length of the longest common subsequence of a and b.
func lcsLen(a, b []string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			if a[i-1] == b[j-1] {
				cur[j] = prev[j-1] + 1
			} else {
				cur[j] = max(prev[j], cur[j-1])
			}
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
