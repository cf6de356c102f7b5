// Package pgtest gives each test its own Postgres database on the server
// named by TEST_DATABASE_URL, and lets a test cut it off to simulate an
// outage.
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/uptrace/bun/driver/pgdriver"

	"github.com/natschat/chat/shared/testkit"
)

// DB is a fresh database that is dropped when the test ends.
type DB struct {
	URL   string // connection URL of the fresh database
	Name  string
	admin *sql.DB
}

// Postgres creates a randomly named database for t. Without
// TEST_DATABASE_URL the test is skipped, except in CI (CI=true), where a
// missing database is a failure rather than a silent skip.
func Postgres(t testing.TB) *DB {
	t.Helper()
	adminURL := os.Getenv("TEST_DATABASE_URL")
	if adminURL == "" {
		testkit.Missing(t, "TEST_DATABASE_URL", "set it to a Postgres server, e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable,")
	}
	u, err := url.Parse(adminURL)
	if err != nil {
		t.Fatalf("parse TEST_DATABASE_URL: %v", err)
	}
	admin := sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(adminURL)))
	t.Cleanup(func() { admin.Close() })

	b := make([]byte, 6)
	rand.Read(b)
	name := "chat_test_" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	db := &DB{Name: name, admin: admin}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		db.exec(ctx, "ALTER DATABASE "+name+" ALLOW_CONNECTIONS true")
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	db.URL = u.String()
	return db
}

// Cut makes the database unavailable: new connections are refused and the
// open ones are terminated, as in a database outage.
func (db *DB) Cut(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.exec(ctx, "ALTER DATABASE "+db.Name+" ALLOW_CONNECTIONS false"); err != nil {
		t.Fatalf("cut database: %v", err)
	}
	if err := db.exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '"+db.Name+"' AND pid <> pg_backend_pid()"); err != nil {
		t.Fatalf("terminate connections: %v", err)
	}
}

// Restore ends an outage that Cut started.
func (db *DB) Restore(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.exec(ctx, "ALTER DATABASE "+db.Name+" ALLOW_CONNECTIONS true"); err != nil {
		t.Fatalf("restore database: %v", err)
	}
}

func (db *DB) exec(ctx context.Context, query string) error {
	if _, err := db.admin.ExecContext(ctx, query); err != nil {
		return fmt.Errorf("%s: %w", query, err)
	}
	return nil
}
