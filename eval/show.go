package eval

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/pplug/pplug/lamp"
	"github.com/pplug/pplug/persona/profile"
)

// FirstPerUser picks the first question of each of the first n users of
// qs, in order: questions whose histories hold the same items (popts, as
// the methods read them) belong to one user. Questions without a usable
// history are left out.
func FirstPerUser(qs []lamp.Question, n int, task lamp.Task, popts profile.Options) ([]lamp.Question, error) {
	popts.Task, popts.QuestionID = task, ""
	seen := map[[32]byte]bool{}
	var out []lamp.Question
	for _, q := range qs {
		if len(out) == n {
			break
		}
		p, err := profile.FromQuestion(q, popts)
		if errors.Is(err, profile.ErrEmpty) || errors.Is(err, profile.ErrNoUsableItems) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("question %q: %w", q.ID, err)
		}
		if h := historyHash(p); !seen[h] {
			seen[h] = true
			out = append(out, q)
		}
	}
	return out, nil
}

// Show answers each question with each method and writes the answers side
// by side, one line each, with the gold answer under them when golds has
// it: what the methods do, question by question, for a reader.
func Show(ctx context.Context, w io.Writer, p *Predictor, qs []lamp.Question, methods []Method, golds map[string]string) error {
	width := len("gold")
	for _, m := range methods {
		width = max(width, len(m))
	}
	for i, q := range qs {
		fmt.Fprintf(w, "== question %s (%d of %d), input: %s\n", q.ID, i+1, len(qs), oneLine(q.Input))
		for _, m := range methods {
			pred, err := p.Predict(ctx, m, q)
			if err != nil {
				return fmt.Errorf("question %q, method %s: %w", q.ID, m, err)
			}
			fmt.Fprintf(w, "  %-*s  %s\n", width, m, oneLine(pred.Output))
		}
		if g, ok := golds[q.ID]; ok {
			fmt.Fprintf(w, "  %-*s  %s\n", width, "gold", oneLine(g))
		}
	}
	return nil
}

// oneLine is s with its runs of white space (line breaks included) made
// one space.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
