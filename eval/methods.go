// Package eval evaluates personalisation methods on LaMP-format data: it
// generates predictions with a llama.cpp model for each method (no
// personalisation, BM25 or recency retrieval into the prompt, Persona-Plug
// rows, Persona-Plug rows plus the top BM25 item), writes them in the LaMP
// outputs format and scores them with the official rules (package lamp).
// PersonaNLL measures whether a plug's persona helps: the likelihood of the
// gold outputs with the user's own persona, with none and with another
// user's.
package eval

import (
	"fmt"
	"strings"
)

// Method is one way of personalising generation.
type Method string

// The methods.
const (
	// None: the input alone.
	None Method = "none"
	// BM25: the top-k history items for the input's query part, ranked by
	// BM25, in the prompt (persona.RetrievalPrompt).
	BM25 Method = "bm25"
	// Recent: the k most recent history items in the prompt.
	Recent Method = "recent"
	// PPlug: the plug's instruction and persona rows before the input.
	PPlug Method = "pplug"
	// PPlugBM25: the plug's rows and the top BM25 items in the prompt: as
	// many as the plug was trained with (persona.Plug.RetrieveK, pplug
	// train --retrieve-k), else one (the paper's best combination).
	PPlugBM25 Method = "pplug+bm25"
)

// AllMethods lists the methods in report order.
func AllMethods() []Method { return []Method{None, BM25, Recent, PPlug, PPlugBM25} }

// NeedsPlug reports whether m needs a Persona-Plug plug-in.
func (m Method) NeedsPlug() bool { return m == PPlug || m == PPlugBM25 }

// NeedsProfile reports whether m reads the user's history.
func (m Method) NeedsProfile() bool { return m != None }

// Valid reports whether m is a known method.
func (m Method) Valid() bool {
	for _, k := range AllMethods() {
		if m == k {
			return true
		}
	}
	return false
}

// OutputsFile is the name of the predictions file of m in an output
// folder: "<method>_outputs.json".
func (m Method) OutputsFile() string { return string(m) + "_outputs.json" }

// ParseMethods parses a comma-separated list of methods ("none,bm25").
// Names are case-insensitive; "all" means AllMethods; duplicates are
// dropped; an empty list or an unknown name is an error.
func ParseMethods(s string) ([]Method, error) {
	var out []Method
	seen := map[Method]bool{}
	add := func(m Method) {
		if !seen[m] {
			seen[m] = true
			out = append(out, m)
		}
	}
	for _, f := range strings.Split(s, ",") {
		f = strings.ToLower(strings.TrimSpace(f))
		if f == "" {
			continue
		}
		if f == "all" {
			for _, m := range AllMethods() {
				add(m)
			}
			continue
		}
		m := Method(f)
		if !m.Valid() {
			return nil, fmt.Errorf("unknown method %q (methods: none, bm25, recent, pplug, pplug+bm25)", f)
		}
		add(m)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no methods given (methods: none, bm25, recent, pplug, pplug+bm25)")
	}
	return out, nil
}
