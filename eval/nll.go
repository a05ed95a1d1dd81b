package eval

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/pplug/pplug/lamp"
	"github.com/pplug/pplug/llama"
	"github.com/pplug/pplug/persona"
	"github.com/pplug/pplug/persona/profile"
)

// NLLOptions configure PersonaNLL.
type NLLOptions struct {
	// Profile are the options of profile.FromQuestion; its Task is set to
	// the task.
	Profile profile.Options
	// ProfileSource names the questions file in embedding cache keys (see
	// Predictor.ProfileSource).
	ProfileSource string
	// Progress is called after each question.
	Progress func(done, total int)
}

// NLLReport is the outcome of PersonaNLL. Means are per target token, in
// nats, weighted by tokens over all scored questions.
type NLLReport struct {
	Task lamp.Task
	// Questions scored, and their target tokens (the gold outputs' tokens
	// and EOS).
	Questions int
	Tokens    int
	// Own: with the user's own persona rows; None: with no rows; Other:
	// with another user's persona (HasOther false when every question has
	// the same user, and Other and the fractions about it are then 0).
	Own, None, Other float64
	HasOther         bool
	// Fractions of questions where the own persona gives a lower NLL than
	// no persona, than the other user's, and than both.
	OwnBeatsNone, OwnBeatsOther, OwnBeatsBoth float64
	// Skipped counts questions whose profile has no usable item.
	Skipped int
	// Truncated counts prompts cut to fit the context window.
	Truncated int
}

// MarshalJSON writes the report with snake_case keys, leaving out the
// "other" figures when there is no other user.
func (r NLLReport) MarshalJSON() ([]byte, error) {
	type report struct {
		Task          string   `json:"task"`
		Questions     int      `json:"questions"`
		Tokens        int      `json:"tokens"`
		Own           float64  `json:"own"`
		None          float64  `json:"none"`
		Other         *float64 `json:"other,omitempty"`
		OwnBeatsNone  float64  `json:"own_beats_none"`
		OwnBeatsOther *float64 `json:"own_beats_other,omitempty"`
		OwnBeatsBoth  *float64 `json:"own_beats_both,omitempty"`
		Skipped       int      `json:"skipped"`
		Truncated     int      `json:"truncated_prompts"`
	}
	out := report{
		Task: r.Task.Name(), Questions: r.Questions, Tokens: r.Tokens, Own: r.Own, None: r.None,
		OwnBeatsNone: r.OwnBeatsNone, Skipped: r.Skipped, Truncated: r.Truncated,
	}
	if r.HasOther {
		out.Other, out.OwnBeatsOther, out.OwnBeatsBoth = &r.Other, &r.OwnBeatsOther, &r.OwnBeatsBoth
	}
	return json.Marshal(out)
}

