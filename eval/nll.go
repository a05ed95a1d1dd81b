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
	pz, err := checkNLL(pz, task, questions, golds)
	if err != nil {
		return rep, err
	}
	r := &nllRun{ctx: ctx, pz: pz, c: c, questions: questions, golds: golds}
	defer r.close()
	if err := r.profiles(opts.Profile, task); err != nil {
		return rep, err
	}
	var sum nllSums
	for i := range questions {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		if r.profs[i] == nil {
			rep.Skipped++
		} else if err := r.question(i, &rep, &sum); err != nil {
			return rep, err
		}
		if opts.Progress != nil {
			opts.Progress(i+1, len(questions))
		}
	}
	if rep.Questions == 0 {
		return rep, errors.New("eval: PersonaNLL: no question has a usable profile")
	}
	n := float64(rep.Tokens)
	rep.Own, rep.None = sum.own/n, sum.none/n
	rep.OwnBeatsNone = float64(sum.beatNone) / float64(rep.Questions)
	// Either every scored question has another user or none has.
	if sum.withOther > 0 {
		rep.HasOther = true
		rep.Other = sum.other / n
		rep.OwnBeatsOther = float64(sum.beatOther) / float64(sum.withOther)
		rep.OwnBeatsBoth = float64(sum.beatBoth) / float64(sum.withOther)
	}
	return rep, nil
}

// checkNLL checks PersonaNLL's arguments and returns its Personalizer.
func checkNLL(pz *persona.Personalizer, task lamp.Task, questions []lamp.Question, golds map[string]string) (*persona.Personalizer, error) {
	if !task.Valid() {
		return nil, errors.New("eval: PersonaNLL: invalid task")
	}
	if pz == nil {
		return nil, errors.New("eval: PersonaNLL needs a Personalizer with a plug")
	}
	pz = pz.WithMethod(persona.MethodPPlug)
	pz.Query = task.QueryPart
	if err := pz.Check(); err != nil {
		return nil, fmt.Errorf("eval: PersonaNLL: %w", err)
	}
	if len(questions) == 0 {
		return nil, errors.New("eval: PersonaNLL: no questions")
	}
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
		return nil, fmt.Errorf("eval: %d questions have no gold output: %v", len(missing), missing)
	}
	return pz, nil
}

// nllRun is one call of PersonaNLL.
type nllRun struct {
	ctx       context.Context
	pz        *persona.Personalizer
	c         *llama.Context
	questions []lamp.Question
	golds     map[string]string
	profs     []*profile.Profile // nil: no usable item
	hashes    [][32]byte
	users     []nllUser // prepared users, a few at a time
}

type nllUser struct {
	h    [32]byte
	user *persona.Persona
}

// nllSums are PersonaNLL's running totals.
type nllSums struct {
	own, none, other                         float64
	beatNone, beatOther, beatBoth, withOther int
}

func (r *nllRun) close() {
	for _, e := range r.users {
		e.user.Close()
	}
}

// profiles reads every question's profile first: they decide who is
// whose "other".
func (r *nllRun) profiles(popts profile.Options, task lamp.Task) error {
	popts.Task, popts.QuestionID = task, ""
	r.profs = make([]*profile.Profile, len(r.questions))
	r.hashes = make([][32]byte, len(r.questions))
	for i, q := range r.questions {
		p, err := profile.FromQuestion(q, popts)
		if errors.Is(err, profile.ErrEmpty) || errors.Is(err, profile.ErrNoUsableItems) {
			continue
		}
		if err != nil {
			return err
		}
		r.profs[i] = p
		r.hashes[i] = historyHash(p)
	}
	return nil
}

// other is the next question (cyclically) whose history differs from
// question i's, -1 when there is none.
func (r *nllRun) other(i int) int {
	for d := 1; d < len(r.questions); d++ {
		j := (i + d) % len(r.questions)
		if r.profs[j] != nil && r.hashes[j] != r.hashes[i] {
			return j
		}
	}
	return -1
}

