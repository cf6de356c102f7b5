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
// service; it spells "accounts").
const migrationLockKey = 0x6163636f756e7473

// Migration bookkeeping tables of their own: on Postgres the accounts and
// history services may share a database, and bun's default tables would
// mix their migrations up.
const (
	migrationsTable      = "accounts_migrations"
	migrationsLocksTable = "accounts_migration_locks"
)

// Migrate brings the schema up to date. Instances starting together on one
// Postgres database wait for each other instead of racing on CREATE TABLE.
func (s *Store) Migrate(ctx context.Context) error {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	migrations := migrate.NewMigrations()
	if err := migrations.Discover(sub); err != nil {
		return fmt.Errorf("discover migrations: %w", err)
	}
	timestamp := "TIMESTAMP"
	if s.dialect == postgres {
		timestamp = "TIMESTAMPTZ"
	}
	migrator := migrate.NewMigrator(s.db, migrations,
		migrate.WithTableName(migrationsTable),
		migrate.WithLocksTableName(migrationsLocksTable),
		migrate.WithMarkAppliedOnSuccess(true),
		migrate.WithTemplateData(map[string]string{"Timestamp": timestamp}),
	)

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
