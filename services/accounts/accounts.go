// Package accounts is the accounts service: it owns accounts, sessions and
// mutes, persisted in the database (Postgres, or SQLite when none is
// configured), and answers the auth.* requests over NATS. It projects what
// gateways need on every WebSocket upgrade into JetStream KV buckets
// (sessions, accounts, mutes) that they read and watch, so checking a
// session costs them no round trip and a logout reaches every gateway at
// once.
//
// Run is exported so the all-in-one binary can run the service in-process.
package accounts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natschat/chat/services/accounts/internal/store"
	"github.com/natschat/chat/shared/admin"
	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/config"
	"github.com/natschat/chat/shared/natsconn"
	"github.com/natschat/chat/shared/stream"
)

// Prefix is the prefix of the accounts service's variables.
const Prefix = "ACCOUNTS"

// Config is the accounts service's configuration, read from ACCOUNTS_*
// environment variables (see config.Load). NATS_*, LOG_* and DATABASE_URL
// are read when the prefixed variable is unset.
type Config struct {
	natsconn.Config
	config.Log
	stream.Settings // the replicas of the sessions, accounts and mutes buckets

	DatabaseURL       string        `envconfig:"DATABASE_URL" desc:"postgres:// or postgresql:// URL; empty: SQLite file at ACCOUNTS_SQLITE_PATH"`
	SQLitePath        string        `envconfig:"SQLITE_PATH" default:"data/accounts.db" desc:"SQLite database file, used when no DATABASE_URL is set (directory is created)"`
	SQLiteBusyTimeout time.Duration `envconfig:"SQLITE_BUSY_TIMEOUT" default:"5s" desc:"how long an SQLite statement waits for a lock held elsewhere"`

	// Admins are names, not accounts: a listed name that is not registered
	// yet becomes an admin when it is, so register it before others can.
	Admins     []string      `desc:"comma-separated names of the admins (any letter case), applied at start and on sign-up; others stop being admins"`
	SessionTTL time.Duration `split_words:"true" default:"720h" desc:"lifetime of a session from sign-in"`

	LoginNameLimit    int           `split_words:"true" default:"10" desc:"failed sign-ins (and password changes) per name per limit window"`
	LoginAddrLimit    int           `split_words:"true" default:"30" desc:"failed sign-ins per client address (IPv6: per /64) per limit window"`
	RegisterAddrLimit int           `split_words:"true" default:"10" desc:"sign-ups per client address per limit window"`
	LimitWindow       time.Duration `split_words:"true" default:"10m" desc:"the fixed window of the limits above; a refusal says when it ends (retry_after)"`
	MuteMax           time.Duration `split_words:"true" default:"720h" desc:"longest mute an admin may set"`

	Workers         int           `default:"8" desc:"requests handled at once (each sign-in hashes with 19 MiB); more wait up to 2s, then are answered unavailable"`
	RequestTimeout  time.Duration `split_words:"true" default:"10s" desc:"time limit of one request's database and bucket work"`
	SweepInterval   time.Duration `split_words:"true" default:"1m" desc:"how often expired sessions and mutes are deleted (gateways check expiry themselves)"`
	SyncInterval    time.Duration `split_words:"true" default:"5m" desc:"how often the buckets are compared with the database and repaired"`
	AdminAddr       string        `split_words:"true" desc:"admin HTTP address for /healthz, /readyz and /metrics, e.g. :9090 (empty: off)"`
	ShutdownTimeout time.Duration `split_words:"true" default:"10s" desc:"time allowed for answering the requests in flight on shutdown"`
}

// Validate reports every problem of the configuration at once.
func (cfg Config) Validate() error {
	c := config.NewChecker(Prefix)
	cfg.Config.Check(c)
	cfg.Log.Check(c)
	cfg.Settings.Check(c)
	for _, name := range adminNames(cfg.Admins) {
		c.Check(chat.ValidateName("user", name) == nil && !chat.IsReserved(name), "ADMINS", "%q is not a name that can be registered", name)
	}
	c.Check(cfg.SessionTTL >= time.Second, "SESSION_TTL", "must be 1s or more (got %v)", cfg.SessionTTL)
	c.Check(cfg.LoginNameLimit >= 1, "LOGIN_NAME_LIMIT", "must be at least 1 (got %d)", cfg.LoginNameLimit)
	c.Check(cfg.LoginAddrLimit >= 1, "LOGIN_ADDR_LIMIT", "must be at least 1 (got %d)", cfg.LoginAddrLimit)
	c.Check(cfg.RegisterAddrLimit >= 1, "REGISTER_ADDR_LIMIT", "must be at least 1 (got %d)", cfg.RegisterAddrLimit)
	c.Check(cfg.LimitWindow >= time.Second, "LIMIT_WINDOW", "must be 1s or more (got %v)", cfg.LimitWindow)
	c.Check(cfg.MuteMax >= time.Second, "MUTE_MAX", "must be 1s or more (got %v)", cfg.MuteMax)
	c.Check(cfg.Workers >= 1, "WORKERS", "must be at least 1 (got %d)", cfg.Workers)
	c.Check(cfg.RequestTimeout > 0, "REQUEST_TIMEOUT", "must be more than 0 (got %v)", cfg.RequestTimeout)
	c.Check(cfg.ShutdownTimeout > 0, "SHUTDOWN_TIMEOUT", "must be more than 0 (got %v)", cfg.ShutdownTimeout)
	c.Check(cfg.SweepInterval > 0, "SWEEP_INTERVAL", "must be more than 0 (got %v)", cfg.SweepInterval)
	c.Check(cfg.SyncInterval > 0, "SYNC_INTERVAL", "must be more than 0 (got %v)", cfg.SyncInterval)
	return c.Err()
}