// user is question i's prepared persona. A few are kept by history:
// question i needs its own and usually the next question's, which is the
// next one's own.
func (r *nllRun) user(i int) (*persona.Persona, error) {
	for _, e := range r.users {
		if e.h == r.hashes[i] {
			return e.user, nil
		}
	}
	u, _, err := r.pz.Prepare(r.ctx, r.profs[i].Items, nil)
	if err != nil {
		return nil, fmt.Errorf("question %q: prepare the persona: %w", r.questions[i].ID, err)
	}
	if len(r.users) == 3 {
		r.users[0].user.Close()
		r.users = r.users[1:]
	}
	r.users = append(r.users, nllUser{r.hashes[i], u})
	return u, nil
}

// question scores question i under its own persona, none and another
// user's.
func (r *nllRun) question(i int, rep *NLLReport, sum *nllSums) error {
	q, c := r.questions[i], r.c
	own, err := r.turn(i, q)
	if err != nil {
		return err
	}
	target, err := r.target(q)
	if err != nil {
		return err
	}
	if own.Truncated {
		rep.Truncated++
	}
	// nll is the target's NLL with user j's persona (none for j < 0), with
	// the plug's EOS bias wherever its rows are: the own turn with the
	// other rows in place of its own, the same tokens and cut.
	nll := func(j int) (float64, error) {
		t := own.WithRows(nil, 0)
		if j == i {
			t = own
		} else if j >= 0 {
			u, err := r.user(j)
			if err != nil {
				return 0, err
			}
			rows, _, err := u.RowsFor(own.Query)
			if err != nil {
				return 0, err
			}
			t = own.WithRows(rows, own.EOSBias)
		}
		s, _, err := t.TargetNLL(r.ctx, c, target)
		if err != nil {
			return 0, fmt.Errorf("question %q: %w", q.ID, err)
		}
		if math.IsNaN(s) || math.IsInf(s, 0) {
			return 0, fmt.Errorf("question %q: the negative log-likelihood is not finite", q.ID)
		}
		return s, nil
	}
	ownNLL, err := nll(i)
	if err != nil {
		return err
	}
	none, err := nll(-1)
	if err != nil {
		return err
	}
	sum.own += ownNLL
	sum.none += none
	if ownNLL < none {
		sum.beatNone++
	}
	if j := r.other(i); j >= 0 {
		oth, err := nll(j)
		if err != nil {
			return err
		}
		sum.other += oth
		sum.withOther++
		if ownNLL < oth {
			sum.beatOther++
			if ownNLL < none {
				sum.beatBoth++
			}
		}
	}
	rep.Questions++
	rep.Tokens += len(target)
	return nil
}

// target is the gold output's tokens of q, with EOS (persona.ExampleTokens).
func (r *nllRun) target(q lamp.Question) ([]llama.Token, error) {
	_, target, err := persona.ExampleTokens(r.pz.LLM, "", r.golds[q.ID])
	if err != nil {
		return nil, fmt.Errorf("question %q: %w", q.ID, err)
	}
	return target, nil
}

// turn is question i's turn with its user's own persona
// (persona.Builder), the prompt cut so that the rows, the prompt and all
// target tokens but the last fit the window (TargetNLL decodes those).
func (r *nllRun) turn(i int, q lamp.Question) (*persona.Turn, error) {
	target, err := r.target(q)
	if err != nil {
		return nil, err
	}
	n := r.c.NCtxSeq()
	if n-r.pz.NRows()-(len(target)-1) < 1 {
		return nil, fmt.Errorf("question %q: %w: the gold output has %d tokens, the window %d", q.ID, llama.ErrContextFull, len(target), n)
	}
	u, err := r.user(i)
	if err != nil {
		return nil, err
	}
	b := persona.Builder{LLM: r.pz.LLM, Window: n, Reserve: len(target) - 1, Cut: true}
	t, err := b.Build(r.ctx, u, persona.Conversation{Prompt: q.Input})
	if err != nil {
		return nil, fmt.Errorf("question %q: %w", q.ID, err)
	}
	return t, nil
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
