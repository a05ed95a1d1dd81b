package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pplug/pplug/persona/profile"
)

// The item rules, the same as profile files': an id names one item of a
// user (profile.CheckID); one batch never holds an id twice
// (profile.ErrDuplicateID); an item whose id the user already has is
// refused by AddItems (ErrItemExists) and replaced only by UpsertItems or
// ReplaceItems, which callers ask for explicitly; items without an id get
// a fresh one. A text is at most MaxItemBytes.

// MaxItemBytes bounds an item's text: profile.DefaultMaxItemBytes, the
// limit profile files are cut to, so that every way in keeps one limit.
const MaxItemBytes = profile.DefaultMaxItemBytes

var (
	// ErrItemExists: the user already has an item with this id (it is
	// also ErrExists).
	ErrItemExists = fmt.Errorf("an item with this id %w", ErrExists)
	// ErrItemTooLarge: an item's text is over MaxItemBytes.
	ErrItemTooLarge = fmt.Errorf("an item's text is at most %d bytes", MaxItemBytes)
	// ErrEmptyText: an item's text is blank or not UTF-8.
	ErrEmptyText = errors.New("an item needs a text: a non-blank UTF-8 string without NUL characters")
	// ErrBadDate: an item's date is not UTF-8 or holds a NUL character.
	ErrBadDate = errors.New("an item's date is a UTF-8 string without NUL characters (RFC 3339 is best)")
)

// NewItem is an item to add.
type NewItem struct {
	ID     string            `json:"id,omitempty"` // "" assigns one
	Text   string            `json:"text"`
	Date   string            `json:"date,omitempty"`
	Fields map[string]string `json:"fields,omitempty"`
}

// writeMode is how a write treats the user's items.
type writeMode int

const (
	modeAdd     writeMode = iota // refuse ids the user has
	modeUpsert                   // replace items with the same ids
	modeReplace                  // replace the whole history
)

// AddItems appends items to a user's history in one transaction: all or
// none are added. An item whose id the user already has refuses the
// batch (ErrItemExists, naming the id); UpsertItems replaces such items.
func (s *Store) AddItems(ctx context.Context, userID string, items []NewItem) ([]Item, error) {
	return s.writeItems(ctx, userID, items, modeAdd)
}

// UpsertItems is AddItems that replaces the user's items with the same
// ids (a replaced item becomes the most recent; a changed text is encoded
// anew, the embedding cache being keyed by text).
func (s *Store) UpsertItems(ctx context.Context, userID string, items []NewItem) ([]Item, error) {
	return s.writeItems(ctx, userID, items, modeUpsert)
}

// ReplaceItems replaces a user's whole history with items in one
// transaction: after a crash the user has either the old items or the new
// ones. The user and their API key stay.
func (s *Store) ReplaceItems(ctx context.Context, userID string, items []NewItem) ([]Item, error) {
	return s.writeItems(ctx, userID, items, modeReplace)
}

// CheckItems applies the item rules to a batch before any write: texts,
// ids and no id twice. Errors name the item by its position in items.
func CheckItems(items []NewItem) error {
	first := make(map[string]int, len(items))
	for i, it := range items {
		if err := checkItem(it); err != nil {
			return fmt.Errorf("item %d: %w", i, err)
		}
		if it.ID == "" {
			continue
		}
		if j, dup := first[it.ID]; dup {
			return fmt.Errorf("%w: items %d and %d both have id %s; an id names one item", profile.ErrDuplicateID, j, i, q(it.ID))
		}
		first[it.ID] = i
	}
	return nil
}

func checkItem(it NewItem) error {
	switch {
	case !utf8.ValidString(it.Text) || strings.TrimSpace(it.Text) == "" || strings.ContainsRune(it.Text, 0):
		return ErrEmptyText
	case strings.ContainsRune(it.Date, 0) || !utf8.ValidString(it.Date):
		return ErrBadDate
	case len(it.Text) > MaxItemBytes:
		return fmt.Errorf("%w: this one has %d", ErrItemTooLarge, len(it.Text))
	case it.ID != "":
		return profile.CheckID(it.ID)
	}
	return nil
}

func (s *Store) writeItems(ctx context.Context, userID string, items []NewItem, mode writeMode) ([]Item, error) {
	if err := CheckItems(items); err != nil {
		return nil, err
	}
	out, err := s.writeTx(ctx, userID, items, mode)
	return out, s.classify(err)
}

// writeTx writes a checked batch in one transaction.
func (s *Store) writeTx(ctx context.Context, userID string, items []NewItem, mode writeMode) ([]Item, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("add items for %s: %w", q(userID), err)
	}
	defer tx.Rollback()
	if ok, err := s.b.bumpRev(ctx, tx, userID); err != nil {
		return nil, fmt.Errorf("add items for %s: %w", q(userID), err)
	} else if !ok {
		return nil, fmt.Errorf("user %s: %w", q(userID), ErrNotFound)
	}
	if mode == modeReplace {
		if _, err := s.exec(ctx, tx, "DELETE FROM items WHERE user_id = ?", userID); err != nil {
			return nil, fmt.Errorf("replace the items of %s: %w", q(userID), err)
		}
	}
	now := time.Now().UTC()
	out := make([]Item, 0, len(items))
	for _, it := range items {
		added, err := s.insertItem(ctx, tx, userID, it, now, mode == modeUpsert)
		if err != nil {
			return nil, err
		}
		out = append(out, added)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("add items for %s: %w", q(userID), err)
	}
	return out, nil
}

// insertItem adds one item in tx; with upsert, an item with its id is
// replaced, else such an item is ErrItemExists.
func (s *Store) insertItem(ctx context.Context, tx *sql.Tx, userID string, it NewItem, now time.Time, upsert bool) (Item, error) {
	id := it.ID
	if id == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		id = hex.EncodeToString(b[:])
	}
	if upsert {
		if _, err := s.exec(ctx, tx, "DELETE FROM items WHERE user_id = ? AND item_id = ?", userID, id); err != nil {
			return Item{}, fmt.Errorf("replace item %s of %s: %w", q(id), q(userID), err)
		}
	}
	fields := it.Fields
	if fields == nil {
		fields = map[string]string{}
	}
	fj, _ := json.Marshal(fields)
	var seq int64
	err := tx.QueryRowContext(ctx, s.b.bind(`INSERT INTO items(user_id, item_id, text, date, fields, added) VALUES(?, ?, ?, ?, ?, ?)
		ON CONFLICT(user_id, item_id) DO NOTHING RETURNING seq`), userID, id, it.Text, it.Date, string(fj), now.Format(time.RFC3339Nano)).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return Item{}, fmt.Errorf("user %s: item %s: %w", q(userID), q(id), ErrItemExists)
	}
	if err != nil {
		return Item{}, fmt.Errorf("add item %s for %s: %w", q(id), q(userID), err)
	}
	return Item{ID: id, Text: it.Text, Date: it.Date, Fields: it.Fields, Added: now, Seq: seq}, nil
}

// q quotes an id for a message (at most a short prefix of it).
func q(id string) string { return profile.QuoteID(id) }
