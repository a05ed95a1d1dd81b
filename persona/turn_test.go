package persona

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/pplug/pplug/internal/testenv"
	"github.com/pplug/pplug/llama"
	"github.com/pplug/pplug/persona/profile"
)

// TestChooseMethod is the one method rule, its auto choices and refusals.
func TestChooseMethod(t *testing.T) {
	for _, tc := range []struct {
		plug, profile bool
		req           string
		want          Method
		err           error
	}{
		{false, false, "auto", MethodNone, nil},
		{false, true, "", MethodBM25, nil},
		{true, true, "auto", MethodPPlug, nil},
		{true, true, "pplug+bm25", MethodPPlugBM25, nil},
		{false, true, "recent", MethodRecent, nil},
		{true, false, "auto", "", ErrPlugNeedsProfile},
		{false, true, "pplug", "", ErrMethodNeedsPlug},
		{false, false, "bm25", "", ErrMethodNeedsProfile},
		{true, true, "bm25", "", ErrMethodUsesNoPlug},
	} {
		got, err := ChooseMethod(tc.plug, tc.profile, tc.req)
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("plug %v profile %v %q: %q, %v; want %q, %v", tc.plug, tc.profile, tc.req, got, err, tc.want, tc.err)
		}
	}
	if _, err := ChooseMethod(false, true, "nope"); err == nil || !strings.Contains(err.Error(), "unknown method") {
		t.Errorf("an unknown method: %v", err)
	}
	if (&Plug{RetrieveK: 2}).Method() != MethodPPlugBM25 || (&Plug{}).Method() != MethodPPlug {
		t.Error("a plug's own method")
	}
}

// TestTemplateFallback: a model without a template gets the plain
// transcript and its stop strings; a template llama.cpp cannot apply is
// refused when given.
func TestTemplateFallback(t *testing.T) {
	m := loadModel(t, testenv.Stories260K(t))
	tm, err := ChooseTemplate(m, "")
	if err != nil || !tm.Plain() || len(tm.Stops()) == 0 {
		t.Fatalf("stories260K: %+v %v", tm, err)
	}
	s, _ := tm.Render("Be brief.", []llama.ChatMessage{{Role: "user", Content: "hi"}}, true)
	if s != "Be brief.\n\nUser: hi\nAssistant:" {
		t.Fatalf("plain: %q", s)
	}
	if _, err := ChooseTemplate(m, "{{ no such template"); err == nil {
		t.Fatal("an unknown template was taken")
	}
	cm, err := ChooseTemplate(m, "chatml")
	if err != nil || cm.Plain() || cm.Stops() != nil {
		t.Fatalf("chatml: %+v %v", cm, err)
	}
}

// TestTurnCutAndRefusal: the builder cuts a long prompt to the window
// (BOS kept, room left for the answer) or refuses it, and lists every
// position once.
func TestTurnCutAndRefusal(t *testing.T) {
	m := loadModel(t, testenv.Stories260K(t))
	ctx := context.Background()
	long := strings.Repeat("Once upon a time there was a cat. ", 40)
	b := &Builder{LLM: m, Window: 64, Reserve: 16, Cut: true}
	turn, err := b.Build(ctx, nil, Conversation{Prompt: long})
	if err != nil {
		t.Fatal(err)
	}
	if !turn.Truncated || turn.Positions() != 48 || turn.Tokens[0] != m.BOS() || turn.Layout.Len() != 48 {
		t.Fatalf("cut: truncated %v, %d positions, layout %+v", turn.Truncated, turn.Positions(), turn.Layout)
	}
	b.Cut = false
	if _, err := b.Build(ctx, nil, Conversation{Prompt: long}); !errors.Is(err, llama.ErrContextFull) {
		t.Fatalf("no cut: %v", err)
	}
	if _, err := (&Builder{LLM: m}).Build(ctx, nil, Conversation{Messages: []llama.ChatMessage{{Role: "user", Content: "hi"}}}); err == nil {
		t.Fatal("messages without a template were laid out")
	}
	pz := &Personalizer{Method: MethodBM25, LLM: m, K: 1}
	u, err := pz.PrepareEncoded([]profile.Item{{Text: "the cat sat"}, {Text: "a dog ran"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	turn, err = (&Builder{LLM: m, Plug: &Plug{NInstr: 1, NPersona: 2}}).Build(ctx, u, Conversation{Prompt: "the cat"})
	if err != nil {
		t.Fatal(err)
	}
	if turn.At == 0 || turn.Layout.NInstr != 1 || turn.Layout.NPersona != 2 || turn.Layout.RowsAt() != 1+turn.At {
		t.Fatalf("rows to inject after the context: at %d, layout %+v", turn.At, turn.Layout)
	}
	seen := map[int]bool{}
	for _, s := range turn.Slots() {
		if seen[s.Pos] {
			t.Fatalf("position %d listed twice", s.Pos)
		}
		seen[s.Pos] = true
	}
	if len(seen) != turn.Layout.Len() || len(seen) != len(turn.Tokens)+3 {
		t.Fatalf("%d slots for %d tokens and the plug's 3 rows", len(seen), len(turn.Tokens))
	}
}
