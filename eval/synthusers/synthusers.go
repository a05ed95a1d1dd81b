// Package synthusers generates a small personalisation benchmark in the
// LaMP format that a tiny TinyStories model can learn from: every user has
// a consistent trait (a main character with a name, a pet, a favourite toy
// and a favourite place) that shows in each of their history stories and
// in the gold continuations of their questions, while the questions' inputs
// (story openings) never name it. A model can only predict a user's gold
// well by reading that user's history: through retrieval into the prompt or
// through a Persona-Plug persona.
//
// The data use LaMP-7's layout (profile items with a "text" field, outputs
// files with task "LaMP_7"), are split by user (a user of dev or test never
// appears in train) and are fully determined by Options. A dev or test
// user's name never comes with their animal, object or place in any
// training user (see combos), so knowing which traits went with a name in
// training is no help. Two disjoint template sets exist (Options.Templates):
// tune on one, report on both.
package synthusers

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pplug/pplug/internal/atomicfile"
	"github.com/pplug/pplug/lamp"
)

// Task is the LaMP task the data are written as.
var Task = lamp.LaMP7

// Options configure Generate. Zero values take the defaults.
type Options struct {
	Users            int     // users in all (default 40, at least 3)
	Items            int     // history stories per user (default 12)
	QuestionsPerUser int     // questions per user (default 4, at most 6)
	Seed             uint64  // the data are a function of the options
	Split            float64 // share of users in train (default 0.75); the rest is halved between dev and test
	// Templates names the template set: TemplatesDefault (set A, the
	// default) or TemplatesAlt (set B, disjoint from A).
	Templates string
}

// Defaults.
const (
	DefaultUsers            = 40
	DefaultItems            = 12
	DefaultQuestionsPerUser = 4
	DefaultSplit            = 0.75
)

func (o Options) withDefaults() Options {
	if o.Users == 0 {
		o.Users = DefaultUsers
	}
	if o.Items == 0 {
		o.Items = DefaultItems
	}
	if o.QuestionsPerUser == 0 {
		o.QuestionsPerUser = DefaultQuestionsPerUser
	}
	if o.Split == 0 {
		o.Split = DefaultSplit
	}
	if o.Templates == "" {
		o.Templates = TemplatesDefault
	}
	return o
}

// User is one synthetic user and their trait.
type User struct {
	Index  int    `json:"index"` // 0-based, in generation order
	Split  string `json:"split"` // "train", "dev" or "test"
	Name   string `json:"name"`
	Girl   bool   `json:"girl"`
	Animal string `json:"animal"`
	Object string `json:"object"`
	Place  string `json:"place"`
}

// Split is one part of the data.
type Split struct {
	Name      string // "train", "dev" or "test"
	Users     []User
	Questions []lamp.Question
	Outputs   lamp.Outputs
}

// Dataset is the generated benchmark.
type Dataset struct {
	Options          Options
	Train, Dev, Test Split
}

// Splits returns train, dev and test.
func (d Dataset) Splits() []Split { return []Split{d.Train, d.Dev, d.Test} }

// A template set is a benchmark's vocabulary and templates. Two sets
// exist: "default" (set A, the one to develop and tune on) and "alt" (set
// B), which shares no name, animal, object, place, history template,
// question input or gold template with set A: a recipe tuned on A and then
// run on B is measured on text it was never tuned for.
type templateSet struct {
	girlNames, boyNames, animals, objects, places []string
	// Story templates. {N} name, {A} animal, {O} object, {P} place,
	// {He}/{he} subject pronoun, {His}/{his} possessive, {him} object
	// pronoun, {kid} boy or girl.
	history []string
	// Question openings and their gold continuations.
	questions []struct{ input, gold string }
}

// Template set names (Options.Templates).
const (
	TemplatesDefault = "default"
	TemplatesAlt     = "alt"
)

// TemplateSets lists the template set names.
func TemplateSets() []string { return []string{TemplatesDefault, TemplatesAlt} }

