package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natschat/chat/shared/chat"
)

// feed is a room's sequencer: it reads the room's republished messages
// (chat.feed.<room>), notices gaps from their Nats-Last-Sequence header,
// fills them from the stream, and hands every message, once and in stream
// order, to the room's members. It runs on its own goroutine (run), so a
// slow gap fill holds back only the messages that must come after the gap,
// never presence or the writers.
type feed struct {
	room    string
	src     *natsSource
	watch   *streamWatch
	out     *members
	metrics *metrics
	log     *slog.Logger

	sub    *nats.Subscription
	msgs   chan *nats.Msg
	resync chan struct{}
	// restart asks the feed to start over with the stream.
	restart chan struct{}
	// ctx bounds the stream reads; stop cancels it, so a long gap fill
	// does not hold up a room that is stopping.
	ctx  context.Context
	stop context.CancelFunc

	// Owned by run.
	// behind is set when a stream read failed: feed messages are left to
	// the catch-up, retried every retryWait.
	behind    bool
	retryWait time.Duration
	dropped   int // feed messages NATS dropped, as last seen
}

func newFeed(h *hub, room string, out *members) *feed {
	ctx, cancel := context.WithCancel(context.Background())
	return &feed{
		room: room, src: h.src, watch: h.watch, out: out, metrics: h.metrics, log: h.log,
		msgs:    make(chan *nats.Msg, h.feedBuffer),
		resync:  make(chan struct{}, 1),
		restart: make(chan struct{}, 1),
		ctx:     ctx, stop: cancel,
	}
}

// subscribe subscribes to the room's feed, then reads the room's newest
// sequence: in that order, every message after it is certain to arrive on
// the feed or to be announced by a later message's Nats-Last-Sequence.
func (f *feed) subscribe(ctx context.Context) error {
	sub, err := f.src.nc.ChanSubscribe(chat.FeedSubject(f.room), f.msgs)
	if err != nil {
		return fmt.Errorf("subscribe to room %s: %w", f.room, err)
	}
	if err := f.src.nc.FlushWithContext(ctx); err != nil {
		_ = sub.Unsubscribe()
		return fmt.Errorf("subscribe to room %s: %w", f.room, err)
	}
	last, err := f.src.lastSeq(ctx, f.room)
	if err != nil {
		_ = sub.Unsubscribe()
		return err
	}
	f.sub = sub
	f.out.advance(last)
	return nil
}

// unsubscribe ends the feed: run returns, and a gap fill in progress stops.
func (f *feed) unsubscribe() {
	if f.sub != nil {
		_ = f.sub.Unsubscribe()
	}
	f.stop()
}

// startOver tells the feed the stream started over.
func (f *feed) startOver() {
	select {
	case f.restart <- struct{}{}:
	default: // already asked
	}
}

// catchUpSoon makes the feed check the stream for what it may have missed
// (after a NATS reconnect the feed does not replay what it missed).
func (f *feed) catchUpSoon() {
	select {
	case f.resync <- struct{}{}:
	default:
	}
}

func (f *feed) run() {
	// NATS drops feed messages when the room falls behind (a slow
	// consumer). A later message's Nats-Last-Sequence reveals the gap, but
	// if the room then goes quiet nothing would: check the drop count.
	check := time.NewTicker(time.Second)
	defer check.Stop()
	for {
		select {
		case m := <-f.msgs:
			f.handle(m)
		case <-check.C:
			if dropped, err := f.sub.Dropped(); err == nil && dropped != f.dropped {
				f.dropped = dropped
				f.catchUp()
			}
		case <-f.resync:
			f.catchUp()
		case <-f.restart:
			// Every sequence this room delivered belongs to the old
			// stream. Clients drop what they have; the new stream's
			// messages follow from its start.
			f.out.restart(f.watch.current())
			f.behind, f.retryWait = false, 0
			f.catchUp()
		case <-f.ctx.Done():
			return
		}
	}
}