// adminNames is ACCOUNTS_ADMINS without blanks.
func adminNames(list []string) []string {
	var names []string
	for _, name := range list {
		if name = strings.TrimSpace(name); name != "" {
			names = append(names, name)
		}
	}
	return names
}

// Run serves the auth.* subjects until ctx is cancelled, then answers the
// requests it already received, drains the connection and closes the
// database. It returns an error if the service cannot start.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	cfg.Admins = adminNames(cfg.Admins)
	var ready atomic.Bool
	nc, err := natsconn.Connect(cfg.Config, "accounts", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	m := newMetrics()
	stopAdmin, err := admin.Start(cfg.AdminAddr, natsconn.Readiness(&ready, nc), m.handler(), log)
	if err != nil {
		return err
	}
	defer stopAdmin()

	st, err := openDatabase(ctx, cfg, log)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while waiting for the database
		}
		return err
	}
	defer st.Close() // after the connection is drained
	log.Info("database ready", "dialect", st.Dialect())
	if changed, err := st.SetAdmins(ctx, cfg.Admins); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting: not a failure
		}
		return fmt.Errorf("apply ACCOUNTS_ADMINS: %w", err)
	} else if changed {
		log.Info("admins changed", "admins", strings.Join(cfg.Admins, ","))
	}

	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	var proj *projection
	if err := natsconn.Retry(ctx, log, "ensure buckets", func(ctx context.Context) (err error) {
		proj, err = newProjection(ctx, st, js, bucketConfigs(cfg.Settings.Replicas, cfg.SessionTTL), time.Now, log, m)
		return err
	}); err != nil {
		if ctx.Err() != nil {
			return nil // stopped before it was set up: not a failure
		}
		return err
	}
	// Before serving: a gateway that starts now must find the buckets as
	// the database is.
	wait, attempt := 250*time.Millisecond, 10*time.Second
	for {
		// Each attempt may take longer than the last: a first reconcile
		// of a large database reads every session. The first ones are
		// short, because on a cluster just formed a bucket's watch can
		// hang until its stream has a leader, and a new attempt gets
		// past that where waiting does not.
		rctx, cancel := context.WithTimeout(ctx, attempt)
		err := proj.reconcileAll(rctx)
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil // stopped before it was set up: not a failure
		}
		log.Warn("retrying", "what", "reconcile buckets", "err", err, "retry_in", wait.String(), "attempt_timeout", attempt.String())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait, attempt = min(2*wait, 5*time.Second), min(2*attempt, 2*time.Minute)
	}

	svc := newService(cfg, st, proj, log)
	d := &dispatcher{svc: svc, log: log, metrics: m, timeout: cfg.RequestTimeout, slots: make(chan struct{}, cfg.Workers)}
	subs, err := d.subscribe(ctx, nc)
	if err != nil {
		return err
	}
	loopsDone := make(chan struct{})
	go func() {
		defer close(loopsDone)
		maintain(ctx, cfg, svc, proj, log)
	}()
	ready.Store(true)
	log.Info("accounts serving", "subjects", chat.AuthWildcard, "queue", chat.AuthQueue, "admins", len(cfg.Admins))

	<-ctx.Done()
	ready.Store(false)
	log.Info("accounts stopping: answering the requests in flight")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	d.stop(shutdownCtx, subs)
	<-loopsDone
	if err := natsconn.Drain(shutdownCtx, nc); err != nil {
		log.Warn("nats drain", "err", err)
	}
	log.Info("accounts stopped")
	return nil
}

// maintain sweeps and reconciles on their intervals until ctx is done.
func maintain(ctx context.Context, cfg Config, svc *service, proj *projection, log *slog.Logger) {
	sweep := time.NewTicker(cfg.SweepInterval)
	defer sweep.Stop()
	resync := time.NewTicker(cfg.SyncInterval)
	defer resync.Stop()
	for {
		var (
			what string
			f    func(context.Context) error
		)
		select {
		case <-ctx.Done():
			return
		case <-sweep.C:
			what, f = "sweep", svc.sweep
		case <-resync.C:
			what, f = "reconcile buckets", proj.reconcileAll
		}
		runCtx, cancel := context.WithTimeout(ctx, time.Minute)
		if err := f(runCtx); err != nil && ctx.Err() == nil {
			log.Warn(what+" failed, trying again later", "err", err)
		}
		cancel()
	}
}

