package profile

import (
	"errors"
	"fmt"
	"strconv"
	"unicode"
	"unicode/utf8"
)

// The item id rule, which the loader, persona/store and the server share:
// an id names one item of a user. Within one input (a file, a question's
// profile, a batch of items) two items with one id are an error
// (ErrDuplicateID); an id is at most MaxIDBytes of printable UTF-8
// (ErrBadID). Items without an id get none here and a fresh one in the
// store.

// MaxIDBytes bounds an item id.
const MaxIDBytes = 256

// quotedPrefix is the most bytes of an id or a name that messages quote.
const quotedPrefix = 64

var (
	// ErrDuplicateID: two items of one input share an id.
	ErrDuplicateID = errors.New("duplicate item id")
	// ErrBadID: an item id is too long, not UTF-8 or not printable.
	ErrBadID = fmt.Errorf("an item id is 1 to %d bytes of printable UTF-8", MaxIDBytes)
)

// CheckID reports whether id may name an item (ErrBadID when not, saying
// why).
func CheckID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: the id is empty", ErrBadID)
	case len(id) > MaxIDBytes:
		return fmt.Errorf("%w: %s has %d bytes", ErrBadID, QuoteID(id), len(id))
	case !utf8.ValidString(id):
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrBadID, QuoteID(id))
	}
	for _, r := range id {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%w: %s holds the unprintable character %U", ErrBadID, QuoteID(id), r)
		}
	}
	return nil
}

// QuoteID quotes an id (or any name taken from input) for a message: at
// most its first 64 bytes, cut at a character boundary, then the length
// of the rest, so that a megabyte of input is never echoed whole.
func QuoteID(id string) string {
	if len(id) <= quotedPrefix {
		return strconv.Quote(id)
	}
	cut := quotedPrefix
	for cut > 0 && !utf8.RuneStart(id[cut]) {
		cut--
	}
	return fmt.Sprintf("%s... (%d bytes)", strconv.Quote(id[:cut]), len(id))
}

// itemPos is where an item was read.
type itemPos struct{ index, line int }

func (p itemPos) String() string {
	if p.line > 0 {
		return fmt.Sprintf("item %d (line %d)", p.index, p.line)
	}
	return "item " + strconv.Itoa(p.index)
}

// duplicateError names both items that share an id.
func duplicateError(id string, first, again itemPos) error {
	return fmt.Errorf("%w: %s and %s both have id %s; an id names one item: give each its own id or leave \"id\" out",
		ErrDuplicateID, first, again, QuoteID(id))
}