// handle delivers one republished message, first filling any gap its
// Nats-Last-Sequence header reveals.
func (f *feed) handle(m *nats.Msg) {
	seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil {
		f.log.Warn("feed message without sequence", "room", f.room, "err", err)
		return
	}
	prev, _ := strconv.ParseUint(m.Header.Get(jetstream.LastSequenceHeader), 10, 64)
	last := f.out.lastDelivered()
	if seq <= last || f.behind {
		// Delivered already, or a stream read failed and the retry will
		// deliver this message, which is stored, in order with the rest.
		// A sequence below the room's may also mean the stream started
		// over: the watch looks.
		if seq < last && !f.behind {
			f.watch.checkSoon()
		}
		return
	}
	if seq > f.watch.last.Load()+forgeAllowance {
		ctx, cancel := context.WithTimeout(f.ctx, 5*time.Second)
		real, err := f.src.verify(ctx, f.room, seq, m.Data)
		cancel()
		switch {
		case err != nil:
			// Unknown: a catch-up from the stream delivers what is real.
			f.retryLater(err)
			return
		case !real:
			f.metrics.forgedFeed.Inc()
			f.log.Warn("feed message that is not in the stream dropped", "room", f.room, "seq", seq)
			return
		}
		f.watch.raise(seq)
	}
	if prev > last {
		if err := f.fill(last+1, prev); err != nil {
			// Delivering m now would skip the gap for good.
			f.retryLater(err)
			return
		}
	}
	arrival, err := time.Parse(time.RFC3339Nano, m.Header.Get(jetstream.TimeStampHeaer))
	if err != nil {
		arrival = time.Now()
	}
	cm, err := chat.ParseMessage(m.Data, arrival)
	if err != nil {
		f.metrics.badFeedMessages.Inc()
		f.log.Warn("skipping bad message", "room", f.room, "seq", seq, "err", err)
		f.out.advance(seq)
		return
	}
	cm.Room, cm.Seq = f.room, seq
	f.out.deliver(cm)
}

// catchUp delivers whatever the stream holds beyond the last delivered
// message.
func (f *feed) catchUp() {
	ctx, cancel := context.WithTimeout(f.ctx, 10*time.Second)
	defer cancel()
	newest, err := f.src.lastSeq(ctx, f.room)
	if err != nil {
		f.retryLater(err)
		return
	}
	if last := f.out.lastDelivered(); newest > last {
		if err := f.fill(last+1, newest); err != nil {
			f.retryLater(err)
			return
		}
	}
	if f.behind {
		f.log.Info("room caught up from the stream", "room", f.room)
	}
	f.behind, f.retryWait = false, 0
}

// retryLater marks the room behind the stream after a failed read (NATS
// reconnecting, a JetStream leader election) and schedules a catch-up, with
// backoff.
func (f *feed) retryLater(err error) {
	if f.ctx.Err() != nil {
		return // stopping
	}
	f.behind = true
	f.retryWait = min(max(2*f.retryWait, 250*time.Millisecond), 5*time.Second)
	f.log.Warn("room behind the stream, retrying", "room", f.room, "in", f.retryWait, "err", err)
	time.AfterFunc(f.retryWait, f.catchUpSoon)
}

// fill delivers the messages with from <= seq <= to from the stream, a
// batch at a time: a long gap (a busy room after a long outage) is neither
// held in memory whole nor lost to a single time limit, and what was read
// stays delivered if a later batch fails.
func (f *feed) fill(from, to uint64) error {
	ctx, cancel := context.WithTimeout(f.ctx, 2*time.Minute)
	defer cancel()
	n := 0
	err := f.src.streamEach(ctx, f.room, from, to, func(batch []chat.Message, through uint64) error {
		for _, m := range batch {
			f.out.deliver(m)
		}
		f.out.advance(through)
		n += len(batch)
		return nil
	})
	if err != nil {
		return fmt.Errorf("fill gap %d-%d: %w", from, to, err)
	}
	f.out.advance(to)
	f.metrics.gapFills.Inc()
	f.log.Debug("filled gap from stream", "room", f.room, "from", from, "to", to, "messages", n)
	return nil
}
