package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natschat/chat/shared/chat"
)

// hub owns the rooms that have clients on this gateway: one NATS
// subscription per room, however many clients are in it.
type hub struct {
	// id names this gateway in presence events; presenceEvery is how often
	// it announces its users.
	id            string
	presenceEvery time.Duration
	nc            *nats.Conn
	metrics       *metrics
	backlog       *backlog
	log           *slog.Logger
	// feedBuffer bounds the messages waiting for a room's goroutine; when it
	// overflows NATS drops them and the gap is refilled from the stream.
	feedBuffer int
	// keepRecent is how many of its newest messages a room keeps in memory,
	// to serve joins and short resumes without asking history or reading
	// the stream (0: none).
	keepRecent int
	// now is the clock of presence expiry; tests replace it.
	now func() time.Time

	mu    sync.Mutex
	rooms map[string]*room
	wg    sync.WaitGroup
}

func newHub(id string, presenceEvery time.Duration, nc *nats.Conn, b *backlog, feedBuffer, keepRecent int, log *slog.Logger) *hub {
	return &hub{id: id, presenceEvery: presenceEvery, nc: nc, backlog: b, feedBuffer: feedBuffer, keepRecent: keepRecent, log: log, now: time.Now, rooms: make(map[string]*room)}
}

// acquire returns the running room called name, starting it for the first
// client. Every acquire is paired with a release.
func (h *hub) acquire(name string) (*room, error) {
	h.mu.Lock()
	r, ok := h.rooms[name]
	if !ok {
		r = &room{
			name:          name,
			hub:           h,
			started:       make(chan struct{}),
			resync:        make(chan struct{}, 1),
			presenceDirty: make(chan struct{}, 1),
			clients:       make(map[*client]struct{}),
			local:         make(map[string]int),
			remote:        make(map[string]*remoteGateway),
			online:        []string{},
		}
		h.rooms[name] = r
		go r.start(h.feedBuffer)
	}
	r.refs++
	h.mu.Unlock()

	// Not abandoned on ctx: a room released while starting would start
	// after its stop and never be stopped. start is bounded by its own
	// timeouts.
	<-r.started
	if r.startErr != nil {
		h.release(r, nil)
		return nil, r.startErr
	}
	return r, nil
}

// release removes c (if not nil) from r and stops r after its last client.
func (h *hub) release(r *room, c *client) {
	if c != nil {
		r.leave(c)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	r.refs--
	if r.refs > 0 {
		return
	}
	if h.rooms[r.name] == r {
		delete(h.rooms, r.name)
	}
	r.stop()
}

// resyncAll makes every room check the stream for messages it may have
// missed while NATS was disconnected.
func (h *hub) resyncAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.rooms {
		select {
		case r.resync <- struct{}{}:
		default:
		}
	}
}

// stats reports the active rooms and the clients in them.
func (h *hub) stats() (rooms, clients int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.rooms {
		rooms++
		r.mu.Lock()
		clients += len(r.clients)
		r.mu.Unlock()
	}
	return rooms, clients
}

func (h *hub) wait() { h.wg.Wait() }

// room delivers one room's messages, in stream order, to its clients here.
type room struct {
	name string
	hub  *hub

	refs     int // guarded by hub.mu
	started  chan struct{}
	startErr error
	sub      *nats.Subscription
	feed     chan *nats.Msg
	presSub  *nats.Subscription
	presence chan *nats.Msg
	// presenceDirty asks the room goroutine to tell clients about a change
	// of the online list.
	presenceDirty chan struct{}
	resync        chan struct{}
	done          chan struct{}
	// behind is set when a stream read failed: feed messages are left to
	// the catch-up, retried every retryWait. Room goroutine only.
	behind    bool
	retryWait time.Duration
	dropped   int // feed messages NATS dropped, as last seen

	mu   sync.Mutex
	last uint64 // the newest sequence delivered to clients
	// recent holds the newest messages delivered, every one since the room
	// started here, up to 2*keepRecent.
	recent  []chat.Message
	clients map[*client]struct{}
	local   map[string]int            // connections per user on this gateway
	remote  map[string]*remoteGateway // users on other gateways, by gateway id
	online  []string                  // the online list clients were last told
}

