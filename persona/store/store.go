// Package store keeps user profiles in one SQLite file (WAL mode, through
// the pure-Go modernc.org/sqlite driver): users and their history items
// (the items' embeddings live in persona's embedding cache, one per encoder
// and text, shared with every command). Every change runs in a transaction; a process
// killed during writes leaves the file consistent (SQLite's WAL recovery).
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
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/pplug/pplug/persona/profile"
)

// Errors.
var (
	ErrNotFound  = errors.New("not found")
	ErrExists    = errors.New("already exists")
	ErrBadUserID = errors.New("a user id is 1 to 128 letters, digits or the characters .-_@: (no spaces)")
)

var userIDPattern = regexp.MustCompile(`^[A-Za-z0-9._\-@:]{1,128}$`)

// ValidUserID reports whether id can name a user.
func ValidUserID(id string) bool { return userIDPattern.MatchString(id) }

// Store is an open profile database. It is safe for concurrent use.
type Store struct {
	db   *sql.DB
	path string
}

const schema = `
CREATE TABLE IF NOT EXISTS users (
	id       TEXT PRIMARY KEY,
	key_hash TEXT NOT NULL,
	created  TEXT NOT NULL,
	rev      INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS items (
	seq     INTEGER PRIMARY KEY AUTOINCREMENT,
	user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	item_id TEXT NOT NULL,
	text    TEXT NOT NULL,
	date    TEXT NOT NULL DEFAULT '',
	fields  TEXT NOT NULL DEFAULT '{}',
	added   TEXT NOT NULL,
	UNIQUE (user_id, item_id)
);
CREATE INDEX IF NOT EXISTS items_user ON items(user_id, seq);
CREATE INDEX IF NOT EXISTS users_key ON users(key_hash);
CREATE TABLE IF NOT EXISTS revision (
	one INTEGER PRIMARY KEY CHECK (one = 1),
	last INTEGER NOT NULL
);
INSERT OR IGNORE INTO revision(one, last) SELECT 1, coalesce(max(rev), 0) FROM users;
`

// Open opens (creating when missing) the database at path in WAL mode.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("profile database: no path given")
	}
	if err := checkPlace(path); err != nil {
		return nil, fmt.Errorf("profile database %s: %w", path, err)
	}
	q := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "busy_timeout(10000)", "foreign_keys(1)", "synchronous(FULL)"} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("profile database %s: %w", path, err)
	}
	s := &Store{db: db, path: path}
	if _, err := db.ExecContext(ctx, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("profile database %s: %w", path, schemaError(path, err))
	}
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || !strings.EqualFold(mode, "wal") {
		db.Close()
		return nil, fmt.Errorf("profile database %s: cannot switch to WAL mode (got %q, %v): put it on a local file system", path, mode, err)
	}
	return s, nil
}

// checkPlace says why a database at path could not be opened or written,
// before SQLite tries and reports every such case as "unable to open": a
// missing folder, a folder that is not one or cannot be written (WAL mode
// keeps PATH-wal and PATH-shm beside the file), a database file that is a
// folder or cannot be written.
func checkPlace(path string) error {
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("the folder %s does not exist: create it (mkdir -p %s) or put the database elsewhere", dir, dir)
	case err != nil:
		return fmt.Errorf("the folder %s: %w", dir, err)
	case !fi.IsDir():
		return fmt.Errorf("%s is not a folder: put the database in a folder", dir)
	}
	if err := checkFile(path); err != nil {
		return err
	}
	probe, err := os.CreateTemp(dir, ".pplug-write-check-*")
	if err != nil {
		return fmt.Errorf("cannot create files in %s (%w): SQLite keeps its journal beside the database; make the folder writable or put the database in a writable place", dir, unwrapPath(err))
	}
	probe.Close()
	os.Remove(probe.Name())
	return nil
}

// checkFile checks an existing database file: a file that can be opened
// for writing. A missing one is fine (Open creates it).
func checkFile(path string) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.IsDir():
		return fmt.Errorf("is a folder: give a file in it (%s)", filepath.Join(path, "profiles.db"))
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("cannot be written (%w): make it writable or copy it to a writable place", unwrapPath(err))
	}
	return f.Close()
}

// unwrapPath drops the operation and path that a file system error
// repeats.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// sqliteHeader starts every SQLite database file.
const sqliteHeader = "SQLite format 3\x00"

