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
	"net"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/sync/errgroup"

	"github.com/natschat/chat/services/history/internal/store"
	"github.com/natschat/chat/shared/config"
	"github.com/natschat/chat/shared/natsconn"
)

// Config is the history service's configuration, read from HISTORY_*
// environment variables (see config.Load). NATS_* and DATABASE_URL are read
// when the prefixed variable is unset.
type Config struct {
	natsconn.Config
	config.Log

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
	// own transaction (and, on SQLite, its own fsync).
	BatchLinger time.Duration `split_words:"true" default:"20ms" desc:"after the first message of a batch, how long to let more arrive before storing (0: store at once)"`
	AckWait     time.Duration `split_words:"true" default:"30s" desc:"consumer ack wait: a batch not acked in this time is redelivered"`
	Replicas    int           `default:"1" desc:"JetStream replicas of the CHAT stream (3 on a cluster)"`

	AdminAddr       string        `split_words:"true" desc:"admin HTTP address for /healthz, /readyz and /metrics, e.g. :9102 (empty: off)"`
	QueryWorkers    int           `split_words:"true" default:"16" desc:"history queries served at once; more are answered with a busy error"`
	QueryTimeout    time.Duration `split_words:"true" default:"5s" desc:"database time limit of one history query"`
	ShutdownTimeout time.Duration `split_words:"true" default:"10s" desc:"time allowed for finishing the in-flight batch and draining on shutdown"`
}

func (cfg Config) validate() error {
	switch {
	case cfg.BatchSize < 1:
		return errors.New("batch size must be at least 1")
	case cfg.FetchWait <= 0:
		return errors.New("fetch wait must be positive")
	case cfg.AckWait < time.Second:
		return errors.New("ack wait must be at least 1s")
	case cfg.QueryWorkers < 1:
		return errors.New("query workers must be at least 1")
	case cfg.QueryTimeout <= 0 || cfg.ShutdownTimeout <= 0:
		return errors.New("query and shutdown timeouts must be positive")
	}
	return nil
}

// consumerName is the durable consumer every history instance shares, so
// that each message goes to one of them.
const consumerName = "history"

// Run runs the service until ctx is cancelled, then finishes the batch in
// flight, acks it, drains the NATS connection and closes the database. It
// returns an error if the service cannot start.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("history config: %w", err)
	}
	h := &health{}
	m := newMetrics()
	g, ctx := errgroup.WithContext(ctx)
	if cfg.AdminAddr != "" {
		// Listen before anything slow, so a taken port fails at once.
		ln, err := net.Listen("tcp", cfg.AdminAddr)
		if err != nil {
			return fmt.Errorf("admin listen: %w", err)
		}
		log.Info("admin listening", "addr", ln.Addr().String())
		serveAdmin(ctx, g, ln, h, m.handler(), cfg.ShutdownTimeout)
	}
	g.Go(func() error { return run(ctx, cfg, h, m, log) })
	return g.Wait()
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
