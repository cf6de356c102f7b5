package history

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

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
// fetched batch per transaction, acking only after the commit. When the
// durable consumer or the stream disappears, it sets them up again and
// goes on (source.setup), storing a stream that started over in a new
// epoch.
type consumer struct {
	nc        *nats.Conn
	src       *source
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

func newConsumer(nc *nats.Conn, src *source, st *store.Store, h *health, m *metrics, cfg Config, log *slog.Logger) *consumer {
	_, epoch := src.current()
	m.epoch.Set(float64(epoch))
	return &consumer{
		nc: nc, src: src, st: st, h: h, metrics: m, log: log,
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
		msgs, err := c.fetch(ctx)
		var epoch int64
		if err == nil && len(msgs) > 0 {
			epoch, err = c.checkEpoch(ctx)
		}
		if err != nil {
			// Handed back: after the setup they come again (unless their
			// stream is gone), checked against the right epoch.
			c.reply(msgs, ackRedeliver)
			c.recover(ctx, err)
			continue
		}
		c.h.setConsumer(nil)
		if len(msgs) == 0 {
			c.pingIfIdle(ctx)
			continue
		}
		c.handle(ctx, epoch, msgs)
	}
}

// errStreamStartedOver is checkEpoch's answer when the stream was created
// again since the consumer was set up.
var errStreamStartedOver = errors.New("the chat stream was created again")

// checkEpoch returns the epoch of a batch just fetched. The stream was
// the same when the consumer was set up and still is now, after the fetch:
// streams do not come back, so the batch is of that epoch. Otherwise the
// batch may be of either stream and is not stored yet.
func (c *consumer) checkEpoch(ctx context.Context) (int64, error) {
	_, known := c.src.current()
	// A batch fetched is finished even after ctx is cancelled: the drain.
	infoCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	epoch, err := c.src.streamEpoch(infoCtx)
	if err != nil {
		return 0, err
	}
	if epoch != known {
		return 0, errStreamStartedOver
	}
	return epoch, nil
}

// recover sets the stream and consumer up again after a failed fetch,
// retrying with backoff until it works or ctx is done. Readiness says what
// is wrong meanwhile; it is ready again after the next good fetch.
func (c *consumer) recover(ctx context.Context, cause error) {
	c.metrics.consumerFailures.Inc()
	c.h.setConsumer(fmt.Errorf("%w, re-creating", cause))
	c.log.Warn("chat consumer failed, setting it up again", "err", cause)
	for backoff := 250 * time.Millisecond; ctx.Err() == nil; backoff = min(2*backoff, maxBackoff) {
		// Short: a refused request (permissions) only ends at the timeout.
		attemptCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := c.src.setup(attemptCtx)
		cancel()
		if err == nil {
			_, epoch := c.src.current()
			c.metrics.epoch.Set(float64(epoch))
			return
		}
		if ctx.Err() != nil {
			return
		}
		c.h.setConsumer(fmt.Errorf("%w, re-creating: %w", cause, err))
		c.log.Warn("cannot set up the chat consumer, retrying", "err", err, "retry_in", backoff)
		sleep(ctx, backoff)
	}
}

// fetch waits up to fetchWait for one message, lingers a moment, then takes
// whatever else is waiting, up to a batch. A quiet room gets its message
// stored within the linger instead of after a full batch wait; a busy
// stream gives full batches. When a whole batch is already waiting behind
// the first message (a backlog), lingering would only cap the rate: at
// 500 per batch and 20 ms, 25,000 rows/s at most, whatever the database.
func (c *consumer) fetch(ctx context.Context) ([]*nats.Msg, error) {
	msgs, err := pull(c.nc, nextSubject(), 1, c.fetchWait)
	if err != nil || len(msgs) == 0 {
		return msgs, err
	}
	if c.batchSize > 1 {
		if !backlogged(msgs[0], c.batchSize-1) {
			sleep(ctx, c.linger) // a shutdown cuts it short: what came is stored
		}
		rest, err := pull(c.nc, nextSubject(), c.batchSize-1, 0)
		if err != nil {
			// Store what we have; the next fetch meets the problem.
			return append(msgs, rest...), nil
		}
		msgs = append(msgs, rest...)
	}
	return msgs, nil
}

// backlogged says whether at least n more messages wait behind m, by its
// JetStream metadata; without metadata it says no, and fetch lingers.
func backlogged(m *nats.Msg, n int) bool {
	meta, err := m.Metadata()
	return err == nil && meta.NumPending >= uint64(n)
}

// reply sends an acknowledgement for each of msgs. A lost one only means a
// redelivery, which the unique key absorbs.
func (c *consumer) reply(msgs []*nats.Msg, ack []byte) {
	for _, m := range msgs {
		if err := c.nc.Publish(m.Reply, ack); err != nil {
			c.log.Warn("acknowledge message", "subject", m.Subject, "ack", string(ack), "err", err)
		}
	}
}

// handle stores the good messages of a batch and acks the whole batch
// after the commit. Bad payloads are terminated at once: they would fail
// the same way on every redelivery.
func (c *consumer) handle(ctx context.Context, epoch int64, msgs []*nats.Msg) {
	good := make([]chat.Message, 0, len(msgs))
	goodMsgs := make([]*nats.Msg, 0, len(msgs))
	c.metrics.batchSize.Observe(float64(len(msgs)))
	for i, m := range msgs {
		meta, err := m.Metadata()
		if err != nil {
			c.log.Warn("message without jetstream metadata", "subject", m.Subject, "err", err)
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
			c.log.Warn("bad chat message not stored", "subject", m.Subject, "seq", seq, "err", err)
			c.reply([]*nats.Msg{m}, ackTerm("bad payload"))
			continue
		}
		good = append(good, parsed)
		goodMsgs = append(goodMsgs, m)
	}
	if len(good) == 0 {
		return
	}
	if !c.save(ctx, epoch, good, goodMsgs) {
		return
	}
	c.reply(goodMsgs, ackDone)
}

func parse(m *nats.Msg, meta *nats.MsgMetadata) (chat.Message, error) {
	room, ok := chat.RoomFromSubject(m.Subject)
	if !ok {
		return chat.Message{}, fmt.Errorf("%w: invalid room in subject", chat.ErrBadMessage)
	}
	msg, err := chat.ParseMessage(m.Data, meta.Timestamp)
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
func (c *consumer) save(ctx context.Context, epoch int64, good []chat.Message, msgs []*nats.Msg) bool {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		// A batch already fetched is finished even after ctx is cancelled:
		// that is the drain.
		writeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.writeTimeout)
		n, err := c.st.Save(writeCtx, epoch, good)
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
			c.reply(msgs, ackRedeliver)
			return false
		}
		c.reply(msgs, ackInProgress)
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
