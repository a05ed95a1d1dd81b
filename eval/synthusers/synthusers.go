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
// appears in train) and are fully determined by Options.
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

// The vocabulary, kept to words a TinyStories model knows.
var (
	girlNames = []string{"Lily", "Sue", "Anna", "Mia", "Amy", "Lucy", "Sara", "Emma"}
	boyNames  = []string{"Tom", "Max", "Ben", "Tim", "Sam", "Jack", "Bob", "Joe"}
	animals   = []string{"dog", "cat", "bird", "fish", "frog", "bunny", "duck", "bear"}
	objects   = []string{"red ball", "blue kite", "big box", "toy car", "teddy bear", "yellow hat", "little boat", "green truck"}
	places    = []string{"park", "garden", "beach", "forest", "lake", "farm", "river", "hill"}
)

// Story templates. {N} name, {A} animal, {O} object, {P} place, {He}/{he}
// subject pronoun, {his} possessive, {him} object pronoun.
var historyTemplates = []string{
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
}

// Question openings and their gold continuations.
var questionTemplates = []struct{ input, gold string }{
	{"Once upon a time, there was a little", "{kid} named {N}. {He} had a {A} and a {O}, and they liked to play in the {P}."},
	{"One day,", "{N} went to the {P} with {his} {A}. They played with the {O} all day."},
	{"Once upon a time,", "{N} and {his} {A} went to the {P}. {N} brought {his} {O} to play with."},
	{"It was a sunny day.", "{N} took {his} {O} and ran to the {P}. The {A} ran after {him}."},
	{"Every day,", "{N} played with {his} {A} at the {P}. They loved the {O} very much."},
	{"After lunch,", "{N} and the {A} went out to the {P} with the {O}. They had so much fun."},
}

// render fills a template with a user's trait.
func (u User) render(tmpl string) string {
	he, his, him, kid := "he", "his", "him", "boy"
	if u.Girl {
		he, his, him, kid = "she", "her", "her", "girl"
	}
	r := strings.NewReplacer(
		"{N}", u.Name, "{A}", u.Animal, "{O}", u.Object, "{P}", u.Place,
		"{He}", strings.ToUpper(he[:1])+he[1:], "{he}", he, "{his}", his, "{him}", him, "{kid}", kid,
	)
	return r.Replace(tmpl)
}

// QuestionID is the id of question j of user u: 1000*(u+1)+j, so that the
// user of a question is id/1000-1.
func QuestionID(u, j int) string { return strconv.Itoa(1000*(u+1) + j) }

// Generate makes the benchmark.
func Generate(o Options) (Dataset, error) {
	o = o.withDefaults()
	ds := Dataset{Options: o}
	nNames := len(girlNames) + len(boyNames)
	maxUsers := nNames * len(animals) * len(objects) * len(places)
	switch {
	case o.Users < 3 || o.Users > maxUsers:
		return ds, fmt.Errorf("synthusers: %d users: want 3 to %d (train, dev and test each need one)", o.Users, maxUsers)
	case o.Items < 1 || o.Items > 10000:
		return ds, fmt.Errorf("synthusers: %d history items per user: want 1 to 10000", o.Items)
	case o.QuestionsPerUser < 1 || o.QuestionsPerUser > len(questionTemplates):
		return ds, fmt.Errorf("synthusers: %d questions per user: want 1 to %d", o.QuestionsPerUser, len(questionTemplates))
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

	rng := rand.New(rand.NewPCG(o.Seed, 0x5157e5))
	// Distinct traits, drawn in a fixed order from the seed.
	used := map[[4]int]bool{}
	users := make([]User, o.Users)
	for i := range users {
		var t [4]int
		for {
			t = [4]int{rng.IntN(nNames), rng.IntN(len(animals)), rng.IntN(len(objects)), rng.IntN(len(places))}
			if !used[t] {
				break
			}
		}
		used[t] = true
		u := User{Index: i, Animal: animals[t[1]], Object: objects[t[2]], Place: places[t[3]]}
		if t[0] < len(girlNames) {
			u.Name, u.Girl = girlNames[t[0]], true
		} else {
			u.Name = boyNames[t[0]-len(girlNames)]
		}
		users[i] = u
	}
	// Users are assigned to splits in a shuffled order.
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
	ds.Train = Split{Name: "train", Outputs: lamp.Outputs{Task: Task.Name(), Golds: []lamp.Output{}}}
	ds.Dev = Split{Name: "dev", Outputs: lamp.Outputs{Task: Task.Name(), Golds: []lamp.Output{}}}
	ds.Test = Split{Name: "test", Outputs: lamp.Outputs{Task: Task.Name(), Golds: []lamp.Output{}}}
	start := time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range users {
		u := &users[i]
		u.Split = splitOf[i]
		// History: the templates in a user-specific order, cycled, dated
		// one day apart (the last is the most recent).
		tmpl := rng.Perm(len(historyTemplates))
		prof := make([]lamp.ProfileItem, o.Items)
		for j := range prof {
			prof[j] = lamp.ProfileItem{
				ID: fmt.Sprintf("%d-%d", i+1, j+1),
				Fields: map[string]string{
					"text": u.render(historyTemplates[tmpl[j%len(tmpl)]]),
					"date": start.AddDate(0, 0, j).Format("2006-01-02"),
				},
			}
		}
		qs := rng.Perm(len(questionTemplates))[:o.QuestionsPerUser]
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
			sp.Questions = append(sp.Questions, lamp.Question{ID: id, Input: questionTemplates[k].input, Profile: prof})
			sp.Outputs.Golds = append(sp.Outputs.Golds, lamp.Output{ID: id, Output: u.render(questionTemplates[k].gold)})
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
	if err := os.MkdirAll(dir, 0o755); err != nil {
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
