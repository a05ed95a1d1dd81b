package persona

import (
	"fmt"
	"strings"

	"github.com/pplug/pplug/llama"
)

// Template renders a conversation as the text a model reads: a chat
// template llama.cpp applies (the model's own, one given, or a llama.cpp
// built-in name), or the plain fallback.
//
// The one fallback rule: a model without a chat template llama.cpp can
// apply gets a plain transcript,
//
//	<system>\n\n
//	User: <message>\n
//	Assistant:<answer>\n
//	Assistant:
//
// that stops when the model writes "\nUser:" (Stops). A base model
// without special tokens continues such a transcript; the chatml markers
// llama-server falls back to are plain text to it. chat, serve and eval
// (--chat) all follow this rule (ChooseTemplate).
type Template struct {
	// Name is the template text or built-in name ("" for the plain
	// fallback).
	Name string
	// Notice says why the model's own template was not taken ("" when it
	// was, or when one was given).
	Notice string
}

// PlainStops are the stop strings of the plain fallback.
var PlainStops = []string{"\nUser:", "\nuser:"}

// ChooseTemplate is the template for m: override when given (an error when
// llama.cpp cannot apply it), else the model's own, else the plain
// fallback (with a Notice when the model has a template llama.cpp cannot
// apply).
func ChooseTemplate(m *llama.Model, override string) (Template, error) {
	if override != "" {
		if err := probeTemplate(override); err != nil {
			return Template{}, fmt.Errorf("chat template %q: %w", override, err)
		}
		return Template{Name: override}, nil
	}
	own := m.Info().ChatTemplate
	if own == "" {
		return Template{}, nil
	}
	if probeTemplate(own) != nil {
		return Template{Notice: "the model's chat template is not one llama.cpp can apply; using a plain User:/Assistant: format"}, nil
	}
	return Template{Name: own}, nil
}

// probeTemplate checks that llama.cpp applies a template: it applies only
// the ones it recognises.
func probeTemplate(t string) error {
	_, err := llama.ApplyChatTemplate(t, []llama.ChatMessage{{Role: "user", Content: "hi"}}, true)
	return err
}

// Plain reports whether t is the plain fallback.
func (t Template) Plain() bool { return t.Name == "" }

// Stops are the stop strings the template needs besides the model's end
// of turn: the plain fallback's, none for a real template.
func (t Template) Stops() []string {
	if t.Plain() {
		return append([]string(nil), PlainStops...)
	}
	return nil
}

// Render renders the system prompt ("" for none) and messages, with the
// assistant's opening when addAssistant.
func (t Template) Render(system string, msgs []llama.ChatMessage, addAssistant bool) (string, error) {
	all := msgs
	if system != "" {
		all = append([]llama.ChatMessage{{Role: "system", Content: system}}, msgs...)
	}
	if !t.Plain() {
		return llama.ApplyChatTemplate(t.Name, all, addAssistant)
	}
	var b strings.Builder
	for _, m := range all {
		switch m.Role {
		case "system":
			b.WriteString(m.Content + "\n\n")
		case "user":
			b.WriteString("User: " + m.Content + "\n")
		default:
			// The answer as generated after "Assistant:" (with its own
			// leading space), so that cached tokens match.
			b.WriteString("Assistant:" + m.Content + "\n")
		}
	}
	if addAssistant {
		b.WriteString("Assistant:")
	}
	return b.String(), nil
}
