package server

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/pplug/pplug/llama"
	"github.com/pplug/pplug/persona"
	"github.com/pplug/pplug/persona/store"
)

// libraryAnswer is what the persona package makes of a user's stored
// history and a prompt with a method (persona.Request.Inputs: BOS, the
// retrieved items, the rows, the rest), greedy on a fresh context.
func (ts *testServer) libraryAnswer(t *testing.T, method persona.Method, user, prompt string, n int) string {
	t.Helper()
	ctx := context.Background()
	items, err := ts.st.Items(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	pers, _, err := ts.pz.WithMethod(method).Prepare(ctx, store.ProfileItems(items), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pers.Close()
	req, err := pers.Personalize(ctx, prompt)
	if err != nil {
		t.Fatal(err)
	}
	in, err := req.Inputs(ts.m)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ts.m.NewContext(llama.ContextOptions{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	smp, err := llama.NewSampler(llama.SamplerOptions{Temp: 0, RepeatPenalty: 1, EOSBias: req.EOSBias})
	if err != nil {
		t.Fatal(err)
	}
	defer smp.Close()
	res, err := c.Generate(ctx, smp, in, 0, llama.GenerateOptions{MaxTokens: n})
	if err != nil {
		t.Fatal(err)
	}
	return res.Text
}

// completeAs runs a greedy completion for lily with an optional method and
// returns the text and the X-PPlug-Persona header.
func (ts *testServer) completeAs(t *testing.T, method string) (string, string) {
	t.Helper()
	req := map[string]any{"prompt": "Once upon a time", "user": "lily", "max_tokens": 10, "temperature": 0}
	if method != "" {
		req["pplug"] = map[string]any{"method": method}
	}
	resp, body := ts.post(t, "/v1/completions", "", req)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("method %q: status %d: %s", method, resp.StatusCode, body)
	}
	return completionText(t, body), resp.Header.Get("X-PPlug-Persona")
}

// A plug trained with --retrieve-k serves pplug+bm25 by default, laid out
// as the persona package lays it out (the retrieved items before the
// rows); a request may ask for any method the server has.
func TestTheBestMethodIsServed(t *testing.T) {
	ts := startServerWith(t, 1, "", func(c *Config) { c.Personalizer.Plug.RetrieveK = 2 })
	got, mode := ts.completeAs(t, "")
	if mode != string(persona.MethodPPlugBM25) {
		t.Fatalf("a plug trained with --retrieve-k 2 is served with %q", mode)
	}
	if want := ts.libraryAnswer(t, persona.MethodPPlugBM25, "lily", "Once upon a time", 10); got != want {
		t.Fatalf("pplug+bm25 served %q, the persona package gives %q", got, want)
	}
	for _, m := range persona.Methods() {
		got, mode := ts.completeAs(t, string(m))
		if mode != string(m) {
			t.Fatalf("asked for %s, served %q", m, mode)
		}
		if m == persona.MethodNone {
			continue
		}
		if want := ts.libraryAnswer(t, m, "lily", "Once upon a time", 10); got != want {
			t.Errorf("method %s served %q, the persona package gives %q", m, got, want)
		}
	}
}

func TestPlainPlugServesPPlug(t *testing.T) {
	ts := startServer(t, 1, "")
	if _, mode := ts.completeAs(t, ""); mode != string(persona.MethodPPlug) {
		t.Fatalf("a plug without --retrieve-k is served with %q", mode)
	}
}

// An unknown method, or one the server cannot serve, is a 400 naming the
// field and the methods it has.
func TestUnknownMethodIsRefused(t *testing.T) {
	ts := startServerWith(t, 1, "", func(c *Config) { c.Personalizer = nil })
	for _, m := range []string{"magic", "pplug", "pplug+bm25"} {
		code, e, _ := ts.do(t, http.MethodPost, "/v1/completions", map[string]any{"prompt": "Hi", "user": "lily", "pplug": map[string]any{"method": m}})
		if code != http.StatusBadRequest || param(e) != "pplug.method" || !strings.Contains(e.Message, "none, bm25, recent") || strings.Contains(e.Message, "serves none, bm25, recent, pplug") {
			t.Errorf("method %q: %d %+v", m, code, e)
		}
	}
	if _, mode := ts.completeAs(t, "recent"); mode != "recent" {
		t.Fatalf("recent served as %q", mode)
	}
}

func completionText(t *testing.T, body []byte) string {
	t.Helper()
	var cr completionResponse
	if err := json.Unmarshal(body, &cr); err != nil || len(cr.Choices) != 1 {
		t.Fatalf("bad response %s: %v", body, err)
	}
	return cr.Choices[0].Text
}

// A completion's input is the persona package's layout position by
// position: BOS, the retrieved items, the rows, the prompt.
func TestCompletionInputIsTheLibraryLayout(t *testing.T) {
	ts := startServerWith(t, 1, "", func(c *Config) { c.Personalizer.Plug.RetrieveK = 2 })
	ctx := context.Background()
	in, aerr := ts.srv.personalInput(ctx, "lily", nil, "Once upon a time", ts.srv.layCompletion)
	if aerr != nil {
		t.Fatal(aerr)
	}
	if in.turn.Method != persona.MethodPPlugBM25 || in.turn.Context == "" {
		t.Fatalf("method %s, context %q: want pplug+bm25 with retrieved items", in.turn.Method, in.turn.Context)
	}
	want, err := in.turn.Request.Inputs(ts.m)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in.inputs, want) {
		t.Fatalf("the server's input differs from persona.Request.Inputs (%d vs %d positions)",
			llama.InputsLen(in.inputs, ts.m.NEmbd()), llama.InputsLen(want, ts.m.NEmbd()))
	}
}
