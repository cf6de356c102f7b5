package store

import (
	"context"
	"time"

	"github.com/natschat/chat/shared/sqldb"
)

// ErrConfig is wrapped by the errors of Open that retrying cannot fix: the
// options themselves are wrong.
var ErrConfig = sqldb.ErrConfig

// Options chooses and tunes the database; the fields are sqldb.Config's.
type Options struct {
	URL               string
	SQLitePath        string
	SQLiteBusyTimeout time.Duration
}

// Open connects to the database o describes and checks that it answers. It
// does not migrate: call Migrate.
func Open(ctx context.Context, o Options) (*Store, error) {
	db, err := sqldb.Open(ctx, sqldb.Config{
		URL:               o.URL,
		SQLitePath:        o.SQLitePath,
		SQLiteBusyTimeout: o.SQLiteBusyTimeout,
		// A message is acked right after its commit: a commit lost in a
		// power cut would be a message lost for good.
		SQLiteSynchronous: "FULL",
	})
	if err != nil {
		return nil, err
	}
	return &Store{db: db}, nil
}
