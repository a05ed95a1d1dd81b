package chat

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
	"unicode/utf8"

	"github.com/pplug/pplug/internal/atomicfile"
	"github.com/pplug/pplug/persona"
)

// TranscriptVersion is the format of the transcripts WriteTranscript
// writes; ReadTranscript refuses newer ones.
const TranscriptVersion = 1

// Transcript is a saved conversation: its messages (each with its persona
// state) and what it ran with.
type Transcript struct {
	Version   int            `json:"pplug_transcript"`
	Model     string         `json:"model"`
	ModelName string         `json:"model_name,omitempty"`
	Profile   string         `json:"profile,omitempty"`
	Plug      string         `json:"plug,omitempty"`
	Method    persona.Method `json:"method"`
	PersonaOn bool           `json:"persona_on"`
	System    string         `json:"system,omitempty"`
	Settings  string         `json:"settings"`
	Saved     string         `json:"saved"`
	Messages  []Message      `json:"messages"`
}

// Transcript is the session's conversation as a Transcript; the caller
// fills in what the session does not know (model, profile, plug, method,
// settings).
func (s *Session) Transcript() Transcript {
	t := Transcript{Version: TranscriptVersion, PersonaOn: s.PersonaOn(), System: s.System(),
		Saved: time.Now().UTC().Format(time.RFC3339), Messages: s.Messages()}
	if t.Messages == nil {
		t.Messages = []Message{}
	}
	return t
}

// Restore continues the conversation of t in the session: its system
// message and messages replace the session's.
func (s *Session) Restore(t Transcript) error {
	if err := s.SetSystem(t.System); err != nil {
		return err
	}
	return s.Load(t.Messages)
}

// ErrTranscriptExists is WriteTranscript's error for a file that exists
// when it was not asked to replace it.
var ErrTranscriptExists = errors.New("the file exists")

// WriteTranscript writes t as indented JSON to path, atomically: a new
// file, or over an existing one when replace.
func WriteTranscript(path string, t Transcript, replace bool) error {
	write := func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(t)
	}
	if replace {
		return atomicfile.Write(path, write)
	}
	// Never replace a file, also one made since the caller looked.
	err := atomicfile.WriteNew(path, write)
	if errors.Is(err, atomicfile.ErrExists) {
		return fmt.Errorf("%s: %w", path, ErrTranscriptExists)
	}
	return err
}

// ReadTranscript reads a transcript written by WriteTranscript; a file that
// is not one, one of a newer format or with text that is not UTF-8 is an
// error naming the file.
func ReadTranscript(path string) (Transcript, error) {
	var t Transcript
	b, err := os.ReadFile(path)
	if err != nil {
		return t, err
	}
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&t); err != nil {
		return t, fmt.Errorf("%s: not a transcript: %w", path, err)
	}
	if t.Version > TranscriptVersion {
		return t, fmt.Errorf("%s: transcript format %d is newer than this pplug's (%d)", path, t.Version, TranscriptVersion)
	}
	for i, m := range t.Messages {
		if !utf8.ValidString(m.Content) || !utf8.ValidString(m.Seen) {
			return t, fmt.Errorf("%s: message %d is not valid UTF-8", path, i+1)
		}
	}
	return t, nil
}
