// Package smsworker consumes the SMS work queue (stream SMS on sms_channel)
// and sends each task's SMS exactly once, as far as the provider allows:
// every worker instance pulls from one durable consumer, records sent task
// ids in a KV bucket, retries failures with backoff and moves what it gives
// up on to the SMS_DEAD stream. After a send it tells the room.
package smsworker

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natschat/chat/shared/admin"
	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/config"
	"github.com/natschat/chat/shared/natsconn"
	"github.com/natschat/chat/shared/stream"
)

// Prefix is the prefix of the worker's variables.
const Prefix = "SMSWORKER"

// Config is the worker's configuration, read from SMSWORKER_* variables
// (NATS_* and LOG_* are read when the SMSWORKER_ one is unset).
type Config struct {
	natsconn.Config
	config.Log
	stream.Settings
	Consumer    string          `split_words:"true" default:"sms-worker" desc:"durable consumer name, shared by every worker instance"`
	Concurrency int             `split_words:"true" default:"4" desc:"tasks in flight per worker instance"`
	MaxDeliver  int             `split_words:"true" default:"5" desc:"deliveries of a task before it goes to the SMS_DEAD stream"`
	Backoff     []time.Duration `split_words:"true" default:"1s,5s,15s,30s" desc:"delay before each retry of a failed task, comma-separated; the last one repeats"`
	AckWait     time.Duration   `split_words:"true" default:"30s" desc:"how long a task stays with a silent worker (one that died) before it is redelivered; a live worker extends it while sending"`
	SendTimeout time.Duration   `split_words:"true" default:"20s" desc:"time limit of one send; a send that takes longer fails and is retried"`
	SentTTL     time.Duration   `split_words:"true" default:"24h" desc:"how long sent task ids are remembered, so a redelivered task is not sent twice"`
	FakeDelay   time.Duration   `split_words:"true" default:"0s" desc:"fake sender: how long one send takes"`
	FakeFail    string          `split_words:"true" default:"never" desc:"fake sender: always, never, or a failure rate between 0 and 1"`
	AdminAddr   string          `split_words:"true" default:"" desc:"listen address of the /healthz, /readyz and /metrics HTTP server, e.g. :8082 (empty: off)"`
	// ShutdownTimeout bounds the drain of the connection once the tasks in
	// flight are finished (each within SendTimeout).
	ShutdownTimeout time.Duration `split_words:"true" default:"10s" desc:"how long to drain NATS on SIGTERM, after the tasks in flight are finished"`
}

// Validate reports every problem of the configuration at once.
func (cfg Config) Validate() error {
	c := config.NewChecker(Prefix)
	cfg.Config.Check(c)
	cfg.Log.Check(c)
	cfg.Settings.Check(c)
	c.Check(chat.ValidateName("consumer", cfg.Consumer) == nil, "CONSUMER", "must be letters, digits, '-' or '_' (got %q)", cfg.Consumer)
	c.Check(cfg.Concurrency >= 1, "CONCURRENCY", "must be at least 1 (got %d)", cfg.Concurrency)
	c.Check(cfg.MaxDeliver >= 1, "MAX_DELIVER", "must be at least 1 (got %d)", cfg.MaxDeliver)
	c.Check(len(cfg.Backoff) > 0, "BACKOFF", "must have at least one delay")
	for _, d := range cfg.Backoff {
		c.Check(d > 0, "BACKOFF", "must have delays above zero (got %v)", d)
	}
	c.Check(cfg.AckWait >= 30*time.Millisecond, "ACK_WAIT", "must be at least 30ms (got %v)", cfg.AckWait)
	c.Check(cfg.SendTimeout > 0, "SEND_TIMEOUT", "must be more than 0 (got %v)", cfg.SendTimeout)
	c.Check(cfg.SentTTL >= time.Second, "SENT_TTL", "must be at least 1s (got %v)", cfg.SentTTL)
	c.Check(cfg.FakeDelay >= 0, "FAKE_DELAY", "must not be negative (got %v)", cfg.FakeDelay)
	_, err := parseFailRate(cfg.FakeFail)
	c.Check(err == nil, "FAKE_FAIL", "must be always, never, or a failure rate between 0 and 1 (got %q)", cfg.FakeFail)
	c.Check(cfg.ShutdownTimeout > 0, "SHUTDOWN_TIMEOUT", "must be more than 0 (got %v)", cfg.ShutdownTimeout)
	return c.Err()
}

