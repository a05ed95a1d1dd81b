package llama

import (
	"strings"
	"unicode/utf8"
)

// TextStream turns sampled token pieces into text the way Generate streams
// it: whole UTF-8 characters only, and stop strings cut out, with text that
// could begin a stop string held back until the following pieces decide.
// Generate uses one per call; a server that samples many sequences in one
// loop keeps one per sequence.
type TextStream struct {
	stops   []string
	pending []byte // bytes of a UTF-8 sequence still incomplete
	held    string // text that may be the start of a stop string
	stopped bool
}

// NewTextStream returns a stream that ends at the first of stops ("" are ignored).
func NewTextStream(stops []string) *TextStream { return &TextStream{stops: stops} }

// Push adds a token's bytes and returns the text that became final. stop
// reports that a stop string appeared: the text before it is returned and
// the stream takes nothing more.
func (s *TextStream) Push(piece []byte) (text string, stop bool) {
	return s.push(piece, false)
}

// Flush ends the stream: it returns the held-back text, with an incomplete
// UTF-8 sequence at the end replaced by U+FFFD.
func (s *TextStream) Flush() string {
	t, _ := s.push(nil, true)
	return t
}

// Stopped reports whether a stop string ended the stream.
func (s *TextStream) Stopped() bool { return s.stopped }

func (s *TextStream) push(piece []byte, final bool) (string, bool) {
	if s.stopped {
		return "", true
	}
	s.pending = append(s.pending, piece...)
	n := completeUTF8(s.pending)
	if final {
		n = len(s.pending)
	}
	s.held += strings.ToValidUTF8(string(s.pending[:n]), "\uFFFD")
	s.pending = append(s.pending[:0], s.pending[n:]...)
	if cut := firstStop(s.held, s.stops); cut >= 0 {
		out := s.held[:cut]
		s.held, s.stopped = "", true
		return out, true
	}
	keep := 0
	if !final {
		keep = stopPrefixLen(s.held, s.stops)
	}
	out := s.held[:len(s.held)-keep]
	s.held = s.held[len(s.held)-keep:]
	return out, false
}

// firstStop returns where the earliest stop string starts in s, or -1.
func firstStop(s string, stops []string) int {
	cut := -1
	for _, st := range stops {
		if st == "" {
			continue
		}
		if i := strings.Index(s, st); i >= 0 && (cut < 0 || i < cut) {
			cut = i
		}
	}
	return cut
}

// stopPrefixLen is the length of the longest suffix of s that begins some
// stop string: text that must be held back until the next token decides.
func stopPrefixLen(s string, stops []string) int {
	best := 0
	for _, st := range stops {
		for k := min(len(st)-1, len(s)); k > best; k-- {
			if strings.HasSuffix(s, st[:k]) {
				best = k
				break
			}
		}
	}
	return best
}

// completeUTF8 returns the length of the longest prefix of b that does not
// end inside a UTF-8 sequence.
func completeUTF8(b []byte) int {
	n := len(b)
	// Look back at most 3 bytes for the lead byte of a sequence in progress.
	for i := n - 1; i >= 0 && i >= n-4; i-- {
		c := b[i]
		if c < 0x80 {
			return n // ASCII: everything before is whole
		}
		if utf8.RuneStart(c) {
			need := 0
			switch {
			case c&0xE0 == 0xC0:
				need = 2
			case c&0xF0 == 0xE0:
				need = 3
			case c&0xF8 == 0xF0:
				need = 4
			default:
				return n // invalid lead byte: nothing to wait for
			}
			if n-i < need {
				return i
			}
			return n
		}
	}
	return n
}