// start subscribes to the room's feed, then reads the room's newest sequence:
// in that order, every message after it is certain to arrive on the feed or
// to be announced by a later message's Nats-Last-Sequence.
func (r *room) start(buffer int) {
	defer close(r.started)
	r.feed = make(chan *nats.Msg, buffer)
	sub, err := r.hub.nc.ChanSubscribe(chat.FeedSubject(r.name), r.feed)
	if err != nil {
		r.startErr = fmt.Errorf("subscribe to room %s: %w", r.name, err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.hub.nc.FlushWithContext(ctx); err != nil {
		_ = sub.Unsubscribe()
		r.startErr = fmt.Errorf("subscribe to room %s: %w", r.name, err)
		return
	}
	last, err := r.hub.backlog.lastSeq(ctx, r.name)
	if err != nil {
		_ = sub.Unsubscribe()
		r.startErr = err
		return
	}
	r.presence = make(chan *nats.Msg, 4096)
	presSub, err := r.hub.nc.ChanSubscribe(chat.PresenceSubject(r.name), r.presence)
	if err != nil {
		_ = sub.Unsubscribe()
		r.startErr = fmt.Errorf("subscribe to presence of room %s: %w", r.name, err)
		return
	}
	r.sub, r.presSub, r.last = sub, presSub, last
	r.done = make(chan struct{})
	r.hub.wg.Add(1)
	go r.run()
}

func (r *room) stop() {
	if r.sub == nil {
		return
	}
	_ = r.sub.Unsubscribe()
	_ = r.presSub.Unsubscribe()
	close(r.done)
}

func (r *room) run() {
	defer r.hub.wg.Done()
	// Ask the other gateways who is here rather than wait for their next
	// announcement.
	r.publishPresence(chat.PresenceSync, "", nil)
	tick := time.NewTicker(r.hub.presenceEvery)
	defer tick.Stop()
	// NATS drops feed messages when the room falls behind (a slow
	// consumer). A later message's Nats-Last-Sequence reveals the gap, but
	// if the room then goes quiet nothing would: check the drop count.
	check := time.NewTicker(time.Second)
	defer check.Stop()
	var flush <-chan time.Time // set while a presence broadcast is scheduled
	for {
		select {
		case <-r.presenceDirty:
			if flush == nil {
				flush = time.After(presenceCoalesce)
			}
		case <-flush:
			flush = nil
			r.broadcastPresence()
		case m := <-r.feed:
			r.handle(m)
		case m := <-r.presence:
			r.onPresence(m)
		case <-tick.C:
			r.announceHere()
		case <-check.C:
			if dropped, err := r.sub.Dropped(); err == nil && dropped != r.dropped {
				r.dropped = dropped
				r.catchUp()
			}
		case <-r.resync:
			r.catchUp()
		case <-r.done:
			return
		}
	}
}

// handle delivers one republished message, first filling any gap its
// Nats-Last-Sequence header reveals.
func (r *room) handle(m *nats.Msg) {
	seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil {
		r.hub.log.Warn("feed message without sequence", "room", r.name, "err", err)
		return
	}
	prev, _ := strconv.ParseUint(m.Header.Get(jetstream.LastSequenceHeader), 10, 64)
	last := r.lastDelivered()
	if seq <= last || r.behind {
		// Delivered already, or a stream read failed and the retry will
		// deliver this message, which is stored, in order with the rest.
		return
	}
	if prev > last {
		if err := r.fill(last+1, prev); err != nil {
			// Delivering m now would skip the gap for good.
			r.retryLater(err)
			return
		}
	}
	arrival, err := time.Parse(time.RFC3339Nano, m.Header.Get(jetstream.TimeStampHeaer))
	if err != nil {
		arrival = time.Now()
	}
	cm, err := chat.ParseMessage(m.Data, arrival)
	if err != nil {
		r.hub.metrics.badFeedMessages.Inc()
		r.hub.log.Warn("skipping bad message", "room", r.name, "seq", seq, "err", err)
		r.advance(seq)
		return
	}
	cm.Room, cm.Seq = r.name, seq
	r.deliver(cm)
}

// catchUp delivers whatever the stream holds beyond the last delivered
// message: after a reconnect the feed does not replay what it missed.
func (r *room) catchUp() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	newest, err := r.hub.backlog.lastSeq(ctx, r.name)
	if err != nil {
		r.retryLater(err)
		return
	}
	if last := r.lastDelivered(); newest > last {
		if err := r.fill(last+1, newest); err != nil {
			r.retryLater(err)
			return
		}
	}
	if r.behind {
		r.hub.log.Info("room caught up from the stream", "room", r.name)
	}
	r.behind, r.retryWait = false, 0
}

// retryLater marks the room behind the stream after a failed read (NATS
// reconnecting, a JetStream leader election) and schedules a catch-up, with
// backoff. Runs on the room goroutine.
func (r *room) retryLater(err error) {
	r.behind = true
	r.retryWait = min(max(2*r.retryWait, 250*time.Millisecond), 5*time.Second)
	r.hub.log.Warn("room behind the stream, retrying", "room", r.name, "in", r.retryWait, "err", err)
	time.AfterFunc(r.retryWait, func() {
		select {
		case r.resync <- struct{}{}:
		default:
		}
	})
}

// fill delivers the messages with from <= seq <= to from the stream, a
// batch at a time: a long gap (a busy room after a long outage) is neither
// held in memory whole nor lost to a single time limit, and what was read
// stays delivered if a later batch fails.
func (r *room) fill(from, to uint64) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n := 0
	err := r.hub.backlog.streamEach(ctx, r.name, from, to, func(batch []chat.Message, through uint64) error {
		for _, m := range batch {
			r.deliver(m)
		}
		r.advance(through)
		n += len(batch)
		return nil
	})
	if err != nil {
		return fmt.Errorf("fill gap %d-%d: %w", from, to, err)
	}
	r.advance(to)
	r.hub.metrics.gapFills.Inc()
	r.hub.log.Debug("filled gap from stream", "room", r.name, "from", from, "to", to, "messages", n)
	return nil
}