// sentBucket is the KV bucket of sent task ids.
const sentBucket = "sms_sent"

// Option changes how Run works; without options it uses the fake sender
// the configuration describes.
type Option func(*options)

type options struct {
	sender Sender
}

// WithSender makes the worker send through s (a real provider, or a test's
// recording sender) instead of the fake sender.
func WithSender(s Sender) Option {
	return func(o *options) { o.sender = s }
}

// Run processes SMS tasks until ctx is cancelled, then stops pulling,
// finishes and acks the tasks in flight, and drains the connection for at
// most cfg.ShutdownTimeout. cfg is valid (Validate).
func Run(ctx context.Context, cfg Config, log *slog.Logger, opts ...Option) error {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.sender == nil {
		fake, err := newFakeSender(cfg.FakeDelay, cfg.FakeFail, log)
		if err != nil {
			return err
		}
		o.sender = fake
	}

	var ready atomic.Bool
	nc, err := natsconn.Connect(cfg.Config, "sms-worker", log)
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

	w, err := setup(ctx, nc, cfg, log)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped before it was set up: not a failure
		}
		return err
	}
	w.sender = o.sender
	w.metrics = m

	// A queue group: one worker handles each advisory.
	// Drained with the connection.
	_, err = nc.QueueSubscribe(maxDeliveriesSubject(cfg.Consumer), cfg.Consumer, func(m *nats.Msg) {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		w.abandoned(actx, m.Data)
	})
	if err != nil {
		return fmt.Errorf("subscribe to max-deliveries advisories: %w", err)
	}
	ready.Store(true)
	log.Info("sms worker serving", "consumer", cfg.Consumer, "concurrency", cfg.Concurrency,
		"max_deliver", cfg.MaxDeliver, "backoff", fmt.Sprint(cfg.Backoff), "ack_wait", cfg.AckWait.String())
	w.serve(ctx)
	ready.Store(false)
	log.Info("sms worker stopped pulling, draining")
	dctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := natsconn.Drain(dctx, nc); err != nil {
		log.Warn("drain nats", "err", err)
	}
	return nil
}

// setup creates (or updates) what the worker needs: the SMS stream (the
// worker owns it, see package stream), SMS_DEAD, the sent bucket and the
// consumer, and CHAT for the confirmations (history owns it: created when
// missing, never changed). It retries until NATS is there or ctx ends.
func setup(ctx context.Context, nc *nats.Conn, cfg Config, log *slog.Logger) (*worker, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	w := &worker{cfg: cfg, js: js, log: log}
	opts := stream.Options{Replicas: cfg.Replicas}
	for _, sc := range []jetstream.StreamConfig{stream.SMSConfig(opts), deadConfig(cfg.Replicas)} {
		if err := natsconn.Retry(ctx, log, "ensure stream "+sc.Name, func(ctx context.Context) error {
			s, err := stream.Ensure(ctx, js, sc)
			if sc.Name == stream.SMS {
				w.sms = s
			}
			return err
		}); err != nil {
			return nil, err
		}
	}
	if err := natsconn.Retry(ctx, log, "stream "+stream.Chat, func(ctx context.Context) error {
		_, err := stream.Use(ctx, js, stream.ChatConfig(opts), log)
		return err
	}); err != nil {
		return nil, err
	}
	if err := natsconn.Retry(ctx, log, "ensure bucket "+sentBucket, func(ctx context.Context) (err error) {
		w.sent, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      sentBucket,
			Description: "ids of sent SMS tasks, so a redelivered task is not sent twice",
			TTL:         cfg.SentTTL,
			Storage:     jetstream.FileStorage,
			Replicas:    cfg.Replicas,
		})
		return err
	}); err != nil {
		return nil, err
	}
	if err := natsconn.Retry(ctx, log, "ensure consumer "+cfg.Consumer, func(ctx context.Context) (err error) {
		w.cons, err = w.sms.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
			Durable:     cfg.Consumer,
			Description: "shared by every sms-worker instance",
			AckPolicy:   jetstream.AckExplicitPolicy,
			AckWait:     cfg.AckWait,
			MaxDeliver:  cfg.MaxDeliver,
			// No BackOff here: failures are retried with NakWithDelay,
			// so AckWait alone decides when a dead worker's task returns.
		})
		return err
	}); err != nil {
		return nil, err
	}
	return w, nil
}
