package history

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natschat/chat/services/history/internal/store"
	"github.com/natschat/chat/shared/chat"
)

const (
	// maxBackoff caps the wait between database retries, so storing resumes
	// within a few seconds of the database coming back.
	maxBackoff = 5 * time.Second
	// idlePing is how often an idle consumer checks the database, so that
	// readiness notices an outage even when nobody is chatting.
	idlePing = 5 * time.Second
)

// consumer moves messages from the CHAT stream into the database, one
// fetched batch per transaction, acking only after the commit.
type consumer struct {
	cons      jetstream.Consumer
	st        *store.Store
	h         *health
	metrics   *metrics
	log       *slog.Logger
	batchSize int
	fetchWait time.Duration
	linger    time.Duration
	// writeTimeout bounds one attempt at storing a batch; under the ack
	// wait, so a hung attempt is given up before the batch is redelivered.
	writeTimeout time.Duration

	lastDBCheck time.Time
	stored      atomic.Int64 // rows inserted
	bad         atomic.Int64 // payloads refused
}

func newConsumer(cons jetstream.Consumer, st *store.Store, h *health, m *metrics, cfg Config, log *slog.Logger) *consumer {
	return &consumer{
		cons: cons, st: st, h: h, metrics: m, log: log,
		batchSize:    cfg.BatchSize,
		fetchWait:    cfg.FetchWait,
		linger:       cfg.BatchLinger,
		writeTimeout: cfg.AckWait / 2,
	}
}

// run stores batches until ctx is done. The batch in flight when ctx ends
// is still stored and acked (within the write timeout); no new one is
// fetched.
func (c *consumer) run(ctx context.Context) {
	for ctx.Err() == nil {
		msgs, err := c.fetch()
		if err != nil {
			c.log.Warn("fetch from chat stream", "err", err)
			sleep(ctx, time.Second) // NATS is down or the consumer is gone: do not spin
		}
		if len(msgs) == 0 {
			c.pingIfIdle(ctx)
			continue
		}
		c.handle(ctx, msgs)
	}
}

// fetch waits up to fetchWait for one message, lingers a moment, then takes
// whatever else is waiting, up to a batch. A quiet room gets its message
// stored within the linger instead of after a full batch wait; a busy
// stream gives full batches.
func (c *consumer) fetch() ([]jetstream.Msg, error) {
	first, err := c.cons.Fetch(1, jetstream.FetchMaxWait(c.fetchWait))
	if err != nil {
		return nil, err
	}
	msgs := collect(first)
	if len(msgs) == 0 {
		if err := first.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, err
		}
		return nil, nil
	}
	if c.batchSize > 1 {
		time.Sleep(c.linger)
		rest, err := c.cons.FetchNoWait(c.batchSize - 1)
		if err != nil {
			return msgs, nil // store what we have; the rest comes next time
		}
		msgs = append(msgs, collect(rest)...)
	}
	return msgs, nil
}

func collect(b jetstream.MessageBatch) []jetstream.Msg {
	var msgs []jetstream.Msg
	for m := range b.Messages() {
		msgs = append(msgs, m)
	}
	return msgs
}

// handle stores the good messages of a batch and acks the whole batch
// after the commit. Bad payloads are terminated at once: they would fail
// the same way on every redelivery.
func (c *consumer) handle(ctx context.Context, msgs []jetstream.Msg) {
	good := make([]chat.Message, 0, len(msgs))
	goodMsgs := make([]jetstream.Msg, 0, len(msgs))
	c.metrics.batchSize.Observe(float64(len(msgs)))
	for i, m := range msgs {
		meta, err := m.Metadata()
		if err != nil {
			c.log.Warn("message without jetstream metadata", "subject", m.Subject(), "err", err)
			continue
		}
		if i == len(msgs)-1 {
			// What the consumer still holds after this batch: how far
			// the database is behind the stream.
			c.metrics.lag.Set(float64(meta.NumPending))
		}
		seq := meta.Sequence.Stream
		parsed, err := parse(m, meta)
		if err != nil {
			c.metrics.bad.Inc()
			c.bad.Add(1)
			c.log.Warn("bad chat message not stored", "subject", m.Subject(), "seq", seq, "err", err)
			if err := m.TermWithReason("bad payload"); err != nil {
				c.log.Warn("terminate bad message", "seq", seq, "err", err)
			}
			continue
		}
		good = append(good, parsed)
		goodMsgs = append(goodMsgs, m)
	}
	if len(good) == 0 {
		return
	}
	if !c.save(ctx, good, goodMsgs) {
		return
	}
	for _, m := range goodMsgs {
		// A lost ack only means a redelivery, which the unique key absorbs.
		if err := m.Ack(); err != nil {
			c.log.Warn("ack stored message", "subject", m.Subject(), "err", err)
		}
	}
}

func parse(m jetstream.Msg, meta *jetstream.MsgMetadata) (chat.Message, error) {
	room, ok := chat.RoomFromSubject(m.Subject())
	if !ok {
		return chat.Message{}, fmt.Errorf("%w: invalid room in subject", chat.ErrBadMessage)
	}
	msg, err := chat.ParseMessage(m.Data(), meta.Timestamp)
	if err != nil {
		return chat.Message{}, err
	}
	msg.Room = room
	msg.Seq = meta.Sequence.Stream
	return msg, nil
}

// save stores the batch, retrying with backoff while the database fails,
// and reports whether it was committed. While retrying it tells the server
// the batch is still being worked on (InProgress) instead of Nak'ing it:
// the batch stays whole and in this process, no other instance gets a
// redelivery to fail on too, and the fetch loop waits, so the backlog stays
// in the stream where it is safe. If the process dies, the ack wait expires
// and the batch is redelivered. Only when shutting down does it Nak the
// batch, so another instance can take it at once.
func (c *consumer) save(ctx context.Context, good []chat.Message, msgs []jetstream.Msg) bool {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		// A batch already fetched is finished even after ctx is cancelled:
		// that is the drain.
		writeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.writeTimeout)
		n, err := c.st.Save(writeCtx, good)
		cancel()
		c.h.setDB(err)
		c.lastDBCheck = time.Now()
		if err == nil {
			c.stored.Add(int64(n))
			c.metrics.stored.Add(float64(n))
			c.metrics.duplicates.Add(float64(len(good) - n))
			if attempt > 1 {
				c.log.Info("database back, batch stored", "attempts", attempt, "messages", len(good))
			}
			return true
		}
		c.metrics.storeErrors.Inc()
		c.log.Warn("store batch failed, retrying", "err", err, "attempt", attempt, "retry_in", backoff, "messages", len(good))
		if ctx.Err() != nil || !sleep(ctx, backoff) {
			for _, m := range msgs {
				m.Nak()
			}
			return false
		}
		for _, m := range msgs {
			m.InProgress()
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// pingIfIdle checks the database when no write has done so lately.
func (c *consumer) pingIfIdle(ctx context.Context) {
	if time.Since(c.lastDBCheck) < idlePing || ctx.Err() != nil {
		return
	}
	pingCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	err := c.st.Ping(pingCtx)
	if ctx.Err() != nil {
		return
	}
	c.h.setDB(err)
	c.lastDBCheck = time.Now()
	if err != nil {
		c.log.Warn("database ping failed", "err", err)
	}
}
