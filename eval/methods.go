// Package eval evaluates personalisation methods on LaMP-format data: it
// generates predictions with a llama.cpp model for each method (no
// personalisation, BM25 or recency retrieval into the prompt, Persona-Plug
// rows, Persona-Plug rows plus the top BM25 item), writes them in the LaMP
// outputs format and scores them with the official rules (package lamp).
// PersonaNLL measures whether a plug's persona helps: the likelihood of the
// gold outputs with the user's own persona, with none and with another
// user's.
package eval

import "github.com/pplug/pplug/persona"

// Method is one way of personalising generation (see persona.Method).
type Method = persona.Method

// The methods.
const (
	// None: the input alone.
	None = persona.MethodNone
	// BM25: the top-k history items for the input's query part, ranked by
	// BM25, in the prompt (persona.RetrievalPrompt).
	BM25 = persona.MethodBM25
	// Recent: the k most recent history items in the prompt.
	Recent = persona.MethodRecent
	// PPlug: the plug's instruction and persona rows before the input.
	PPlug = persona.MethodPPlug
	// PPlugBM25: the plug's rows and the top BM25 items in the prompt: as
	// many as the plug was trained with (persona.Plug.RetrieveK, pplug
	// train --retrieve-k), else one (the paper's best combination).
	PPlugBM25 = persona.MethodPPlugBM25
)

// AllMethods lists the methods in report order.
func AllMethods() []Method { return persona.Methods() }

// ParseMethods parses a comma-separated list of methods (see
// persona.ParseMethods).
func ParseMethods(s string) ([]Method, error) { return persona.ParseMethods(s) }

// OutputsFile is the name of the predictions file of m in an output
// folder: "<method>_outputs.json".
func OutputsFile(m Method) string { return string(m) + "_outputs.json" }
