package store

import (
	"context"
	"embed"
	"fmt"
	"io/fs"

	"github.com/uptrace/bun/migrate"

	"github.com/natschat/chat/shared/sqldb"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrateOptions: the advisory lock key is any constant unique to this
// service (it spells "history"). The bookkeeping keeps bun's default table
// names, which the existing history databases use.
var migrateOptions = sqldb.MigrateOptions{LockKey: 0x686973746f7279}

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
	return sqldb.Migrate(ctx, s.db, sub, migrateOptions)
}

// migrator runs the migrations in sub, rendered for the store's dialect.
func (s *Store) migrator(sub fs.FS) (*migrate.Migrator, error) {
	return sqldb.NewMigrator(s.db, sub, migrateOptions)
}
