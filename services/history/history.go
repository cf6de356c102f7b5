// Package history is the history service: it stores every chat message of
// the CHAT stream in the database (Postgres, or SQLite when none is
// configured) and answers history queries over NATS request/reply.
//
// Run is exported so the all-in-one binary can run the service in-process.
package history

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/natschat/chat/services/history/internal/store"
	"github.com/natschat/chat/shared/admin"
	"github.com/natschat/chat/shared/config"
	"github.com/natschat/chat/shared/natsconn"
	"github.com/natschat/chat/shared/stream"
)

// Prefix is the prefix of the history service's variables.
const Prefix = "HISTORY"

// Config is the history service's configuration, read from HISTORY_*
// environment variables (see config.Load). NATS_* and DATABASE_URL are read
// when the prefixed variable is unset.
type Config struct {
	natsconn.Config
	config.Log
	stream.Settings

	// DatabaseURL selects Postgres (postgres:// or postgresql://); empty
	// means the SQLite file at SQLitePath.
	DatabaseURL       string        `envconfig:"DATABASE_URL" desc:"postgres:// or postgresql:// URL; empty: SQLite file at HISTORY_SQLITE_PATH"`
	SQLitePath        string        `envconfig:"SQLITE_PATH" default:"data/chat.db" desc:"SQLite database file, used when no DATABASE_URL is set (directory is created)"`
	SQLiteBusyTimeout time.Duration `envconfig:"SQLITE_BUSY_TIMEOUT" default:"5s" desc:"how long an SQLite statement waits for a lock held elsewhere"`

	// BatchSize bounds the messages fetched, inserted and acked together.
	BatchSize int           `split_words:"true" default:"500" desc:"messages stored per transaction (one multi-row insert)"`
	FetchWait time.Duration `split_words:"true" default:"1s" desc:"longest wait for a message before fetching again; also bounds shutdown latency"`
	// BatchLinger trades a few milliseconds of persistence delay for fewer
	// commits: under a steady trickle every message would otherwise be its
	// own transaction (and, on SQLite, its own fsync). A backlog is not
	// lingered over.
	BatchLinger time.Duration `split_words:"true" default:"20ms" desc:"after the first message of a batch, how long to let more arrive before storing, unless a whole batch is waiting already (0: store at once)"`
	AckWait     time.Duration `split_words:"true" default:"30s" desc:"consumer ack wait: a batch not acked in this time is redelivered"`
	// ChatMaxBytes bounds the CHAT stream, which history owns: it brings
	// the stream to this definition at start, the others never change it.
	ChatMaxBytes int64 `split_words:"true" default:"1073741824" desc:"most bytes the CHAT stream keeps, oldest messages discarded first (1 GiB; history owns CHAT's configuration)"`

	AdminAddr       string        `split_words:"true" desc:"admin HTTP address for /healthz, /readyz and /metrics, e.g. :9102 (empty: off)"`
	QueryWorkers    int           `split_words:"true" default:"16" desc:"history queries served at once; more are answered with a busy error"`
	QueryTimeout    time.Duration `split_words:"true" default:"5s" desc:"database time limit of one history query"`
	ShutdownTimeout time.Duration `split_words:"true" default:"10s" desc:"time allowed for finishing the in-flight batch and draining on shutdown"`
}

// Validate reports every problem of the configuration at once.
func (cfg Config) Validate() error {
	c := config.NewChecker(Prefix)
	cfg.Config.Check(c)
	cfg.Log.Check(c)
	cfg.Settings.Check(c)
	scheme, _, _ := strings.Cut(cfg.DatabaseURL, "://")
	c.CheckShared(cfg.DatabaseURL == "" || scheme == "postgres" || scheme == "postgresql", "DATABASE_URL",
		"must start with postgres:// or postgresql://, or be empty for SQLite (got a %q URL)", scheme)
	c.Check(cfg.DatabaseURL != "" || cfg.SQLitePath != "", "SQLITE_PATH", "must not be empty when there is no DATABASE_URL")
	c.Check(cfg.SQLiteBusyTimeout >= 0, "SQLITE_BUSY_TIMEOUT", "must not be negative (got %v)", cfg.SQLiteBusyTimeout)
	c.Check(cfg.BatchSize >= 1, "BATCH_SIZE", "must be at least 1 (got %d)", cfg.BatchSize)
	c.Check(cfg.FetchWait > 0, "FETCH_WAIT", "must be more than 0 (got %v)", cfg.FetchWait)
	c.Check(cfg.BatchLinger >= 0, "BATCH_LINGER", "must not be negative (got %v)", cfg.BatchLinger)
	c.Check(cfg.AckWait >= time.Second, "ACK_WAIT", "must be at least 1s (got %v)", cfg.AckWait)
	c.Check(cfg.ChatMaxBytes >= 1<<20, "CHAT_MAX_BYTES", "must be at least 1048576 (1 MiB) (got %d)", cfg.ChatMaxBytes)
	c.Check(cfg.QueryWorkers >= 1, "QUERY_WORKERS", "must be at least 1 (got %d)", cfg.QueryWorkers)
	c.Check(cfg.QueryTimeout > 0, "QUERY_TIMEOUT", "must be more than 0 (got %v)", cfg.QueryTimeout)
	c.Check(cfg.ShutdownTimeout > 0, "SHUTDOWN_TIMEOUT", "must be more than 0 (got %v)", cfg.ShutdownTimeout)
	return c.Err()
}

