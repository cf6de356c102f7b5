package gateway

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// hub owns the rooms that have clients on this gateway: one feed
// subscription and one presence subscription per room, however many
// clients are in it.
type hub struct {
	// id names this gateway in presence events; presenceEvery is how often
	// it announces its users.
	id            string
	presenceEvery time.Duration
	now           func() time.Time
	nc            *nats.Conn
	src           *natsSource
	watch         *streamWatch
	metrics       *metrics
	log           *slog.Logger
	// feedBuffer bounds the messages waiting for a room's feed; when it
	// overflows NATS drops them and the gap is refilled from the stream.
	feedBuffer int
	// keepRecent is how many of its newest messages a room keeps in memory,
	// to serve joins and short resumes without asking history or reading
	// the stream (0: none); keepBytes bounds their size.
	keepRecent, keepBytes int
	// backlog reads a starting room's newest messages into its recent
	// ones (room.seed).
	backlog backlog
	// maxRooms bounds the rooms running at once (0: no bound).
	maxRooms int

	mu    sync.Mutex
	rooms map[string]*room
	// wg counts the rooms' goroutines (feed and presence).
	wg sync.WaitGroup
}

// newHub is a hub that keeps no recent messages.
func newHub(id string, presenceEvery time.Duration, nc *nats.Conn, src *natsSource, log *slog.Logger) *hub {
	return &hub{
		id: id, presenceEvery: presenceEvery, now: time.Now, nc: nc, src: src, log: log,
		feedBuffer: 4096, rooms: make(map[string]*room),
	}
}

// room is one room on this gateway: its feed (the sequencer), its members
// (registry, fan-out and recent messages) and its presence.
type room struct {
	name     string
	hub      *hub
	refs     int // guarded by hub.mu
	started  chan struct{}
	startErr error
	members  *members
	feed     *feed
	presence *presence
}

// errTooManyRooms refuses a room beyond the gateway's bound.
var errTooManyRooms = errors.New("this gateway serves as many rooms as it may: try again later")

// acquire returns the running room called name, starting it for the first
// client. Every acquire is paired with a release.
func (h *hub) acquire(name string) (*room, error) {
	h.mu.Lock()
	r, ok := h.rooms[name]
	if !ok && h.maxRooms > 0 && len(h.rooms) >= h.maxRooms {
		h.mu.Unlock()
		return nil, errTooManyRooms
	}
	if !ok {
		r = &room{name: name, hub: h, started: make(chan struct{})}
		r.members = newMembers(h.keepRecent, h.keepBytes, h.metrics)
		r.feed = newFeed(h, name, r.members)
		r.presence = newPresence(h, name)
		h.rooms[name] = r
		go r.start()
	}
	r.refs++
	h.mu.Unlock()

	// Not abandoned on a context: a room released while starting would
	// start after its stop and never be stopped. start is bounded by its
	// own timeout.
	<-r.started
	if r.startErr != nil {
		h.release(r, nil)
		return nil, r.startErr
	}
	return r, nil
}

// release takes c (if not nil) out of r and stops r after its last client.
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
	if r.startErr == nil {
		r.feed.unsubscribe()
		r.presence.stop()
	}
}

// start subscribes the room's feed and presence, then runs both.
func (r *room) start() {
	defer close(r.started)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.feed.subscribe(ctx); err != nil {
		r.startErr = err
		return
	}
	r.seed(ctx)
	if err := r.presence.subscribe(); err != nil {
		r.feed.unsubscribe()
		r.startErr = err
		return
	}
	r.hub.wg.Add(2)
	go func() {
		defer r.hub.wg.Done()
		r.feed.run()
	}()
	go func() {
		defer r.hub.wg.Done()
		r.presence.run()
	}()
}

// seed fills the room's recent messages with its newest stored ones, up to
// where the feed starts, before the first client is added: the clients of
// a gateway that just restarted come back all at once with ?since=, and
// the room answers their resumes from memory, one read for the room
// instead of a history request or a stream read for each. Best effort: a
// room that cannot read them starts with none, and its joins read for
// themselves, as they would without it.
func (r *room) seed(ctx context.Context) {
	if r.hub.keepRecent <= 0 || r.hub.backlog.src == nil {
		return
	}
	msgs, _, err := r.hub.backlog.latest(ctx, r.name, r.members.lastDelivered(), r.hub.keepRecent)
	if err != nil {
		r.hub.log.Debug("room starts without its recent messages", "room", r.name, "err", err)
		return
	}
	r.members.seed(msgs)
}

// leave takes c out of the fan-out and of presence.
func (r *room) leave(c *client) {
	r.members.remove(c)
	r.presence.left(c)
}

// resyncAll makes every room check the stream for messages it may have
// missed while NATS was disconnected.
func (h *hub) resyncAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.rooms {
		r.feed.catchUpSoon()
	}
}

// startOver resynchronises every room after the stream started over. A
// room still starting has read its position from the new stream already,
// or its feed is told once it runs.
func (h *hub) startOver() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.rooms {
		r.feed.startOver()
	}
}

// stats reports the active rooms and the clients in them.
func (h *hub) stats() (rooms, clients int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.rooms {
		rooms++
		clients += r.members.count()
	}
	return rooms, clients
}

// wait returns when every room's goroutines have ended.
func (h *hub) wait() { h.wg.Wait() }
