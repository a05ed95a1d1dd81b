package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

// This file holds the PostgreSQL backend: database/sql over a pgx pool
// (pgxpool opens new connections when the server comes back after an
// outage). The schema is the SQLite one in PostgreSQL's words; revisions
// come from one sequence, which never gives a value twice, also across a
// rolled-back transaction or a crash. Every session commits synchronously
// (synchronous_commit=on whatever the server's default), so a write is
// acknowledged only once the server has flushed it to its WAL.

var pgSchema = []string{
	`CREATE TABLE IF NOT EXISTS users (
	id       TEXT PRIMARY KEY,
	key_hash TEXT NOT NULL,
	created  TEXT NOT NULL,
	rev      BIGINT NOT NULL DEFAULT 0
)`,
	`CREATE TABLE IF NOT EXISTS items (
	seq     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	item_id TEXT NOT NULL,
	text    TEXT NOT NULL,
	date    TEXT NOT NULL DEFAULT '',
	fields  TEXT NOT NULL DEFAULT '{}',
	added   TEXT NOT NULL,
	UNIQUE (user_id, item_id)
)`,
	`CREATE INDEX IF NOT EXISTS items_user ON items(user_id, seq)`,
	`CREATE INDEX IF NOT EXISTS users_key ON users(key_hash)`,
	// Made with the tables, never reset (a setval racing another
	// replica's nextval could give a revision twice).
	`CREATE SEQUENCE IF NOT EXISTS pplug_revision`,
}

// pgShapeChecks fail when tables of these names are another program's.
var pgShapeChecks = []string{
	"SELECT id, key_hash, created, rev FROM users LIMIT 0",
	"SELECT seq, user_id, item_id, text, date, fields, added FROM items LIMIT 0",
}

// pgSchemaLock serialises the schema statements of replicas that start
// together (CREATE ... IF NOT EXISTS is not safe against a concurrent one).
const pgSchemaLock = 0x70706c7567 // "pplug"

// pgConnectTimeout bounds one connection attempt, so that a request made
// while the database is down fails soon with ErrUnavailable.
const pgConnectTimeout = 5 * time.Second

type pgBackend struct {
	pool *pgxpool.Pool
}

// CheckURL says why a postgres:// URL cannot name a database (nil when
// it can), before any connection is tried.
func CheckURL(rawURL string) error {
	_, err := parseURL(rawURL)
	return err
}

func parseURL(rawURL string) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(rawURL)
	if err != nil {
		return nil, fmt.Errorf("profile database %s: %w: give a URL like postgres://USER:PASSWORD@HOST:5432/DATABASE", redactURL(rawURL), err)
	}
	return cfg, nil
}

// openPostgres connects to the database at a postgres:// URL and makes
// the tables when missing.
func openPostgres(ctx context.Context, rawURL string) (*Store, error) {
	where := redactURL(rawURL)
	cfg, err := parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = "pplug"
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = pgConnectTimeout
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("profile database %s: %w", where, err)
	}
	s := &Store{db: stdlib.OpenDBFromPool(pool), where: where, b: &pgBackend{pool: pool}}
	if err := s.pgMigrate(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("profile database %s: %w", where, err)
	}
	return s, nil
}

// pgMigrate makes the tables (once, under an advisory lock) and checks
// that tables of these names are pplug's.
func (s *Store) pgMigrate(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("cannot reach it (%w): start the database or correct the URL", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", pgSchemaLock); err != nil {
		return fmt.Errorf("lock the schema: %w", err)
	}
	for _, stmt := range append(pgSchema, pgShapeChecks...) {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("create tables (%w): its users or items table is not a pplug profile table; give another database, or a schema of pplug's own (?search_path=NAME)", err)
		}
	}
	return tx.Commit()
}

// redactURL is the URL with its password hidden (or only its scheme when
// it does not parse).
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		scheme, _, _ := strings.Cut(raw, "://")
		return scheme + "://(a URL that does not parse)"
	}
	return u.Redacted()
}

// bind numbers the ? placeholders: $1, $2, ...
func (*pgBackend) bind(query string) string {
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (*pgBackend) bumpRev(ctx context.Context, tx *sql.Tx, userID string) (bool, error) {
	res, err := tx.ExecContext(ctx, "UPDATE users SET rev = nextval('pplug_revision') WHERE id = $1", userID)
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// unavailable: no connection could be made, or the one in use broke (the
// server shut down, restarted or went away).
func (*pgBackend) unavailable(err error) bool {
	var ce *pgconn.ConnectError
	var pe *pgconn.PgError
	var ne net.Error
	switch {
	case errors.As(err, &pe):
		// Class 08: connection exception; 57P01-03: the server is
		// shutting down or starting; 53300: too many connections.
		return strings.HasPrefix(pe.Code, "08") || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03" || pe.Code == "53300"
	case errors.As(err, &ce), errors.As(err, &ne), errors.Is(err, driver.ErrBadConn),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return true
	}
	return pgconn.SafeToRetry(err)
}

// integrity checks what PostgreSQL's constraints do not state: no two
// users share a revision, and no user's revision is past the sequence.
func (*pgBackend) integrity(ctx context.Context, db *sql.DB) (string, error) {
	var shared, ahead, orphans int
	err := db.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM (SELECT rev FROM users GROUP BY rev HAVING count(*) > 1) d),
		(SELECT count(*) FROM users WHERE rev > (SELECT last_value FROM pplug_revision)),
		(SELECT count(*) FROM items i WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = i.user_id))`).Scan(&shared, &ahead, &orphans)
	if err != nil {
		return "", err
	}
	var bad []string
	if shared > 0 {
		bad = append(bad, fmt.Sprintf("%d revisions given to several users", shared))
	}
	if ahead > 0 {
		bad = append(bad, fmt.Sprintf("%d users with a revision past the sequence", ahead))
	}
	if orphans > 0 {
		bad = append(bad, fmt.Sprintf("%d items without their user", orphans))
	}
	if len(bad) == 0 {
		return "ok", nil
	}
	return strings.Join(bad, "; "), nil
}

func (b *pgBackend) close() error {
	b.pool.Close()
	return nil
}
