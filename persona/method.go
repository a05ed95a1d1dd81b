package persona

import (
	"errors"
	"fmt"
)

// Errors of ChooseMethod: what a requested method lacks or has too much.
var (
	ErrMethodNeedsPlug    = errors.New("the method needs a plug")
	ErrMethodNeedsProfile = errors.New("the method needs a profile")
	ErrMethodUsesNoPlug   = errors.New("the method uses no plug")
	ErrPlugNeedsProfile   = errors.New("a plug needs a profile: it turns a user's history into persona rows")
)

// ChooseMethod is the one rule that picks the personalisation method of a
// run from what it has (a plug, a profile) and what it asks for
// (requested: a method name, "auto" or ""):
//
//   - auto: pplug with a plug, bm25 with a profile alone, none without;
//   - a named method must have what it needs: a plug for pplug and
//     pplug+bm25, a profile for every method but none, and no plug for the
//     methods that use none.
//
// A plug without a profile is refused either way. The errors wrap the
// Err* values above so that a caller can name its own flags.
func ChooseMethod(hasPlug, hasProfile bool, requested string) (Method, error) {
	if hasPlug && !hasProfile {
		return "", ErrPlugNeedsProfile
	}
	if requested == "" || requested == "auto" {
		switch {
		case hasPlug:
			return MethodPPlug, nil
		case hasProfile:
			return MethodBM25, nil
		}
		return MethodNone, nil
	}
	m, err := ParseMethod(requested)
	if err != nil {
		return "", err
	}
	switch {
	case m.NeedsPlug() && !hasPlug:
		return "", fmt.Errorf("method %s: %w", m, ErrMethodNeedsPlug)
	case m.NeedsProfile() && !hasProfile:
		return "", fmt.Errorf("method %s: %w", m, ErrMethodNeedsProfile)
	case !m.NeedsPlug() && hasPlug:
		return "", fmt.Errorf("method %s: %w", m, ErrMethodUsesNoPlug)
	}
	return m, nil
}

// Method is the method the plug was trained for: pplug+bm25 for a plug
// trained with retrieved items (pplug train --retrieve-k), pplug
// otherwise.
func (p *Plug) Method() Method {
	if p != nil && p.RetrieveK > 0 {
		return MethodPPlugBM25
	}
	return MethodPPlug
}

// EvalMethods are the methods an evaluation compares by default: none,
// bm25 and recent, and with a plug pplug and pplug+bm25.
func EvalMethods(hasPlug bool) []Method {
	ms := []Method{MethodNone, MethodBM25, MethodRecent}
	if hasPlug {
		ms = append(ms, MethodPPlug, MethodPPlugBM25)
	}
	return ms
}
