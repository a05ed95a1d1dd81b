package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/pplug/pplug/internal/testenv"
	"github.com/pplug/pplug/persona"
)

// TestGenerateFollowsThePlugsLayout: a plug trained with --layout chat
// reads generate's prompt as one user message in the chat template (the
// plain fallback for stories260K), the rows opening it; a plug of the
// prompt layout reads the prompt as given.
func TestGenerateFollowsThePlugsLayout(t *testing.T) {
	model := testenv.Stories260K(t)
	root, _ := testenv.RepoRoot()
	prof := filepath.Join(root, "examples", "profiles", "lily.json")
	plain := wordsPlug(t, model, " Tom", " robot")
	p, err := persona.ReadPlug(plain)
	if err != nil {
		t.Fatal(err)
	}
	p.Layout = persona.LayoutChat
	chatPlug := filepath.Join(t.TempDir(), "chat.plug.gguf")
	if err := p.WriteFile(chatPlug); err != nil {
		t.Fatal(err)
	}
	base := []string{"generate", "-m", model, "-p", "Lily and her dog", "-n", "4", "--temp", "0", "--profile", prof, "--cache-dir", t.TempDir(), "--verbose-prompt"}
	for _, tc := range []struct{ plug, want string }{
		{plain, `prompt (pplug): "Lily and her dog"`},
		{chatPlug, `prompt (pplug): "User: Lily and her dog\nAssistant:"`},
	} {
		code, _, errs := pplug(t, "", append(base, "--plug", tc.plug)...)
		if code != 0 || !strings.Contains(errs, tc.want) || !strings.Contains(errs, "     1 -> [instruction row 1]") {
			t.Errorf("%s: exit %d, stderr lacks %q:\n%s", filepath.Base(tc.plug), code, tc.want, errs)
		}
	}
}