// consumerName is the durable consumer every history instance shares, so
// that each message goes to one of them.
const consumerName = "history"

// Run runs the service until ctx is cancelled, then finishes the batch in
// flight, acks it, drains the NATS connection and closes the database. It
// returns an error if the service cannot start. cfg is valid (Validate).
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	h := &health{}
	m := newMetrics()
	// Before anything slow, so a taken port fails at once.
	stopAdmin, err := admin.Start(cfg.AdminAddr, h.ready, m.handler(), log)
	if err != nil {
		return err
	}
	defer stopAdmin()
	// Not ready from the moment shutdown begins, while the batch in flight
	// is finished and the connection drained.
	context.AfterFunc(ctx, h.setStopping)
	return run(ctx, cfg, h, m, log)
}

func run(ctx context.Context, cfg Config, h *health, m *metrics, log *slog.Logger) error {
	nc, err := natsconn.Connect(cfg.Config, "history", log)
	if err != nil {
		return err
	}
	h.setConn(nc)
	st, err := openDatabase(ctx, cfg, log)
	if err != nil {
		nc.Close()
		if ctx.Err() != nil {
			return nil // stopped while waiting for the database
		}
		return err
	}
	// Closed last, after the connection is drained.
	defer st.Close()
	log.Info("database ready", "dialect", st.Dialect())

	src, err := ensureConsumer(ctx, nc, st, cfg, log)
	if err != nil {
		nc.Close()
		if ctx.Err() != nil {
			return nil // stopped before the consumer existed
		}
		return err
	}
	q := newQuerier(st, src, cfg, log)
	subs, err := q.subscribe(nc)
	if err != nil {
		nc.Close()
		return err
	}
	c := newConsumer(nc, src, st, h, m, cfg, log)
	h.setStarted()
	log.Info("history started", "batch_size", cfg.BatchSize)

	c.run(ctx) // returns once ctx is done and the batch in flight is acked
	h.setStopping()

	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	q.stop(shutdownCtx, subs)
	if err := natsconn.Drain(shutdownCtx, nc); err != nil {
		log.Warn("nats drain", "err", err)
	}
	log.Info("history stopped", "stored", c.stored.Load(), "bad", c.bad.Load())
	return nil
}

// openDatabase opens and migrates the database, retrying while it is
// unreachable so that the service may start before its database does. A
// wrong configuration fails at once.
func openDatabase(ctx context.Context, cfg Config, log *slog.Logger) (*store.Store, error) {
	opts := store.Options{
		URL:               cfg.DatabaseURL,
		SQLitePath:        cfg.SQLitePath,
		SQLiteBusyTimeout: cfg.SQLiteBusyTimeout,
	}
	for backoff := 250 * time.Millisecond; ; backoff = min(2*backoff, maxBackoff) {
		st, err := store.Open(ctx, opts)
		if err == nil {
			if err = st.Migrate(ctx); err == nil {
				return st, nil
			}
			st.Close()
		}
		if errors.Is(err, store.ErrConfig) || ctx.Err() != nil {
			return nil, fmt.Errorf("open database: %w", err)
		}
		log.Warn("database unavailable, retrying", "err", err, "retry_in", backoff)
		if !sleep(ctx, backoff) {
			return nil, fmt.Errorf("open database: %w", err)
		}
	}
}

// ensureConsumer creates the CHAT stream and the durable consumer (see
// source.setup), retrying while NATS is unreachable: a service may start
// before NATS does.
func ensureConsumer(ctx context.Context, nc *nats.Conn, st *store.Store, cfg Config, log *slog.Logger) (*source, error) {
	src, err := newSource(nc, st, cfg, log)
	if err != nil {
		return nil, err
	}
	for backoff := 250 * time.Millisecond; ; backoff = min(2*backoff, maxBackoff) {
		attemptCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = src.setup(attemptCtx)
		cancel()
		if err == nil {
			return src, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		log.Warn("cannot set up the chat consumer, retrying", "err", err, "retry_in", backoff)
		if !sleep(ctx, backoff) {
			return nil, fmt.Errorf("set up consumer: %w", err)
		}
	}
}

// sleep waits for d or until ctx is done, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
