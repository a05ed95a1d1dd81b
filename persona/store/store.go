// Package store keeps user profiles: users and their history items (the
// items' embeddings live in persona's embedding cache, one per encoder and
// text, shared with every command). Two databases hold them with one
// schema and one set of rules, written once in this package above a small
// backend interface (sqlite.go, postgres.go):
//
//   - a SQLite file (the default; WAL mode, through the pure-Go
//     modernc.org/sqlite driver), for one host;
//   - PostgreSQL (a postgres:// or postgresql:// URL, through pgx), which
//     several servers share as replicas.
//
// Every change runs in a transaction and is durable once acknowledged
// (SQLite synchronous=FULL, PostgreSQL synchronous_commit=on); a process
// killed during writes leaves the database consistent. Revisions come from
// one counter of the database and are never given out twice, so a
// revision read from the database tells any process whether what it
// cached of a user is current.
package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/pplug/pplug/persona/profile"
)

// Errors.
var (
	ErrNotFound  = errors.New("not found")
	ErrExists    = errors.New("already exists")
	ErrBadUserID = errors.New("a user id is 1 to 128 letters, digits or the characters .-_@: (no spaces)")
	// ErrUnavailable: the database could not be reached (a PostgreSQL
	// server that is down or restarting); the same call may succeed later.
	ErrUnavailable = errors.New("the profile database is unavailable")
)

var userIDPattern = regexp.MustCompile(`^[A-Za-z0-9._\-@:]{1,128}$`)

// ValidUserID reports whether id can name a user.
func ValidUserID(id string) bool { return userIDPattern.MatchString(id) }

// Store is an open profile database. It is safe for concurrent use.
type Store struct {
	db    *sql.DB
	where string // the file, or the URL without its password
	b     backend
}

// backend is what differs between the databases a Store runs on.
type backend interface {
	// bind turns a query's ? placeholders into the database's own.
	bind(query string) string
	// bumpRev gives a user the next revision of the database's one
	// counter in tx; false when there is no such user.
	bumpRev(ctx context.Context, tx *sql.Tx, userID string) (bool, error)
	// unavailable reports whether err means the database could not be
	// reached (as opposed to a refused or failed statement).
	unavailable(err error) bool
	// integrity checks the stored data and says "ok" when it is sound.
	integrity(ctx context.Context, db *sql.DB) (string, error)
	close() error
}

// Open opens (creating the tables when missing) the profile database
// where names: a postgres:// or postgresql:// URL, or else a SQLite file.
func Open(ctx context.Context, where string) (*Store, error) {
	if IsURL(where) {
		return openPostgres(ctx, where)
	}
	return openSQLite(ctx, where)
}

// IsURL reports whether a --profiles value names a PostgreSQL database
// rather than a SQLite file.
func IsURL(where string) bool {
	return strings.HasPrefix(where, "postgres://") || strings.HasPrefix(where, "postgresql://")
}

// Close closes the database.
func (s *Store) Close() error {
	err := s.db.Close()
	if cerr := s.b.close(); err == nil {
		err = cerr
	}
	return err
}

// Path is the database: the SQLite file, or the PostgreSQL URL with its
// password hidden.
func (s *Store) Path() string { return s.where }

// IntegrityCheck checks the stored data and returns its verdict ("ok"
// when sound): SQLite's PRAGMA integrity_check; on PostgreSQL, that no
// item lacks its user and no revision was given out twice.
func (s *Store) IntegrityCheck(ctx context.Context) (string, error) {
	v, err := s.b.integrity(ctx, s.db)
	return v, s.classify(err)
}

// classify marks an error that means the database could not be reached
// as ErrUnavailable (keeping the cause).
func (s *Store) classify(err error) error {
	if err != nil && !errors.Is(err, ErrUnavailable) && s.b.unavailable(err) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// exec, query and queryRow run a query written with ? placeholders.
func (s *Store) exec(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	return tx.ExecContext(ctx, s.b.bind(query), args...)
}

func (s *Store) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	return s.db.QueryRowContext(ctx, s.b.bind(query), args...)
}

// User is a stored user.
type User struct {
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	Items   int       `json:"items"`
	// Rev changes whenever the user's items change. Revisions come from one
	// counter for the whole database and are never given out twice, so a
	// user deleted and created again never has an old revision.
	Rev int64 `json:"-"`
}

// Item is a stored history item.
type Item struct {
	ID     string            `json:"id"`
	Text   string            `json:"text"`
	Date   string            `json:"date,omitempty"`
	Fields map[string]string `json:"fields,omitempty"`
	Added  time.Time         `json:"added"`
	Seq    int64             `json:"-"` // storage order
}

// NewKey returns a fresh user API key.
func NewKey() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return "pk-" + hex.EncodeToString(b[:])
}

