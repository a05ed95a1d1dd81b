package persona

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pplug/pplug/internal/testenv"
	"github.com/pplug/pplug/kernels"
	"github.com/pplug/pplug/persona/profile"
)

// TestPersonalizerMethods: every method turns (user, input) into the
// request it documents: the prompt text, the rows, the weights and the
// retrieved items with their scores.
func TestPersonalizerMethods(t *testing.T) {
	m := loadModel(t, testenv.Stories260K(t))
	enc, err := NewEncoder(m, EncoderOptions{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	b, _ := kernels.Open("cpu", kernels.Options{Threads: 1})
	defer b.Close()
	plug := newTestPlug(t, m, enc.Dim(), 4)
	day := func(d int) time.Time { return time.Date(2024, 1, d, 0, 0, 0, 0, time.UTC) }
	items := []profile.Item{
		{ID: "a", Text: "Lily went to the park with her dog.", Date: day(3)},
		{ID: "b", Text: "The cat sat on a red box.", Date: day(9)},
		{ID: "c", Text: "Lily and the dog ran in the park all day.", Date: day(1)},
		{ID: "d", Text: "Tom built a boat.", Date: day(7)},
	}
	base := &Personalizer{LLM: m, Plug: plug, Encoder: enc, Backend: b, K: 2}
	const input = "story: Lily and her dog in the park"
	ctx := context.Background()
	req := func(method Method, query func(string) string) Request {
		t.Helper()
		pz := base.WithMethod(method)
		pz.Query = query
		if err := pz.Check(); err != nil {
			t.Fatal(err)
		}
		u, _, err := pz.Prepare(ctx, items, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		r, err := u.Personalize(ctx, input)
		if err != nil {
			t.Fatal(err)
		}
		if r.Method != method {
			t.Fatalf("%s: request of method %s", method, r.Method)
		}
		return r
	}
	ids := func(r Request) []string {
		var out []string
		for _, x := range r.Retrieved {
			out = append(out, x.Item.ID)
		}
		return out
	}
	d := m.NEmbd()

	if r := req(MethodNone, nil); r.Prompt != input || r.Rows != nil || r.Retrieved != nil {
		t.Errorf("none: %+v", r)
	}
	bm := req(MethodBM25, nil)
	if got := ids(bm); !slices.Equal(got, []string{"c", "a"}) || bm.Rows != nil {
		t.Errorf("bm25 retrieved %v, want [c a] (most shared words first)", got)
	}
	if !(bm.Retrieved[0].Score >= bm.Retrieved[1].Score && bm.Retrieved[1].Score > 0) {
		t.Errorf("bm25 scores %v %v", bm.Retrieved[0].Score, bm.Retrieved[1].Score)
	}
	if want := RetrievalPrompt(items, []int{2, 0}, input); bm.Prompt != want {
		t.Errorf("bm25 prompt %q, want %q", bm.Prompt, want)
	}
	// Query: retrieval looks at the query part only.
	onlyTom := req(MethodBM25, func(string) string { return "Tom boat" })
	if got := ids(onlyTom); got[0] != "d" {
		t.Errorf("bm25 with a query function retrieved %v, want d first", got)
	}
	if got := ids(req(MethodRecent, nil)); !slices.Equal(got, []string{"b", "d"}) {
		t.Errorf("recent retrieved %v, want [b d] (newest first)", got)
	}
	pp := req(MethodPPlug, nil)
	if pp.Prompt != input || len(pp.Rows) != plug.NRows()*d || len(pp.Weights) != len(items) || pp.Retrieved != nil {
		t.Errorf("pplug: prompt %q, %d row values, %d weights", pp.Prompt, len(pp.Rows), len(pp.Weights))
	}
	// pplug+bm25: the rows of pplug and one retrieved item for a plug
	// trained without retrieval, as many as it was trained with otherwise.
	both := req(MethodPPlugBM25, nil)
	if !slices.Equal(both.Rows, pp.Rows) || !slices.Equal(ids(both), []string{"c"}) {
		t.Errorf("pplug+bm25: same rows %v, retrieved %v (want [c])", slices.Equal(both.Rows, pp.Rows), ids(both))
	}
	plug.RetrieveK = 3
	if got := ids(req(MethodPPlugBM25, nil)); len(got) != 3 {
		t.Errorf("pplug+bm25 with a plug trained on 3 items retrieved %v", got)
	}
	plug.RetrieveK = 0
	// A nil persona (no user) gets the input alone.
	var none *Persona
	if r, err := none.Personalize(ctx, input); err != nil || r.Prompt != input || r.Method != MethodNone {
		t.Errorf("nil persona: %+v %v", r, err)
	}
	// What a method lacks is an error, not a crash.
	for _, bad := range []*Personalizer{
		{Method: MethodPPlug, LLM: m},
		{Method: "bm42", LLM: m},
		{Method: MethodBM25},
		{Method: MethodBM25, LLM: m, K: -1},
	} {
		if err := bad.Check(); err == nil {
			t.Errorf("%+v passed Check", bad)
		}
	}
	if _, _, err := base.WithMethod(MethodBM25).Prepare(ctx, nil, nil); err == nil || !strings.Contains(err.Error(), "no items") {
		t.Errorf("empty history: %v", err)
	}
}

func TestParseMethods(t *testing.T) {
	got, err := ParseMethods("BM25, pplug+bm25,bm25")
	if err != nil || !slices.Equal(got, []Method{MethodBM25, MethodPPlugBM25}) {
		t.Fatalf("%v %v", got, err)
	}
	if all, _ := ParseMethods("all"); !slices.Equal(all, Methods()) {
		t.Fatalf("all: %v", all)
	}
	for _, bad := range []string{"", " , ", "bm42"} {
		if _, err := ParseMethods(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
