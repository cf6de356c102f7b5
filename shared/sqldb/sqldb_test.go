package sqldb

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/natschat/chat/shared/testkit/pgtest"
)

func TestOpenRejectsBadConfig(t *testing.T) {
	for name, c := range map[string]Config{
		"mysql url":         {URL: "mysql://user:secret@host/db"},
		"empty sqlite path": {},
		"unparsable url":    {URL: "postgres://user:secret@host:port/db"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Open(context.Background(), c)
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("err %v, want ErrConfig", err)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("got %q, want the password hidden", err)
			}
		})
	}
	_, err := Open(context.Background(), Config{URL: "mysql://user:secret@host/db"})
	if !strings.Contains(err.Error(), "mysql") {
		t.Errorf("got %q, want the scheme named", err)
	}
}

// TestSQLitePragmas: the settings in the DSN reach the connection.
func TestSQLitePragmas(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, Config{
		SQLitePath:        filepath.Join(t.TempDir(), "sub", "dir", "x.db"),
		SQLiteBusyTimeout: 1234 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if db.Engine != SQLite {
		t.Errorf("dialect %q, want sqlite", db.Engine)
	}
	for pragma, want := range map[string]string{
		"journal_mode": "wal",
		"synchronous":  "2", // FULL
		"busy_timeout": "1234",
	} {
		var got string
		if err := db.NewRaw("PRAGMA "+pragma).Scan(ctx, &got); err != nil {
			t.Fatalf("pragma %s: %v", pragma, err)
		}
		if got != want {
			t.Errorf("pragma %s = %q, want %q", pragma, got, want)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Errorf("second close: %v, want the first result", err)
	}
}

var testMigrations = fstest.MapFS{
	"20260101000001_things.tx.up.sql": {Data: []byte(
		"CREATE TABLE things (dialect TEXT NOT NULL, at {{.Timestamp}} NOT NULL);\n" +
			"--bun:split\n" +
			"INSERT INTO things (dialect, at) VALUES ('{{.Dialect}}', CURRENT_TIMESTAMP);\n")},
	"20260101000001_things.tx.down.sql": {Data: []byte("DROP TABLE things;\n")},
}

// TestMigrate migrates a database twice, from one handle and then from
// instances starting together, which must wait for each other on Postgres
// (SQLite has no such lock: one file has one process). Each migration is
// applied once, recorded in tables of the names given.
func TestMigrate(t *testing.T) {
	backends := map[string]func(t *testing.T) (c Config, instances int){
		"sqlite": func(t *testing.T) (Config, int) {
			return Config{SQLitePath: filepath.Join(t.TempDir(), "x.db")}, 1
		},
		"postgres": func(t *testing.T) (Config, int) { return Config{URL: pgtest.Postgres(t).URL}, 4 },
	}
	opts := MigrateOptions{LockKey: 0x74657374, Table: "x_migrations", LocksTable: "x_migration_locks"}
	for name, config := range backends {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			c, instances := config(t)
			dbs := make([]*DB, instances)
			for i := range dbs {
				db, err := Open(ctx, c)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
				dbs[i] = db
			}
			var wg sync.WaitGroup
			errs := make([]error, instances)
			for i, db := range dbs {
				wg.Go(func() { errs[i] = Migrate(ctx, db, testMigrations, opts) })
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("instance %d: %v", i, err)
				}
			}
			if err := Migrate(ctx, dbs[0], testMigrations, opts); err != nil {
				t.Errorf("migrate again: %v", err)
			}

			db := dbs[0]
			var dialects []string
			if err := db.NewSelect().Table("things").Column("dialect").Scan(ctx, &dialects); err != nil {
				t.Fatal(err)
			}
			if len(dialects) != 1 || dialects[0] != name {
				t.Errorf("things: %v, want one row of %q", dialects, name)
			}
			var applied int
			if err := db.NewSelect().TableExpr(opts.Table).ColumnExpr("count(*)").Scan(ctx, &applied); err != nil {
				t.Fatal(err)
			}
			if applied != 1 {
				t.Errorf("%d migrations recorded in %s, want 1", applied, opts.Table)
			}
			var at time.Time
			if err := db.NewSelect().Table("things").Column("at").Scan(ctx, &at); err != nil || at.IsZero() {
				t.Errorf("timestamp column: %v, %v", at, err)
			}
		})
	}
}