func hashKey(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

// CreateUser adds a user with the given API key (stored hashed). It
// returns ErrExists when the id is taken. The user it returns is the one
// the transaction created, also when another caller deletes it at once.
func (s *Store) CreateUser(ctx context.Context, id, key string) (User, error) {
	if !ValidUserID(id) {
		return User{}, fmt.Errorf("user %s: %w", q(id), ErrBadUserID)
	}
	u, err := s.createUser(ctx, id, key)
	if err != nil {
		return User{}, s.classify(err)
	}
	testHookCreated(s, id)
	return u, nil
}

func (s *Store) createUser(ctx context.Context, id, key string) (User, error) {
	u := User{ID: id, Created: time.Now().UTC()}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return User{}, fmt.Errorf("create user %s: %w", q(id), err)
	}
	defer tx.Rollback()
	res, err := s.exec(ctx, tx, "INSERT INTO users(id, key_hash, created) VALUES(?, ?, ?) ON CONFLICT(id) DO NOTHING", id, hashKey(key), u.Created.Format(time.RFC3339Nano))
	if err != nil {
		return User{}, fmt.Errorf("create user %s: %w", q(id), err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return User{}, fmt.Errorf("user %s: %w", q(id), ErrExists)
	}
	if _, err := s.b.bumpRev(ctx, tx, id); err != nil {
		return User{}, fmt.Errorf("create user %s: %w", q(id), err)
	}
	if err := tx.QueryRowContext(ctx, s.b.bind("SELECT rev FROM users WHERE id = ?"), id).Scan(&u.Rev); err != nil {
		return User{}, fmt.Errorf("create user %s: %w", q(id), err)
	}
	if err := tx.Commit(); err != nil {
		return User{}, fmt.Errorf("create user %s: %w", q(id), err)
	}
	return u, nil
}

// testHookCreated runs after CreateUser commits (tests put a concurrent
// delete there).
var testHookCreated = func(*Store, string) {}

// UserByKey returns the id of the user whose API key is key (ErrNotFound
// when none).
func (s *Store) UserByKey(ctx context.Context, key string) (string, error) {
	var id string
	err := s.queryRow(ctx, "SELECT id FROM users WHERE key_hash = ?", hashKey(key)).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	return id, s.classify(err)
}

// User returns a user with its item count.
func (s *Store) User(ctx context.Context, id string) (User, error) {
	var u User
	var created string
	err := s.queryRow(ctx, "SELECT id, created, rev, (SELECT count(*) FROM items WHERE user_id = users.id) FROM users WHERE id = ?", id).
		Scan(&u.ID, &created, &u.Rev, &u.Items)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("user %s: %w", q(id), ErrNotFound)
	}
	if err != nil {
		return User{}, s.classify(fmt.Errorf("read user %s: %w", q(id), err))
	}
	u.Created, _ = time.Parse(time.RFC3339Nano, created)
	return u, nil
}

// DeleteUser removes a user and its items.
func (s *Store) DeleteUser(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, s.b.bind("DELETE FROM users WHERE id = ?"), id)
	if err != nil {
		return s.classify(fmt.Errorf("delete user %s: %w", q(id), err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("user %s: %w", q(id), ErrNotFound)
	}
	return nil
}

// Items returns a user's items in the order they were added.
func (s *Store) Items(ctx context.Context, userID string) ([]Item, error) {
	if _, err := s.User(ctx, userID); err != nil {
		return nil, err
	}
	items, err := s.items(ctx, userID)
	return items, s.classify(err)
}

func (s *Store) items(ctx context.Context, userID string) ([]Item, error) {
	rows, err := s.db.QueryContext(ctx, s.b.bind("SELECT seq, item_id, text, date, fields, added FROM items WHERE user_id = ? ORDER BY seq"), userID)
	if err != nil {
		return nil, fmt.Errorf("read items of %s: %w", q(userID), err)
	}
	defer rows.Close()
	var out []Item
	for rows.Next() {
		var it Item
		var fj, added string
		if err := rows.Scan(&it.Seq, &it.ID, &it.Text, &it.Date, &fj, &added); err != nil {
			return nil, fmt.Errorf("read items of %s: %w", q(userID), err)
		}
		if fj != "{}" {
			_ = json.Unmarshal([]byte(fj), &it.Fields)
		}
		it.Added, _ = time.Parse(time.RFC3339Nano, added)
		out = append(out, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read items of %s: %w", q(userID), err)
	}
	return out, nil
}

// DeleteItem removes one of a user's items.
func (s *Store) DeleteItem(ctx context.Context, userID, itemID string) error {
	return s.classify(s.deleteItem(ctx, userID, itemID))
}

func (s *Store) deleteItem(ctx context.Context, userID, itemID string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("delete item %s of %s: %w", q(itemID), q(userID), err)
	}
	defer tx.Rollback()
	res, err := s.exec(ctx, tx, "DELETE FROM items WHERE user_id = ? AND item_id = ?", userID, itemID)
	if err != nil {
		return fmt.Errorf("delete item %s of %s: %w", q(itemID), q(userID), err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("item %s of user %s: %w", q(itemID), q(userID), ErrNotFound)
	}
	if _, err := s.b.bumpRev(ctx, tx, userID); err != nil {
		return fmt.Errorf("delete item %s of %s: %w", q(itemID), q(userID), err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("delete item %s of %s: %w", q(itemID), q(userID), err)
	}
	return nil
}

// FromProfile turns a loaded profile's items into items to add (id, text,
// date and the other fields).
func FromProfile(p *profile.Profile) []NewItem {
	out := make([]NewItem, len(p.Items))
	for i, it := range p.Items {
		n := NewItem{ID: it.ID, Text: it.Text, Fields: it.Fields}
		if it.HasDate() {
			n.Date = it.Date.Format(time.RFC3339)
		}
		out[i] = n
	}
	return out
}

// ProfileItems turns stored items into profile items (in order), as the
// persona code takes them.
func ProfileItems(items []Item) []profile.Item {
	out := make([]profile.Item, len(items))
	for i, it := range items {
		p := profile.Item{ID: it.ID, Index: i, Text: it.Text, Fields: it.Fields}
		if it.Date != "" {
			p.Date, _ = time.Parse(time.RFC3339, it.Date)
		}
		out[i] = p
	}
	return out
}