// schemaError says why the tables could not be made: the file is not a
// SQLite database, or a database of something else.
func schemaError(path string, err error) error {
	head := make([]byte, len(sqliteHeader))
	f, ferr := os.Open(path)
	if ferr == nil {
		n, _ := io.ReadFull(f, head)
		head = head[:n]
		f.Close()
	}
	switch {
	case ferr == nil && len(head) > 0 && string(head) != sqliteHeader[:len(head)]:
		return fmt.Errorf("not a SQLite database (%w): is it the right file? give another path, or move it away to start a new database", err)
	case ferr == nil && len(head) == len(sqliteHeader):
		return fmt.Errorf("a SQLite database that is not a pplug profile database (create tables: %w): give another path, or move it away to start a new database", err)
	}
	return fmt.Errorf("create tables: %w", err)
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Path is the database file.
func (s *Store) Path() string { return s.path }

// IntegrityCheck runs PRAGMA integrity_check and returns its verdict ("ok"
// when the file is sound).
func (s *Store) IntegrityCheck(ctx context.Context) (string, error) {
	rows, err := s.db.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		return "", err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			return "", err
		}
		out = append(out, r)
	}
	return strings.Join(out, "; "), rows.Err()
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
	u := User{ID: id, Created: time.Now().UTC()}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return User{}, fmt.Errorf("create user %s: %w", q(id), err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, "INSERT INTO users(id, key_hash, created) VALUES(?, ?, ?) ON CONFLICT(id) DO NOTHING", id, hashKey(key), u.Created.Format(time.RFC3339Nano))
	if err != nil {
		return User{}, fmt.Errorf("create user %s: %w", q(id), err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return User{}, fmt.Errorf("user %s: %w", q(id), ErrExists)
	}
	if _, err := bumpRev(ctx, tx, id); err != nil {
		return User{}, fmt.Errorf("create user %s: %w", q(id), err)
	}
	if err := tx.QueryRowContext(ctx, "SELECT rev FROM users WHERE id = ?", id).Scan(&u.Rev); err != nil {
		return User{}, fmt.Errorf("create user %s: %w", q(id), err)
	}
	if err := tx.Commit(); err != nil {
		return User{}, fmt.Errorf("create user %s: %w", q(id), err)
	}
	testHookCreated(s, id)
	return u, nil
}

// testHookCreated runs after CreateUser commits (tests put a concurrent
// delete there).
var testHookCreated = func(*Store, string) {}

// UserByKey returns the id of the user whose API key is key (ErrNotFound
// when none).
func (s *Store) UserByKey(ctx context.Context, key string) (string, error) {
	var id string
	err := s.db.QueryRowContext(ctx, "SELECT id FROM users WHERE key_hash = ?", hashKey(key)).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	return id, err
}

// User returns a user with its item count.
func (s *Store) User(ctx context.Context, id string) (User, error) {
	var u User
	var created string
	err := s.db.QueryRowContext(ctx, "SELECT id, created, rev, (SELECT count(*) FROM items WHERE user_id = users.id) FROM users WHERE id = ?", id).
		Scan(&u.ID, &created, &u.Rev, &u.Items)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("user %s: %w", q(id), ErrNotFound)
	}
	if err != nil {
		return User{}, fmt.Errorf("read user %s: %w", q(id), err)
	}
	u.Created, _ = time.Parse(time.RFC3339Nano, created)
	return u, nil
}

// DeleteUser removes a user and its items.
func (s *Store) DeleteUser(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, "DELETE FROM users WHERE id = ?", id)
	if err != nil {
		return fmt.Errorf("delete user %s: %w", q(id), err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("user %s: %w", q(id), ErrNotFound)
	}
	return nil
}

// bumpRev gives a user the next revision of the database's counter; ok is
// false when there is no such user.
func bumpRev(ctx context.Context, tx *sql.Tx, userID string) (ok bool, err error) {
	if _, err := tx.ExecContext(ctx, "UPDATE revision SET last = last + 1 WHERE one = 1"); err != nil {
		return false, err
	}
	res, err := tx.ExecContext(ctx, "UPDATE users SET rev = (SELECT last FROM revision WHERE one = 1) WHERE id = ?", userID)
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// Items returns a user's items in the order they were added.
func (s *Store) Items(ctx context.Context, userID string) ([]Item, error) {
	if _, err := s.User(ctx, userID); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, "SELECT seq, item_id, text, date, fields, added FROM items WHERE user_id = ? ORDER BY seq", userID)
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
	return out, rows.Err()
}

// DeleteItem removes one of a user's items.
func (s *Store) DeleteItem(ctx context.Context, userID, itemID string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, "DELETE FROM items WHERE user_id = ? AND item_id = ?", userID, itemID)
	if err != nil {
		return fmt.Errorf("delete item %s of %s: %w", q(itemID), q(userID), err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("item %s of user %s: %w", q(itemID), q(userID), ErrNotFound)
	}
	if _, err := bumpRev(ctx, tx, userID); err != nil {
		return err
	}
	return tx.Commit()
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
