package store

import (
	"context"
	"embed"
	"fmt"
	"io/fs"

	"github.com/natschat/chat/shared/sqldb"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

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
	return sqldb.Migrate(ctx, s.db, sub, sqldb.MigrateOptions{
		// Any constant unique to this service; it spells "accounts".
		LockKey:    0x6163636f756e7473,
		Table:      migrationsTable,
		LocksTable: migrationsLocksTable,
	})
}
