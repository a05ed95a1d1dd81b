package train

import (
	"context"
	"math"
	"path/filepath"
	"testing"

	"github.com/pplug/pplug/eval/synthusers"
	"github.com/pplug/pplug/internal/testenv"
	"github.com/pplug/pplug/kernels"
	"github.com/pplug/pplug/lamp"
	"github.com/pplug/pplug/persona"
	"github.com/pplug/pplug/persona/profile"
)

// splitTexts is what a split asks the encoder for: every question's
// history texts and query text, in all and distinct.
func splitTexts(t *testing.T, qpath string, plug *persona.Plug) (all, distinct int, qs []lamp.Question, profs []*profile.Profile) {
	t.Helper()
	qs, err := lamp.ReadQuestions(qpath)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	add := func(s string) {
		all++
		seen[s] = true
	}
	for _, q := range qs {
		p, err := profile.FromQuestion(q, profile.Options{Task: synthusers.Task, MaxItems: profile.DefaultMaxItems})
		if err != nil {
			t.Fatal(err)
		}
		profs = append(profs, p)
		for _, s := range p.Texts() {
			add(s)
		}
		add(plug.QueryPrefix + synthusers.Task.QueryPart(q.Input))
	}
	return all, len(seen), qs, profs
}

// TestLoadExamplesEncodesEachTextOnce: the users of a split share their
// history across their questions (and some items with one another); the
// encoder sees each distinct text once, a second load none, and the
// persona rows of every example are those of its question's history
// encoded on its own (as before the cache was shared), up to the float
// rounding of another batch packing.
func TestLoadExamplesEncodesEachTextOnce(t *testing.T) {
	m := loadModel(t, testenv.Stories260K(t))
	dir, _, enc := synthUsersFor(t, m, synthusers.Options{Users: 12, Items: 8, QuestionsPerUser: 4, Seed: 3})
	plug, err := persona.NewPlugFor(m, enc, persona.PlugOptions{Seed: 1, DefaultPrefix: true})
	if err != nil {
		t.Fatal(err)
	}
	qpath, opath := filepath.Join(dir, "train_questions.json"), filepath.Join(dir, "train_outputs.json")
	all, distinct, qs, profs := splitTexts(t, qpath, plug)
	cache := &persona.Cache{Dir: filepath.Join(dir, "cache")}
	load := func() ([]Example, int64) {
		n0 := enc.Texts()
		ex, err := LoadExamples(context.Background(), m, enc, cache, plug, qpath, opath, DataOptions{Task: synthusers.Task})
		if err != nil {
			t.Fatal(err)
		}
		return ex, enc.Texts() - n0
	}
	ex, n := load()
	t.Logf("%d questions ask for %d texts, %d distinct: %d encoded", len(profs), all, distinct, n)
	if n != int64(distinct) || distinct >= all {
		t.Fatalf("encoded %d texts; the split has %d distinct of %d", n, distinct, all)
	}
	if _, n := load(); n != 0 {
		t.Fatalf("a second load encoded %d texts", n)
	}
	if d := maxRowDiff(t, enc, plug, ex, qs, profs); d > 1e-5 {
		t.Fatalf("persona rows differ from each history encoded on its own by %g", d)
	}
}

// maxRowDiff is the largest difference between the persona rows of the
// examples and those of each question's history and query encoded on
// their own, without the cache.
func maxRowDiff(t *testing.T, enc *persona.Encoder, plug *persona.Plug, ex []Example, qs []lamp.Question, profs []*profile.Profile) float64 {
	t.Helper()
	ctx := context.Background()
	b, _ := kernels.Open("cpu", kernels.Options{Threads: 1})
	defer b.Close()
	rows := func(items []profile.Item, keys [][]float32, q []float32) []float32 {
		u, err := plug.NewHistory(b, items, keys)
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		r, _, err := u.Rows(q)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	d := 0.0
	for i, e := range ex {
		if e.ID != qs[i].ID {
			t.Fatalf("example %d is question %q, want %q", i, e.ID, qs[i].ID)
		}
		keys, err := enc.Encode(ctx, profs[i].Texts(), "", nil)
		if err != nil {
			t.Fatal(err)
		}
		q, err := enc.EncodeOne(ctx, synthusers.Task.QueryPart(qs[i].Input), plug.QueryPrefix)
		if err != nil {
			t.Fatal(err)
		}
		got, want := rows(profs[i].Items, e.Keys, e.Query), rows(profs[i].Items, keys, q)
		for j := range got {
			d = math.Max(d, math.Abs(float64(got[j]-want[j])))
		}
	}
	t.Logf("persona rows: largest difference %g", d)
	return d
}
