package chat

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pplug/pplug/persona"
)

// TestTranscriptFile: a transcript reads back as written; an existing file
// is kept unless replacing is asked; a newer format and a file that is no
// transcript are errors naming the file.
func TestTranscriptFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "t.json")
	want := Transcript{Version: TranscriptVersion, Model: "m.gguf", Method: persona.MethodPPlug, PersonaOn: true, System: "Be brief.",
		Messages: []Message{{Role: "user", Content: "Hi", Persona: persona.MethodPPlug}, {Role: "assistant", Content: "Hello"}}}
	if err := WriteTranscript(path, want, false); err != nil {
		t.Fatal(err)
	}
	got, err := ReadTranscript(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Model != want.Model || got.System != want.System || len(got.Messages) != 2 || got.Messages[0].Persona != persona.MethodPPlug {
		t.Fatalf("read %+v, wrote %+v", got, want)
	}
	if err := WriteTranscript(path, want, false); !errors.Is(err, ErrTranscriptExists) {
		t.Fatalf("second write: %v, want ErrTranscriptExists", err)
	}
	want.System = "Be long."
	if err := WriteTranscript(path, want, true); err != nil {
		t.Fatal(err)
	}
	if got, _ := ReadTranscript(path); got.System != "Be long." {
		t.Fatalf("replace kept %q", got.System)
	}
	for name, body := range map[string]string{
		"newer.json": `{"pplug_transcript": 99, "messages": []}`,
		"junk.json":  `not json`,
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o644)
		if _, err := ReadTranscript(p); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: %v, want an error naming the file", name, err)
		}
	}
}
