// Package sqldb opens the Postgres or SQLite database of a service through
// bun and migrates it. It holds the plumbing the services' stores share;
// their tables and queries stay in each service.
package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	"github.com/uptrace/bun/driver/pgdriver"
	_ "modernc.org/sqlite" // pure Go, so the binary builds with CGO_ENABLED=0
)

// ErrConfig is wrapped by the errors of Open that retrying cannot fix: the
// configuration itself is wrong.
var ErrConfig = errors.New("bad database configuration")

// Engine names the database behind a DB. (Not "dialect": bun's DB has a
// Dialect method already.)
type Engine string

const (
	Postgres Engine = "postgres"
	SQLite   Engine = "sqlite"
)

// Config chooses and tunes the database.
type Config struct {
	// URL selects Postgres when it starts with postgres:// or
	// postgresql://. Empty means SQLite at SQLitePath; anything else is an
	// error rather than a silent fallback to SQLite.
	URL string
	// SQLitePath is the SQLite file; its directory is created.
	SQLitePath string
	// SQLiteBusyTimeout is how long a statement waits for a lock held by
	// another connection or process before failing; 0 means 5s.
	SQLiteBusyTimeout time.Duration
	// SQLiteSynchronous is SQLite's synchronous pragma (FULL, NORMAL...);
	// empty means FULL.
	SQLiteSynchronous string
}

// DB is an open database: bun's handle and which engine is behind it. It
// is safe for concurrent use.
type DB struct {
	*bun.DB
	Engine Engine

	closeOnce sync.Once
	closeErr  error
}

// Open connects to the database c describes and checks that it answers. It
// does not migrate: call Migrate.
func Open(ctx context.Context, c Config) (*DB, error) {
	var (
		db  *DB
		err error
	)
	switch {
	case strings.HasPrefix(c.URL, "postgres://"), strings.HasPrefix(c.URL, "postgresql://"):
		db, err = openPostgres(c.URL)
	case c.URL == "":
		db, err = openSQLite(c)
	default:
		return nil, fmt.Errorf("%w: database url: want postgres:// or postgresql://, or empty for SQLite, got %q", ErrConfig, redact(c.URL))
	}
	if err != nil {
		return nil, err
	}
	if err := db.Ping(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.PingContext(ctx); err != nil {
		return fmt.Errorf("ping %s: %w", db.Engine, err)
	}
	return nil
}

// Close closes the database; calling it again returns the first result.
func (db *DB) Close() error {
	db.closeOnce.Do(func() { db.closeErr = db.DB.Close() })
	return db.closeErr
}

func openPostgres(dsn string) (db *DB, err error) {
	// pgdriver panics on a DSN it cannot parse; a typo in an environment
	// variable deserves an error message, not a stack trace.
	defer func() {
		if r := recover(); r != nil {
			// A *url.Error quotes the whole URL, password and all; its
			// inner error says what is wrong without it.
			reason := fmt.Sprint(r)
			var uerr *url.Error
			if e, ok := r.(error); ok && errors.As(e, &uerr) {
				reason = uerr.Err.Error()
			}
			err = fmt.Errorf("%w: parse database url %s: %s", ErrConfig, redact(dsn), reason)
		}
	}()
	sqldb := sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(dsn)))
	sqldb.SetMaxOpenConns(10)
	sqldb.SetMaxIdleConns(10)
	// Connections broken by a database restart are replaced without waiting
	// for every one of them to fail once.
	sqldb.SetConnMaxIdleTime(time.Minute)
	return &DB{DB: bun.NewDB(sqldb, pgdialect.New()), Engine: Postgres}, nil
}

func openSQLite(c Config) (*DB, error) {
	if c.SQLitePath == "" {
		return nil, fmt.Errorf("%w: sqlite path is empty", ErrConfig)
	}
	if err := os.MkdirAll(filepath.Dir(c.SQLitePath), 0o755); err != nil {
		return nil, fmt.Errorf("create sqlite directory: %w", err)
	}
	busy := c.SQLiteBusyTimeout
	if busy <= 0 {
		busy = 5 * time.Second
	}
	synchronous := c.SQLiteSynchronous
	if synchronous == "" {
		synchronous = "FULL"
	}
	q := url.Values{}
	q.Set("_busy_timeout", fmt.Sprint(busy.Milliseconds()))
	// WAL lets readers run beside the writer.
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", synchronous)
	// BEGIN IMMEDIATE takes the write lock up front, so two writers queue on
	// the busy timeout instead of failing on a lock upgrade.
	q.Set("_txlock", "immediate")
	sqldb, err := sql.Open("sqlite", "file:"+c.SQLitePath+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("%w: open sqlite %s: %v", ErrConfig, c.SQLitePath, err)
	}
	// SQLite has one writer anyway; one connection also keeps every
	// statement on the pragmas above.
	sqldb.SetMaxOpenConns(1)
	return &DB{DB: bun.NewDB(sqldb, sqlitedialect.New()), Engine: SQLite}, nil
}

// redact hides a password in a database URL for error messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable url)"
	}
	return u.Redacted()
}
