package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	"github.com/uptrace/bun/driver/pgdriver"
	_ "modernc.org/sqlite" // pure Go, so the binary builds with CGO_ENABLED=0
)

// ErrConfig is wrapped by the errors of Open that retrying cannot fix: the
// options themselves are wrong.
var ErrConfig = errors.New("bad database configuration")

// Options chooses and tunes the database.
type Options struct {
	// URL selects Postgres when it starts with postgres:// or
	// postgresql://. Empty means SQLite at SQLitePath; anything else is an
	// error rather than a silent fallback to SQLite.
	URL string
	// SQLitePath is the SQLite file; its directory is created.
	SQLitePath string
	// SQLiteBusyTimeout is how long a statement waits for a lock held by
	// another connection or process before failing; 0 means 5s.
	SQLiteBusyTimeout time.Duration
}

// Open connects to the database o describes and checks that it answers. It
// does not migrate: call Migrate.
func Open(ctx context.Context, o Options) (*Store, error) {
	var (
		s   *Store
		err error
	)
	switch {
	case strings.HasPrefix(o.URL, "postgres://"), strings.HasPrefix(o.URL, "postgresql://"):
		s, err = openPostgres(o.URL)
	case o.URL == "":
		s, err = openSQLite(o.SQLitePath, o.SQLiteBusyTimeout)
	default:
		return nil, fmt.Errorf("%w: database url: want postgres:// or postgresql://, or empty for SQLite, got %q", ErrConfig, redact(o.URL))
	}
	if err != nil {
		return nil, err
	}
	if err := s.Ping(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func openPostgres(dsn string) (s *Store, err error) {
	// pgdriver panics on a DSN it cannot parse; a typo in an environment
	// variable deserves an error message, not a stack trace.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: parse database url %s: %v", ErrConfig, redact(dsn), r)
		}
	}()
	sqldb := sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(dsn)))
	sqldb.SetMaxOpenConns(10)
	sqldb.SetMaxIdleConns(10)
	// Connections broken by a database restart are replaced without waiting
	// for every one of them to fail once.
	sqldb.SetConnMaxIdleTime(time.Minute)
	return &Store{db: bun.NewDB(sqldb, pgdialect.New()), dialect: postgres}, nil
}

func openSQLite(path string, busy time.Duration) (*Store, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: sqlite path is empty", ErrConfig)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create sqlite directory: %w", err)
	}
	if busy <= 0 {
		busy = 5 * time.Second
	}
	q := url.Values{}
	q.Set("_busy_timeout", fmt.Sprint(busy.Milliseconds()))
	// WAL lets readers run beside the writer; synchronous=FULL because a
	// session is handed out right after its commit, and a password change
	// must not come back after a power cut.
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "FULL")
	// BEGIN IMMEDIATE takes the write lock up front, so two writers queue on
	// the busy timeout instead of failing on a lock upgrade.
	q.Set("_txlock", "immediate")
	sqldb, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("%w: open sqlite %s: %v", ErrConfig, path, err)
	}
	// SQLite has one writer anyway; one connection also keeps every
	// statement on the pragmas above.
	sqldb.SetMaxOpenConns(1)
	return &Store{db: bun.NewDB(sqldb, sqlitedialect.New()), dialect: sqlite}, nil
}

// redact hides a password in a database URL for error messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable url)"
	}
	return u.Redacted()
}