// openDatabase opens and migrates the database, retrying while it is
// unreachable so that the service may start before its database does. A
// wrong configuration fails at once.
func openDatabase(ctx context.Context, cfg Config, log *slog.Logger) (*store.Store, error) {
	opts := store.Options{URL: cfg.DatabaseURL, SQLitePath: cfg.SQLitePath, SQLiteBusyTimeout: cfg.SQLiteBusyTimeout}
	for wait := 250 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
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
		log.Warn("database unavailable, retrying", "err", err, "retry_in", wait.String())
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("open database: %w", err)
		case <-time.After(wait):
		}
	}
}

// dispatcher hands requests from the NATS callbacks to a bounded set of
// goroutines, so that a slow hash or database never blocks a subscription.
type dispatcher struct {
	svc     *service
	log     *slog.Logger
	metrics *metrics
	timeout time.Duration
	slots   chan struct{}
	wg      sync.WaitGroup
}

func (d *dispatcher) subscribe(ctx context.Context, nc *nats.Conn) ([]*nats.Subscription, error) {
	var subs []*nats.Subscription
	for subject, h := range d.svc.handlers() {
		sub, err := nc.QueueSubscribe(subject, chat.AuthQueue, d.dispatch(ctx, subject, h))
		if err != nil {
			for _, s := range subs {
				s.Unsubscribe()
			}
			return nil, fmt.Errorf("subscribe %s: %w", subject, err)
		}
		subs = append(subs, sub)
	}
	return subs, nil
}

// stop drains the subscriptions and waits for the requests in flight, so
// that their replies are sent before the connection is drained.
func (d *dispatcher) stop(ctx context.Context, subs []*nats.Subscription) {
	for _, sub := range subs {
		closed := sub.StatusChanged(nats.SubscriptionClosed)
		if err := sub.Drain(); err != nil {
			sub.Unsubscribe()
			continue
		}
		select {
		case <-closed:
		case <-ctx.Done():
		}
	}
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		d.log.Warn("requests still running at shutdown")
	}
}

func (d *dispatcher) dispatch(ctx context.Context, subject string, h handler) nats.MsgHandler {
	return func(m *nats.Msg) {
		if m.Reply == "" {
			return // a publish, not a request: nobody to answer
		}
		// A burst (every browser of a restarted gateway at once) waits a
		// little for a slot; only a backlog that does not clear is refused.
		// Each subject has its own subscription, so a queue of sign-ins
		// never holds up session checks.
		if !d.acquire() {
			d.respond(m, subject, chat.AuthReply{Code: chat.CodeUnavailable, Error: "busy, try again", RetryAfter: 1})
			return
		}
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			defer func() { <-d.slots }()
			// Not the Run context: a request received before shutdown is
			// still answered while the service stops.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.timeout)
			defer cancel()
			reply, err := h(rctx, m.Data)
			d.respond(m, subject, d.answer(subject, reply, err))
		}()
	}
}

// queueWait is how long a request waits for a free slot before it is
// answered busy.
const queueWait = 2 * time.Second

func (d *dispatcher) acquire() bool {
	select {
	case d.slots <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(queueWait)
	defer t.Stop()
	select {
	case d.slots <- struct{}{}:
		return true
	case <-t.C:
		return false
	}
}

// answer turns a handler's result into the reply.
func (d *dispatcher) answer(subject string, reply chat.AuthReply, err error) chat.AuthReply {
	var r *refusal
	switch {
	case err == nil:
		return reply
	case errors.As(err, &r):
		d.log.Debug("request refused", "subject", subject, "code", r.code, "err", r.msg)
		return chat.AuthReply{Code: r.code, Error: r.msg, RetryAfter: r.retryAfter}
	default:
		d.log.Error("request failed", "subject", subject, "err", err)
		return chat.AuthReply{Code: chat.CodeUnavailable, Error: "the accounts service could not complete this, try again", RetryAfter: 1}
	}
}

func (d *dispatcher) respond(m *nats.Msg, subject string, reply chat.AuthReply) {
	outcome := "ok"
	if !reply.OK {
		outcome = string(reply.Code)
	}
	// Counted before the reply leaves, so a caller that has its answer
	// finds it counted.
	d.metrics.requests.WithLabelValues(subject, outcome).Inc()
	b, err := json.Marshal(reply)
	if err != nil {
		d.log.Error("encode reply", "subject", subject, "err", err)
		return
	}
	if err := m.Respond(b); err != nil {
		d.log.Debug("send reply", "subject", subject, "err", err)
	}
}
