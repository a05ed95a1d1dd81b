package synthusers

import (
	"context"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pplug/pplug/internal/testenv"
	"github.com/pplug/pplug/lamp"
	"github.com/pplug/pplug/llama"
	"github.com/pplug/pplug/persona"
	"github.com/pplug/pplug/persona/profile"
)

func TestGenerateShapeAndSplits(t *testing.T) {
	ds, err := Generate(Options{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(ds.Train.Users); n != 30 || len(ds.Dev.Users) != 5 || len(ds.Test.Users) != 5 {
		t.Fatalf("users: %d train, %d dev, %d test", n, len(ds.Dev.Users), len(ds.Test.Users))
	}
	splitOfUser := map[string]string{}
	traits := map[User]bool{}
	for _, sp := range ds.Splits() {
		if len(sp.Questions) != 4*len(sp.Users) || len(sp.Outputs.Golds) != len(sp.Questions) || sp.Outputs.Task != "LaMP_7" {
			t.Fatalf("%s: %d questions, %d golds for %d users", sp.Name, len(sp.Questions), len(sp.Outputs.Golds), len(sp.Users))
		}
		for _, u := range sp.Users {
			key := u
			key.Index, key.Split = 0, ""
			if traits[key] {
				t.Errorf("two users share the trait %+v", key)
			}
			traits[key] = true
		}
		for i, q := range sp.Questions {
			u := mustUser(t, ds, q.ID)
			if u.Split != sp.Name {
				t.Fatalf("question %s of a %s user is in %s", q.ID, u.Split, sp.Name)
			}
			if prev, ok := splitOfUser[u.Name+u.Animal+u.Object+u.Place]; ok && prev != sp.Name {
				t.Fatalf("user %+v in two splits", u)
			}
			splitOfUser[u.Name+u.Animal+u.Object+u.Place] = sp.Name
			// The input never names the trait; the gold and every history
			// item show it.
			for _, w := range []string{u.Name, u.Animal, u.Object, u.Place} {
				if strings.Contains(q.Input, w) {
					t.Errorf("input %q names %q", q.Input, w)
				}
			}
			gold := sp.Outputs.Golds[i]
			if gold.ID != q.ID || !strings.Contains(gold.Output, u.Name) || !strings.Contains(gold.Output, u.Animal) ||
				!strings.Contains(gold.Output, u.Object) || !strings.Contains(gold.Output, u.Place) {
				t.Errorf("gold %q of %+v", gold.Output, u)
			}
			if words := len(strings.Fields(gold.Output)); words < 10 || words > 25 {
				t.Errorf("gold %q has %d words", gold.Output, words)
			}
			if len(q.Profile) != 12 {
				t.Fatalf("profile of %d items", len(q.Profile))
			}
			for _, it := range q.Profile {
				if !strings.Contains(it.Fields["text"], u.Name) {
					t.Errorf("item %q lacks the name %s", it.Fields["text"], u.Name)
				}
			}
		}
	}
	// Deterministic for a seed, different for another.
	again, _ := Generate(Options{Seed: 1})
	if !reflect.DeepEqual(again, ds) {
		t.Fatal("same seed, different data")
	}
	other, _ := Generate(Options{Seed: 2})
	if reflect.DeepEqual(other.Train.Users, ds.Train.Users) {
		t.Fatal("another seed gives the same users")
	}
	for _, bad := range []Options{{Users: 2}, {Users: 3, Split: 0.9}, {Split: 1}, {Split: -0.5}, {Items: -1}, {QuestionsPerUser: 7}} {
		if _, err := Generate(bad); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}

func mustUser(t *testing.T, ds Dataset, id string) User {
	t.Helper()
	for _, sp := range ds.Splits() {
		for _, u := range sp.Users {
			for j := range ds.Options.QuestionsPerUser {
				if QuestionID(u.Index, j) == id {
					return u
				}
			}
		}
	}
	t.Fatalf("no user for question %s", id)
	return User{}
}

func TestWriteReadsBackAsLaMP(t *testing.T) {
	ds, err := Generate(Options{Users: 6, Items: 3, QuestionsPerUser: 2, Seed: 3, Split: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := Write(dir, ds); err != nil {
		t.Fatal(err)
	}
	for _, sp := range ds.Splits() {
		qs, err := lamp.ReadQuestions(filepath.Join(dir, sp.Name+"_questions.json"))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(qs, sp.Questions) {
			t.Fatalf("%s questions differ after a round trip", sp.Name)
		}
		for _, q := range qs {
			p, err := profile.FromQuestion(q, profile.Options{Task: Task, Strict: true})
			if err != nil || len(p.Items) != 3 || !p.Items[2].HasDate() {
				t.Fatalf("profile of %s: %v", q.ID, err)
			}
		}
		// Every question has its gold: the files score against themselves.
		s, err := lamp.ScoreFiles(lamp.Task{}, filepath.Join(dir, sp.Name+"_outputs.json"), filepath.Join(dir, sp.Name+"_outputs.json"))
		if err != nil || s.Values[lamp.Rouge1] != 1 {
			t.Fatalf("%s outputs: %v %v", sp.Name, s.Values, err)
		}
	}
}

// The trait is learnable: with stories260K, a user's gold continuations
// are more likely after that user's own history than after another user's.
func TestTraitSignalOnStories260K(t *testing.T) {
	ctx := context.Background()
	m, err := llama.LoadModel(ctx, testenv.Stories260K(t), llama.ModelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c, err := m.NewContext(llama.ContextOptions{NCtx: 512, Threads: 1, ThreadsBatch: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ds, err := Generate(Options{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	qs := append(append([]lamp.Question(nil), ds.Dev.Questions...), ds.Test.Questions...)
	golds := append(append([]lamp.Output(nil), ds.Dev.Outputs.Golds...), ds.Test.Outputs.Golds...)
	per := ds.Options.QuestionsPerUser
	nll := func(items []profile.Item, q lamp.Question, gold string) (float64, int) {
		prompt := persona.RetrievalPrompt(items, persona.Recent(items, persona.DefaultTopK), q.Input)
		p, tgt, err := persona.ExampleTokens(m, prompt, gold)
		if err != nil {
			t.Fatal(err)
		}
		s, n, err := persona.TargetNLL(ctx, c, nil, p, tgt)
		if err != nil {
			t.Fatal(err)
		}
		return s, n
	}
	var own, other, none float64
	var tokens, wins int
	for i, q := range qs {
		// Another user: the same position in the next user's questions.
		o := qs[(i+per)%len(qs)]
		pq, err := profile.FromQuestion(q, profile.Options{Task: Task})
		if err != nil {
			t.Fatal(err)
		}
		po, err := profile.FromQuestion(o, profile.Options{Task: Task})
		if err != nil {
			t.Fatal(err)
		}
		a, n := nll(pq.Items, q, golds[i].Output)
		b, _ := nll(po.Items, q, golds[i].Output)
		z, _ := nll(nil, q, golds[i].Output)
		own, other, none, tokens = own+a, other+b, none+z, tokens+n
		if a < b {
			wins++
		}
	}
	own, other, none = own/float64(tokens), other/float64(tokens), none/float64(tokens)
	t.Logf("stories260K on %d dev+test questions (%d target tokens): mean NLL/token with own history %.4f, another user's %.4f, no history %.4f; own < other on %d/%d questions",
		len(qs), tokens, own, other, none, wins, len(qs))
	for _, v := range []float64{own, other, none} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			t.Fatalf("NLL not finite: own %v, other %v, none %v", own, other, none)
		}
	}
}

// No held-out user's name comes with their animal, object or place in any
// training user, in either template set: memorising which traits went with
// a name in training cannot score on dev or test.
func TestHeldOutTraitPairsNeverSeenInTraining(t *testing.T) {
	for _, set := range TemplateSets() {
		for _, seed := range []uint64{1, 2} {
			ds, err := Generate(Options{Users: 400, Seed: seed, Templates: set})
			if err != nil {
				t.Fatal(err)
			}
			seen := map[[2]string]bool{}
			for _, u := range ds.Train.Users {
				for _, v := range []string{u.Animal, u.Object, u.Place} {
					seen[[2]string{u.Name, v}] = true
				}
			}
			names := map[string]bool{}
			for _, sp := range []Split{ds.Dev, ds.Test} {
				for _, u := range sp.Users {
					names[u.Name] = true
					for _, v := range []string{u.Animal, u.Object, u.Place} {
						if seen[[2]string{u.Name, v}] {
							t.Fatalf("%s seed %d: %s user %+v: %s with %s occurs in training", set, seed, sp.Name, u, u.Name, v)
						}
					}
				}
			}
			// The names themselves are not held out: the pairing is.
			if len(names) < 12 {
				t.Errorf("%s seed %d: held-out users use only %d names", set, seed, len(names))
			}
		}
	}
	if _, err := Generate(Options{Users: 3000}); err == nil {
		t.Error("accepted more users than there are distinct traits")
	}
	if _, err := Generate(Options{Templates: "nope"}); err == nil {
		t.Error("accepted an unknown template set")
	}
}

// The alt template set shares nothing with the default one: no trait word,
// no history template, no question input and no gold template; and no trait
// word of one set occurs in the other's templates.
func TestTemplateSetsAreDisjoint(t *testing.T) {
	a, b := templateSets[TemplatesDefault], templateSets[TemplatesAlt]
	words := func(s string) []string {
		return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool { return r < 'a' || r > 'z' })
	}
	traitWords := func(ts *templateSet) map[string]bool {
		out := map[string]bool{}
		for _, list := range [][]string{ts.girlNames, ts.boyNames, ts.animals, ts.objects, ts.places} {
			for _, v := range list {
				for _, w := range words(v) {
					out[w] = true
				}
			}
		}
		return out
	}
	texts := func(ts *templateSet) []string {
		out := append([]string(nil), ts.history...)
		for _, q := range ts.questions {
			out = append(out, q.input, q.gold)
		}
		return out
	}
	for _, pair := range [][2]*templateSet{{a, b}, {b, a}} {
		x, y := pair[0], pair[1]
		tw := traitWords(x)
		for w := range traitWords(y) {
			if tw[w] {
				t.Errorf("trait word %q in both sets", w)
			}
		}
		for _, s := range texts(y) {
			for _, w := range words(s) {
				if tw[w] {
					t.Errorf("template %q uses the other set's trait word %q", s, w)
				}
			}
			for _, s2 := range texts(x) {
				if s == s2 {
					t.Errorf("template %q in both sets", s)
				}
			}
		}
		if len(x.history) != len(y.history) || len(x.questions) != len(y.questions) {
			t.Errorf("sets of different sizes")
		}
	}
	// The alt data keep the benchmark's promises too.
	ds, err := Generate(Options{Seed: 5, Templates: TemplatesAlt})
	if err != nil {
		t.Fatal(err)
	}
	for _, sp := range ds.Splits() {
		for i, q := range sp.Questions {
			u := mustUser(t, ds, q.ID)
			gold := sp.Outputs.Golds[i].Output
			for _, w := range []string{u.Name, u.Animal, u.Object, u.Place} {
				if strings.Contains(q.Input, w) || !strings.Contains(gold, w) {
					t.Errorf("input %q / gold %q and trait %q", q.Input, gold, w)
				}
			}
			for _, it := range q.Profile {
				if !strings.Contains(it.Fields["text"], u.Name) || strings.Contains(it.Fields["text"], "{") {
					t.Errorf("item %q of %+v", it.Fields["text"], u)
				}
			}
		}
	}
}