// The vocabularies, kept to words a TinyStories model knows.
var templateSets = map[string]*templateSet{
	TemplatesDefault: {
		girlNames: []string{"Lily", "Sue", "Anna", "Mia", "Amy", "Lucy", "Sara", "Emma"},
		boyNames:  []string{"Tom", "Max", "Ben", "Tim", "Sam", "Jack", "Bob", "Joe"},
		animals:   []string{"dog", "cat", "bird", "fish", "frog", "bunny", "duck", "bear"},
		objects:   []string{"red ball", "blue kite", "big box", "toy car", "teddy bear", "yellow hat", "little boat", "green truck"},
		places:    []string{"park", "garden", "beach", "forest", "lake", "farm", "river", "hill"},
		history: []string{
			"{N} had a little {A}. Every day, {N} and the {A} went to the {P} to play.",
			"One day, {N} found a {O} in the {P}. {He} was very happy and showed it to {his} {A}.",
			"{N} liked to play with {his} {O}. The {A} liked it too. They played at the {P} all day.",
			"It was a sunny day. {N} took {his} {A} to the {P}. They had lots of fun.",
			"{N} lost {his} {O} at the {P}. The {A} helped {him} find it. {N} said, \"Thank you!\"",
			"At the {P}, {N} saw a big tree. {He} sat under it with {his} {A} and {his} {O}.",
			"{N} was sad because it was raining. {He} could not go to the {P}. The {A} gave {him} the {O} and {N} smiled.",
			"{N} and {his} {A} ran to the {P}. They played with the {O} until the sun went down.",
			"Every morning, {N} said hello to {his} {A}. Then {he} took the {O} and went to the {P}.",
			"The {A} jumped on the {O}. {N} laughed and laughed. It was a fun day at the {P}.",
			"{N} wanted to share. {He} gave the {O} to {his} {A}. The {A} was happy at the {P}.",
			"Mom said, \"{N}, where is your {A}?\" {N} said, \"The {A} is at the {P} with my {O}.\"",
			"{N} went to the {P} with a {O}. A friendly {A} came to play. {N} and the {A} became best friends.",
			"At night, {N} hugged {his} {A}. {He} dreamed about the {P} and the {O}.",
		},
		questions: []struct{ input, gold string }{
			{"Once upon a time, there was a little", "{kid} named {N}. {He} had a {A} and a {O}, and they liked to play in the {P}."},
			{"One day,", "{N} went to the {P} with {his} {A}. They played with the {O} all day."},
			{"Once upon a time,", "{N} and {his} {A} went to the {P}. {N} brought {his} {O} to play with."},
			{"It was a sunny day.", "{N} took {his} {O} and ran to the {P}. The {A} ran after {him}."},
			{"Every day,", "{N} played with {his} {A} at the {P}. They loved the {O} very much."},
			{"After lunch,", "{N} and the {A} went out to the {P} with the {O}. They had so much fun."},
		},
	},
	TemplatesAlt: {
		girlNames: []string{"Kate", "Jane", "Molly", "Zoe", "Ella", "Rose", "Ann", "Daisy"},
		boyNames:  []string{"Mark", "John", "Jake", "Billy", "Timmy", "Leo", "Fred", "Paul"},
		animals:   []string{"puppy", "kitten", "mouse", "horse", "cow", "pig", "sheep", "owl"},
		objects:   []string{"pink doll", "shiny rock", "new bike", "purple cup", "soft blanket", "small drum", "white bucket", "orange book"},
		places:    []string{"zoo", "pond", "yard", "school", "woods", "shop", "field", "town"},
		history: []string{
			"{N} had a pet {A}. They walked to the {P} every morning.",
			"When the sun came up, {N} ran to the {P}. {His} {A} came too, and they played with the {O}.",
			"{N} put the {O} in a bag and went to the {P} with the {A}.",
			"The {A} was sleepy, so {N} carried it to the {P}. {He} sang a song about the {O}.",
			"{N} and the {A} had a picnic at the {P}. They shared a cake and played with the {O}.",
			"{N} made a card for {his} {A}. On the card {he} drew the {P} and the {O}.",
			"It was cold outside. {N} wrapped the {A} in a scarf and they went to the {P}.",
			"{N} saw a rainbow over the {P}. {He} told {his} {A}, \"Look! It is so pretty!\"",
			"The {A} liked to hide the {O}. {N} always found it at the {P}.",
			"On {his} birthday, {N} got a {O}. {He} took it to the {P} to show the {A}.",
			"{N} heard a noise at the {P}. It was only {his} {A}, playing with the {O}.",
			"Dad asked, \"Where are you going, {N}?\" \"To the {P} with my {A},\" said {N}.",
			"{N} taught {his} {A} a new trick at the {P}. The {A} could jump over the {O}.",
			"After the rain, {N} and {his} {A} splashed in the water near the {P}.",
		},
		questions: []struct{ input, gold string }{
			{"Long ago,", "{N} lived near the {P} with {his} {A}. Every day they took the {O} for a walk."},
			{"In the morning,", "{N} woke up and looked for {his} {O}. {His} {A} found it near the {P}."},
			{"One night,", "{N} could not sleep. {He} held {his} {O} and thought about the {P} and {his} {A}."},
			{"Last summer,", "{N} and {his} {A} visited the {P}. {N} showed the {A} {his} {O}."},
			{"On a cold day,", "{N} stayed inside with {his} {A}. They wanted to go to the {P} with the {O}."},
			{"There once was a", "{kid} called {N} who loved {his} {A}, {his} {O} and the {P}."},
		},
	},
}

