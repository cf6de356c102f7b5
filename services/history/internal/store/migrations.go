package store

import (
	"context"
	"embed"
	"fmt"
	"io/fs"

	"github.com/uptrace/bun/migrate"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationLockKey is the Postgres advisory lock that serialises migrations
// of instances starting at the same time (any constant unique to this
// service; it spells "history").
const migrationLockKey = 0x686973746f7279

// Migrate brings the schema up to date. Instances starting together on one
// Postgres database wait for each other instead of racing on CREATE TABLE.
func (s *Store) Migrate(ctx context.Context) error {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	return s.migrate(ctx, sub)
}

// migrate applies the migrations in fsys; tests give it fewer to start
// from an older schema.
func (s *Store) migrate(ctx context.Context, sub fs.FS) error {
	migrator, err := s.migrator(sub)
	if err != nil {
		return err
	}

	if s.dialect == postgres {
		// The lock belongs to one session, so hold it on a dedicated
		// connection; it is released when that connection ends, even if
		// this process dies mid-migration.
		conn, err := s.db.Conn(ctx)
		if err != nil {
			return fmt.Errorf("migration lock: %w", err)
		}
		defer conn.Close()
		if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock(?)", migrationLockKey); err != nil {
			return fmt.Errorf("migration lock: %w", err)
		}
		defer conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(?)", migrationLockKey)
	}

	if err := migrator.Init(ctx); err != nil {
		return fmt.Errorf("init migrations: %w", err)
	}
	if _, err := migrator.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// migrator runs the migrations in sub, rendered for the store's dialect.
func (s *Store) migrator(sub fs.FS) (*migrate.Migrator, error) {
	migrations := migrate.NewMigrations()
	if err := migrations.Discover(sub); err != nil {
		return nil, fmt.Errorf("discover migrations: %w", err)
	}
	timestamp := "TIMESTAMP"
	if s.dialect == postgres {
		timestamp = "TIMESTAMPTZ"
	}
	return migrate.NewMigrator(s.db, migrations,
		migrate.WithMarkAppliedOnSuccess(true),
		migrate.WithTemplateData(map[string]string{"Timestamp": timestamp, "Dialect": string(s.dialect)}),
	), nil
}