// deliver sends m to every client of the room. Called on the room
// goroutine only, which is also the only writer of r.last.
func (r *room) deliver(m chat.Message) {
	if m.Seq <= r.lastDelivered() {
		return
	}
	frame := encodeMessage(m) // outside the lock: joins need not wait for it
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last = m.Seq
	if keep := r.hub.keepRecent; keep > 0 {
		if len(r.recent) >= 2*keep {
			r.recent = append(r.recent[:0], r.recent[len(r.recent)-keep+1:]...)
		}
		r.recent = append(r.recent, m)
	}
	for c := range r.clients {
		c.push(frame, m.Seq)
	}
	r.hub.metrics.messagesOut.Inc()
	r.hub.metrics.deliveries.Add(float64(len(r.clients)))
}

func (r *room) advance(seq uint64) {
	r.mu.Lock()
	r.last = max(r.last, seq)
	r.mu.Unlock()
}

func (r *room) lastDelivered() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// join adds c in the joining state, where live messages wait in c.pending
// while its backlog is sent, and returns the sequence the backlog must reach
// and the room's recent messages, which end at it.
func (r *room) join(c *client) (last uint64, recent []chat.Message) {
	r.mu.Lock()
	c.joining = true
	r.clients[c] = struct{}{}
	r.local[c.user]++
	first := r.local[c.user] == 1
	c.push(r.presenceFrameLocked(c.user), 0)
	r.presenceChangedLocked()
	last, recent = r.last, slices.Clone(r.recent)
	r.mu.Unlock()
	if first {
		r.publishPresence(chat.PresenceJoin, c.user, nil)
	}
	return last, recent
}

// takePending hands over the live frames that arrived while c was joining,
// for the caller to write. When there are none left, c becomes live: from
// then on frames go to its send queue.
func (r *room) takePending(c *client) [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	frames := c.pending
	c.pending = nil
	if len(frames) == 0 {
		c.joining = false
	}
	return frames
}

func (r *room) leave(c *client) {
	r.mu.Lock()
	delete(r.clients, c)
	r.local[c.user]--
	last := r.local[c.user] == 0
	if last {
		delete(r.local, c.user)
	}
	r.presenceChangedLocked()
	r.mu.Unlock()
	if last {
		r.publishPresence(chat.PresenceLeave, c.user, nil)
	}
}
