package sqldb

import (
	"context"
	"fmt"
	"io/fs"

	"github.com/uptrace/bun/migrate"
)

// MigrateOptions names what is a service's own in its migrations.
type MigrateOptions struct {
	// LockKey is the Postgres advisory lock that serialises the migrations
	// of instances starting at the same time: a constant unique to the
	// service.
	LockKey int64
	// Table and LocksTable are bun's bookkeeping tables; empty means bun's
	// defaults. Services sharing one database need names of their own.
	Table, LocksTable string
}

// Migrate applies the migrations in fsys (bun's file names, at its root).
// Instances starting together on one Postgres database wait for each other
// instead of racing on CREATE TABLE.
func Migrate(ctx context.Context, db *DB, fsys fs.FS, o MigrateOptions) error {
	migrator, err := NewMigrator(db, fsys, o)
	if err != nil {
		return err
	}

	if db.Engine == Postgres {
		// The lock belongs to one session, so hold it on a dedicated
		// connection; it is released when that connection ends, even if
		// this process dies mid-migration.
		conn, err := db.Conn(ctx)
		if err != nil {
			return fmt.Errorf("migration lock: %w", err)
		}
		defer conn.Close()
		if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock(?)", o.LockKey); err != nil {
			return fmt.Errorf("migration lock: %w", err)
		}
		defer conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(?)", o.LockKey)
	}

	if err := migrator.Init(ctx); err != nil {
		return fmt.Errorf("init migrations: %w", err)
	}
	if _, err := migrator.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// NewMigrator gives the migrator Migrate uses, for what Migrate does not do
// (a rollback in a test). The .sql files are Go templates: .Timestamp is the
// dialect's timestamp type, .Dialect is "postgres" or "sqlite".
func NewMigrator(db *DB, fsys fs.FS, o MigrateOptions) (*migrate.Migrator, error) {
	migrations := migrate.NewMigrations()
	if err := migrations.Discover(fsys); err != nil {
		return nil, fmt.Errorf("discover migrations: %w", err)
	}
	timestamp := "TIMESTAMP"
	if db.Engine == Postgres {
		timestamp = "TIMESTAMPTZ"
	}
	opts := []migrate.MigratorOption{
		migrate.WithMarkAppliedOnSuccess(true),
		migrate.WithTemplateData(map[string]string{"Timestamp": timestamp, "Dialect": string(db.Engine)}),
	}
	if o.Table != "" {
		opts = append(opts, migrate.WithTableName(o.Table))
	}
	if o.LocksTable != "" {
		opts = append(opts, migrate.WithLocksTableName(o.LocksTable))
	}
	return migrate.NewMigrator(db.DB, migrations, opts...), nil
}