// PersonaNLL is the personalisation check: for every question, the mean
// negative log-likelihood of its gold output (persona.ExampleTokens and
// persona.TargetNLL, decoded in c, which is cleared for each) under three
// conditions: the user's own persona rows, no persona, and the persona of
// another user, for the same input. The other user is the profile of the
// next question in order (cyclically) whose history differs from this
// one's, so questions of one user are never each other's "other"; when all
// questions share one history there is no other condition.
//
// The query part of the input (task.QueryPart) is encoded once per
// question and aggregated over both histories. Prompts too long for c's
// window lose their oldest tokens (persona.FitPrompt; BOS is kept), the same cut
// for the three conditions. Every question needs a gold in golds
// (by question id). Questions whose profile has no usable item are skipped.
func PersonaNLL(ctx context.Context, pz *persona.Personalizer, c *llama.Context, task lamp.Task, questions []lamp.Question, golds map[string]string, opts NLLOptions) (NLLReport, error) {
	rep := NLLReport{Task: task}
	if !task.Valid() {
		return rep, errors.New("eval: PersonaNLL: invalid task")
	}
	if pz == nil {
		return rep, errors.New("eval: PersonaNLL needs a Personalizer with a plug")
	}
	pz = pz.WithMethod(persona.MethodPPlug)
	pz.Query = task.QueryPart
	if err := pz.Check(); err != nil {
		return rep, fmt.Errorf("eval: PersonaNLL: %w", err)
	}
	if len(questions) == 0 {
		return rep, errors.New("eval: PersonaNLL: no questions")
	}
	m := pz.LLM
	var missing []string
	for _, q := range questions {
		if _, ok := golds[q.ID]; !ok {
			missing = append(missing, fmt.Sprintf("%q", q.ID))
		}
	}
	if len(missing) > 0 {
		if len(missing) > 10 {
			missing = append(missing[:10], "...")
		}
		return rep, fmt.Errorf("eval: %d questions have no gold output: %v", len(missing), missing)
	}

	// Profiles first: they decide who is whose "other".
	popts := opts.Profile
	popts.Task, popts.QuestionID = task, ""
	profs := make([]*profile.Profile, len(questions))
	hashes := make([][32]byte, len(questions))
	for i, q := range questions {
		p, err := profile.FromQuestion(q, popts)
		if errors.Is(err, profile.ErrEmpty) || errors.Is(err, profile.ErrNoUsableItems) {
			continue
		}
		if err != nil {
			return rep, err
		}
		profs[i] = p
		hashes[i] = historyHash(p)
	}
	other := func(i int) int {
		for d := 1; d < len(questions); d++ {
			j := (i + d) % len(questions)
			if profs[j] != nil && hashes[j] != hashes[i] {
				return j
			}
		}
		return -1
	}

	// Prepared users, by history, a few at a time: question i needs its own
	// and usually the next question's, which is the next one's own.
	type entry struct {
		h    [32]byte
		user *persona.Persona
	}
	var users []entry
	defer func() {
		for _, e := range users {
			e.user.Close()
		}
	}()
	userFor := func(i int) (*persona.Persona, error) {
		for _, e := range users {
			if e.h == hashes[i] {
				return e.user, nil
			}
		}
		u, _, err := pz.Prepare(ctx, profs[i].Items, persona.ProfileKey(opts.ProfileSource, questions[i].ID), nil)
		if err != nil {
			return nil, fmt.Errorf("question %q: prepare the persona: %w", questions[i].ID, err)
		}
		if len(users) == 3 {
			users[0].user.Close()
			users = users[1:]
		}
		users = append(users, entry{hashes[i], u})
		return u, nil
	}

	var sumOwn, sumNone, sumOther float64
	var beatNone, beatOther, beatBoth, withOther int
	nRows := pz.NRows()
	for i, q := range questions {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		if profs[i] == nil {
			rep.Skipped++
			if opts.Progress != nil {
				opts.Progress(i+1, len(questions))
			}
			continue
		}
		prompt, target, err := persona.ExampleTokens(m, q.Input, golds[q.ID])
		if err != nil {
			return rep, fmt.Errorf("question %q: %w", q.ID, err)
		}
		// TargetNLL decodes rows, prompt and all target tokens but the last.
		budget := c.NCtxSeq() - nRows - (len(target) - 1)
		if budget < 1 {
			return rep, fmt.Errorf("question %q: %w: the gold output has %d tokens, the window %d", q.ID, llama.ErrContextFull, len(target), c.NCtxSeq())
		}
		var cut bool
		if prompt, cut = persona.FitPrompt(m, prompt, budget); cut {
			rep.Truncated++
		}
		qv, err := pz.EncodeQuery(ctx, q.Input)
		if err != nil {
			return rep, fmt.Errorf("question %q: %w", q.ID, err)
		}
		nll := func(i int) (float64, error) {
			var rows []float32
			var bias map[llama.Token]float32
			if i >= 0 {
				bias = persona.Request{EOSBias: pz.Plug.EOSBias}.LogitBias(m)
				u, err := userFor(i)
				if err != nil {
					return 0, err
				}
				if rows, _, err = u.RowsFor(qv); err != nil {
					return 0, err
				}
			}
			s, _, err := persona.TargetNLLBiased(ctx, c, rows, prompt, target, bias)
			if err != nil {
				return 0, fmt.Errorf("question %q: %w", q.ID, err)
			}
			if math.IsNaN(s) || math.IsInf(s, 0) {
				return 0, fmt.Errorf("question %q: the negative log-likelihood is not finite", q.ID)
			}
			return s, nil
		}
		own, err := nll(i)
		if err != nil {
			return rep, err
		}
		none, err := nll(-1)
		if err != nil {
			return rep, err
		}
		sumOwn += own
		sumNone += none
		if own < none {
			beatNone++
		}
		if j := other(i); j >= 0 {
			oth, err := nll(j)
			if err != nil {
				return rep, err
			}
			sumOther += oth
			withOther++
			if own < oth {
				beatOther++
				if own < none {
					beatBoth++
				}
			}
		}
		rep.Questions++
		rep.Tokens += len(target)
		if opts.Progress != nil {
			opts.Progress(i+1, len(questions))
		}
	}
	if rep.Questions == 0 {
		return rep, errors.New("eval: PersonaNLL: no question has a usable profile")
	}
	n := float64(rep.Tokens)
	rep.Own, rep.None = sumOwn/n, sumNone/n
	rep.OwnBeatsNone = float64(beatNone) / float64(rep.Questions)
	// Either every scored question has another user or none has.
	if withOther > 0 {
		rep.HasOther = true
		rep.Other = sumOther / n
		rep.OwnBeatsOther = float64(beatOther) / float64(withOther)
		rep.OwnBeatsBoth = float64(beatBoth) / float64(withOther)
	}
	return rep, nil
}

// historyHash identifies a history by its item texts.
func historyHash(p *profile.Profile) [32]byte {
	h := sha256.New()
	for _, t := range p.Texts() {
		fmt.Fprintf(h, "%d:%s\n", len(t), t)
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}