// render fills a template with a user's trait.
func (u User) render(tmpl string) string {
	he, his, him, kid := "he", "his", "him", "boy"
	if u.Girl {
		he, his, him, kid = "she", "her", "her", "girl"
	}
	title := func(s string) string { return strings.ToUpper(s[:1]) + s[1:] }
	r := strings.NewReplacer(
		"{N}", u.Name, "{A}", u.Animal, "{O}", u.Object, "{P}", u.Place,
		"{He}", title(he), "{he}", he, "{His}", title(his), "{his}", his, "{him}", him, "{kid}", kid,
	)
	return r.Replace(tmpl)
}

// QuestionID is the id of question j of user u: 1000*(u+1)+j, so that the
// user of a question is id/1000-1.
func QuestionID(u, j int) string { return strconv.Itoa(1000*(u+1) + j) }

// traitClass is the parity class of a trait value: its index in its list
// modulo 2 (names: in the girls' list followed by the boys').
func traitClass(i int) int { return i % 2 }

// combos lists every trait (name, animal, object, place indexes) of a
// template set whose classes follow the rule of a split: for train users
// the name's class equals the class shared by animal, object and place;
// for dev and test users it differs. So no pair of a held-out user's name
// with their animal, object or place occurs in any training user: a plug
// that memorised which traits go with a name cannot score on them, only
// one that reads the history can.
func combos(ts *templateSet, heldOut bool) [][4]int {
	nNames := len(ts.girlNames) + len(ts.boyNames)
	var out [][4]int
	for n := range nNames {
		for a := range len(ts.animals) {
			for o := range len(ts.objects) {
				for p := range len(ts.places) {
					c := traitClass(a)
					if traitClass(o) != c || traitClass(p) != c {
						continue
					}
					if (traitClass(n) != c) == heldOut {
						out = append(out, [4]int{n, a, o, p})
					}
				}
			}
		}
	}
	return out
}

