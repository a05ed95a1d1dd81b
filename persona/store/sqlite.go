package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// This file holds the SQLite backend: one file in WAL mode, written by one
// transaction at a time (BEGIN IMMEDIATE), fsynced at every commit
// (synchronous=FULL).

const sqliteSchema = `
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

// openSQLite opens (creating when missing) the database at path in WAL mode.
func openSQLite(ctx context.Context, path string) (*Store, error) {
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
	s := &Store{db: db, where: path, b: sqliteBackend{}}
	if _, err := db.ExecContext(ctx, sqliteSchema); err != nil {
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

type sqliteBackend struct{}

func (sqliteBackend) bind(query string) string { return query }

// bumpRev takes the next value of the revision table's counter.
func (sqliteBackend) bumpRev(ctx context.Context, tx *sql.Tx, userID string) (bool, error) {
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

// unavailable: a local file is never "unreachable"; its errors are the
// statement's own.
func (sqliteBackend) unavailable(error) bool { return false }

func (sqliteBackend) close() error { return nil }

// integrity runs PRAGMA integrity_check.
func (sqliteBackend) integrity(ctx context.Context, db *sql.DB) (string, error) {
	rows, err := db.QueryContext(ctx, "PRAGMA integrity_check")
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
