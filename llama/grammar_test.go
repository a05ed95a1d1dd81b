package llama

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// schemaCases are schemas the converter must turn into grammars that
// llama.cpp accepts.
var schemaCases = []string{
	`{}`,
	`true`,
	`{"type": "string"}`,
	`{"type": "string", "minLength": 2, "maxLength": 5}`,
	`{"type": ["integer", "null"]}`,
	`{"type": "boolean"}`,
	`{"enum": ["red", "green", 3, null, {"a": [1, 2]}]}`,
	`{"const": "x\"y\\z\n"}`,
	`{"type": "array", "items": {"type": "number"}, "minItems": 1, "maxItems": 3}`,
	`{"type": "array", "items": {"type": "number"}, "maxItems": 1}`,
	`{"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]}`,
	`{"type": "object"}`,
	`{"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}}`,
	`{"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}, "required": ["b"], "additionalProperties": {"type": "number"}}`,
	`{"type": "object", "properties": {"név": {"type": "string", "format": "date"}, "id": {"type": "string", "format": "uuid"}}, "required": ["név", "id"]}`,
	`{"anyOf": [{"type": "string"}, {"type": "object", "properties": {"x": {"$ref": "#/$defs/node"}}}], "$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}}}}}`,
	`{"$ref": "#/definitions/p", "definitions": {"p": {"oneOf": [{"type": "integer"}, {"type": "string", "format": "date-time"}]}}}`,
}

func TestJSONSchemaGrammarsParseInLlamaCpp(t *testing.T) {
	m := loadStories(t)
	for _, sc := range schemaCases {
		g, err := JSONSchemaGrammar([]byte(sc))
		if err != nil {
			t.Errorf("%s: %v", sc, err)
			continue
		}
		s, err := m.NewSampler(SamplerOptions{Temp: 0, RepeatPenalty: 1, Grammar: g})
		if err != nil {
			t.Errorf("%s: llama.cpp rejects the grammar: %v\n%s", sc, err, g)
			continue
		}
		s.Close()
	}
}

func TestJSONSchemaRefusesWhatItCannotEnforce(t *testing.T) {
	for _, sc := range []string{
		`{"type": "string", "pattern": "^a+$"}`,
		`{"type": "integer", "minimum": 3}`,
		`{"allOf": [{"type": "string"}]}`,
		`{"type": "string", "format": "email"}`,
		`{"type": "object", "required": ["x"]}`,
		`{"$ref": "https://example.com/s.json"}`,
		`{"$ref": "#/$defs/missing"}`,
		`{"type": "wat"}`,
		`false`,
		`[1]`,
		`{"type": "string"} x`,
		``,
		`{"type": "string", "maxLength": 2, "minLength": 3}`,
	} {
		if g, err := JSONSchemaGrammar([]byte(sc)); err == nil {
			t.Errorf("%q: accepted, grammar:\n%s", sc, g)
		}
	}
}

func TestGrammarConstrainsGeneration(t *testing.T) {
	m := loadStories(t)
	schema := `{"type": "object", "properties": {"name": {"enum": ["Lily", "Tom", "Sue"]}, "age": {"type": "integer"}, "happy": {"type": "boolean"}}, "required": ["name", "age", "happy"]}`
	g, err := JSONSchemaGrammar([]byte(schema))
	if err != nil {
		t.Fatal(err)
	}
	for _, temp := range []float32{0, 1.5} {
		c := newCtx(t, m, ContextOptions{NCtx: 256, Threads: 1})
		s, err := m.NewSampler(SamplerOptions{Temp: temp, TopK: 0, TopP: 1, RepeatPenalty: 1, Seed: 7, Grammar: g})
		if err != nil {
			t.Fatal(err)
		}
		toks, err := m.Tokenize("Once upon a time", true, false)
		if err != nil {
			t.Fatal(err)
		}
		res, err := c.Generate(context.Background(), s, []Input{TokenInput(toks...)}, 0, GenerateOptions{MaxTokens: 200})
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		if res.Stop != StopEOG {
			t.Fatalf("temp %v: the grammar's end should force end-of-text, stopped by %s: %q", temp, res.Stop, res.Text)
		}
		var v struct {
			Name  string `json:"name"`
			Age   *int   `json:"age"`
			Happy *bool  `json:"happy"`
		}
		dec := json.NewDecoder(strings.NewReader(res.Text))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("temp %v: output is not the schema's JSON: %v: %q", temp, err, res.Text)
		}
		if v.Age == nil || v.Happy == nil || (v.Name != "Lily" && v.Name != "Tom" && v.Name != "Sue") {
			t.Fatalf("temp %v: output breaks the schema: %q", temp, res.Text)
		}
	}
	// Without the grammar the model writes a story, not JSON.
	res := generateGreedy(t, m, 1, 16)
	if json.Valid([]byte(res.Text)) {
		t.Fatalf("unconstrained output is JSON too, the test proves nothing: %q", res.Text)
	}
}

func TestBadGrammar(t *testing.T) {
	m := loadStories(t)
	for _, g := range []string{`root ::= "a`, `root ::= undefined-rule`, `nothing ::= "a"`} {
		s, err := m.NewSampler(SamplerOptions{Temp: 0, RepeatPenalty: 1, Grammar: g})
		if !errors.Is(err, ErrInvalidGrammar) {
			if s != nil {
				s.Close()
			}
			t.Errorf("%q: want ErrInvalidGrammar, got %v", g, err)
		}
	}
	if _, err := NewSampler(SamplerOptions{Temp: 0, RepeatPenalty: 1, Grammar: `root ::= "a"`}); err == nil {
		t.Error("a grammar without the model's vocabulary was accepted")
	}
	// The sampler pins the model: closing the model first must not free the
	// vocabulary under the grammar.
	m2, err := LoadModel(context.Background(), m.Path(), ModelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := m2.NewSampler(SamplerOptions{Temp: 0, RepeatPenalty: 1, Grammar: `root ::= "a"`})
	if err != nil {
		t.Fatal(err)
	}
	m2.Close()
	if m2.m == nil {
		t.Fatal("model freed while a grammar sampler uses its vocabulary")
	}
	s.Close()
	if m2.m != nil {
		t.Fatal("model not freed after the sampler closed")
	}
}