// Generate makes the benchmark.
func Generate(o Options) (Dataset, error) {
	o = o.withDefaults()
	ds := Dataset{Options: o}
	ts, ok := templateSets[o.Templates]
	if !ok {
		return ds, fmt.Errorf("synthusers: unknown template set %q (have %s)", o.Templates, strings.Join(TemplateSets(), ", "))
	}
	trainCombos, heldCombos := combos(ts, false), combos(ts, true)
	switch {
	case o.Users < 3:
		return ds, fmt.Errorf("synthusers: %d users: want at least 3 (train, dev and test each need one)", o.Users)
	case o.Items < 1 || o.Items > 10000:
		return ds, fmt.Errorf("synthusers: %d history items per user: want 1 to 10000", o.Items)
	case o.QuestionsPerUser < 1 || o.QuestionsPerUser > len(ts.questions):
		return ds, fmt.Errorf("synthusers: %d questions per user: want 1 to %d", o.QuestionsPerUser, len(ts.questions))
	case !(o.Split > 0 && o.Split < 1):
		return ds, fmt.Errorf("synthusers: split %v: want the share of train users, strictly between 0 and 1", o.Split)
	}
	nTrain := int(math.Round(o.Split * float64(o.Users)))
	rest := o.Users - nTrain
	nDev := (rest + 1) / 2
	nTest := rest - nDev
	if nTrain < 1 || nDev < 1 || nTest < 1 {
		return ds, fmt.Errorf("synthusers: %d users with split %v give %d train, %d dev and %d test users; each split needs one", o.Users, o.Split, nTrain, nDev, nTest)
	}
	if nTrain > len(trainCombos) || nDev+nTest > len(heldCombos) {
		return ds, fmt.Errorf("synthusers: %d train and %d held-out users: the %s templates have traits for at most %d and %d",
			nTrain, nDev+nTest, o.Templates, len(trainCombos), len(heldCombos))
	}

	rng := rand.New(rand.NewPCG(o.Seed, 0x5157e5))
	// Users are assigned to splits in a shuffled order, then get distinct
	// traits drawn from their split's classes.
	order := rng.Perm(o.Users)
	splitOf := make([]string, o.Users)
	for k, i := range order {
		switch {
		case k < nTrain:
			splitOf[i] = "train"
		case k < nTrain+nDev:
			splitOf[i] = "dev"
		default:
			splitOf[i] = "test"
		}
	}
	trainPerm, heldPerm := rng.Perm(len(trainCombos)), rng.Perm(len(heldCombos))
	users := make([]User, o.Users)
	for i := range users {
		var t [4]int
		if splitOf[i] == "train" {
			t, trainPerm = trainCombos[trainPerm[0]], trainPerm[1:]
		} else {
			t, heldPerm = heldCombos[heldPerm[0]], heldPerm[1:]
		}
		u := User{Index: i, Split: splitOf[i], Animal: ts.animals[t[1]], Object: ts.objects[t[2]], Place: ts.places[t[3]]}
		if t[0] < len(ts.girlNames) {
			u.Name, u.Girl = ts.girlNames[t[0]], true
		} else {
			u.Name = ts.boyNames[t[0]-len(ts.girlNames)]
		}
		users[i] = u
	}
	ds.Train = Split{Name: "train", Outputs: lamp.Outputs{Task: Task.Name(), Golds: []lamp.Output{}}}
	ds.Dev = Split{Name: "dev", Outputs: lamp.Outputs{Task: Task.Name(), Golds: []lamp.Output{}}}
	ds.Test = Split{Name: "test", Outputs: lamp.Outputs{Task: Task.Name(), Golds: []lamp.Output{}}}
	start := time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range users {
		u := &users[i]
		// History: the templates in a user-specific order, cycled, dated
		// one day apart (the last is the most recent).
		tmpl := rng.Perm(len(ts.history))
		prof := make([]lamp.ProfileItem, o.Items)
		for j := range prof {
			prof[j] = lamp.ProfileItem{
				ID: fmt.Sprintf("%d-%d", i+1, j+1),
				Fields: map[string]string{
					"text": u.render(ts.history[tmpl[j%len(tmpl)]]),
					"date": start.AddDate(0, 0, j).Format("2006-01-02"),
				},
			}
		}
		qs := rng.Perm(len(ts.questions))[:o.QuestionsPerUser]
		var sp *Split
		switch u.Split {
		case "train":
			sp = &ds.Train
		case "dev":
			sp = &ds.Dev
		default:
			sp = &ds.Test
		}
		sp.Users = append(sp.Users, *u)
		for j, k := range qs {
			id := QuestionID(i, j)
			sp.Questions = append(sp.Questions, lamp.Question{ID: id, Input: ts.questions[k].input, Profile: prof})
			sp.Outputs.Golds = append(sp.Outputs.Golds, lamp.Output{ID: id, Output: u.render(ts.questions[k].gold)})
		}
	}
	return ds, nil
}

// Write writes the dataset into dir (created if needed):
// {train,dev,test}_questions.json, {train,dev,test}_outputs.json and
// users.json (every user's trait and split, for inspection). Files are
// written atomically.
func Write(dir string, ds Dataset) error {
	if len(ds.Train.Questions) == 0 && len(ds.Dev.Questions) == 0 && len(ds.Test.Questions) == 0 {
		return errors.New("synthusers: the dataset is empty")
	}
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return err
	}
	var all []User
	for _, sp := range ds.Splits() {
		if err := lamp.WriteQuestions(filepath.Join(dir, sp.Name+"_questions.json"), sp.Questions); err != nil {
			return err
		}
		if err := lamp.WriteOutputs(filepath.Join(dir, sp.Name+"_outputs.json"), sp.Outputs); err != nil {
			return err
		}
		all = append(all, sp.Users...)
	}
	b, err := json.MarshalIndent(all, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, "users.json"), func(w io.Writer) error {
		_, err := w.Write(append(b, '\n'))
		return err
	})
}
