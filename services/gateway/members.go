package gateway

import (
	"slices"
	"sync"

	"github.com/natschat/chat/shared/chat"
)

// members is a room's registry of clients on this gateway and its fan-out:
// each message, encoded once, is queued to every client. It also keeps the
// room's newest messages, which answer most joins and short resumes with no
// history request or stream read. One mutex guards it all: a join takes its
// place in the sequence (add) atomically with being added to the fan-out.
type members struct {
	metrics *metrics
	// keep is how many of its newest messages the room keeps (0: none),
	// keepBytes how many bytes they may hold at most (see messageSize).
	keep, keepBytes int

	mu      sync.Mutex
	last    uint64 // the newest sequence fanned out
	clients map[*client]struct{}
	// recent holds the newest messages fanned out, every one since the
	// room started here (and the newest stored before: seed), up to
	// 2*keep of them and keepBytes.
	recent      []chat.Message
	recentBytes int
}

func newMembers(keep, keepBytes int, m *metrics) *members {
	return &members{metrics: m, keep: keep, keepBytes: keepBytes, clients: make(map[*client]struct{})}
}

// deliver fans m out to every client, in order: the caller (the room's
// feed) is the only one, and it delivers each sequence once, increasing.
func (ms *members) deliver(m chat.Message) {
	frame := encodeMessage(m) // outside the lock: joins need not wait for it
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if m.Seq <= ms.last {
		return
	}
	ms.last = m.Seq
	ms.remember(m)
	for c := range ms.clients {
		c.push(frame, m.Seq)
	}
	ms.metrics.messagesOut.Inc()
	ms.metrics.deliveries.Add(float64(len(ms.clients)))
}

// remember adds m to recent, dropping the oldest beyond the bounds. The
// ring is trimmed to keep in one go when it reaches 2*keep, so most
// appends copy nothing.
func (ms *members) remember(m chat.Message) {
	if ms.keep <= 0 {
		return
	}
	if len(ms.recent) >= 2*ms.keep {
		drop := len(ms.recent) - ms.keep + 1
		for _, old := range ms.recent[:drop] {
			ms.recentBytes -= messageSize(old)
		}
		ms.recent = append(ms.recent[:0], ms.recent[drop:]...)
	}
	ms.recent = append(ms.recent, m)
	ms.recentBytes += messageSize(m)
	drop := 0
	for ms.recentBytes > ms.keepBytes && drop < len(ms.recent)-1 {
		ms.recentBytes -= messageSize(ms.recent[drop])
		drop++
	}
	if drop > 0 {
		// The byte bound broke the "every message since the room started"
		// promise for the dropped ones; joins check recent[0] anyway.
		ms.recent = slices.Delete(ms.recent, 0, drop)
	}
}

// seed puts msgs, the room's newest stored messages up to its position,
// every one of them from the first on, in recent: before any message is
// fanned out, so recent stays every message from its first to the newest.
func (ms *members) seed(msgs []chat.Message) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if len(ms.recent) > 0 || len(msgs) == 0 || msgs[len(msgs)-1].Seq > ms.last {
		return
	}
	for _, m := range msgs {
		ms.remember(m)
	}
}

// advance moves the room's position past seq without a message to deliver
// (garbage in the stream, the end of a gap).
func (ms *members) advance(seq uint64) {
	ms.mu.Lock()
	ms.last = max(ms.last, seq)
	ms.mu.Unlock()
}

// restart empties the room's position and recent messages, the stream
// having started over in epoch, and tells every client to drop what it
// shows: the new stream's messages follow.
func (ms *members) restart(epoch int64) {
	frame := mustJSON(chat.HistoryFrame{Type: chat.FrameHistory, Messages: []chat.Message{}, Reset: true, Epoch: epoch})
	ms.mu.Lock()
	defer ms.mu.Unlock()
	ms.last, ms.recent, ms.recentBytes = 0, nil, 0
	for c := range ms.clients {
		c.restart(frame)
	}
}

func (ms *members) lastDelivered() uint64 {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return ms.last
}

// add registers c, in the joining state: from now on the fan-out holds its
// live frames in c.pending. It returns the last sequence fanned out before
// c was added, and the room's recent messages, which end at it: the join's
// backlog must reach exactly that far.
func (ms *members) add(c *client) (upTo uint64, recent []chat.Message) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	c.mu.Lock()
	c.joining = true
	c.mu.Unlock()
	ms.clients[c] = struct{}{}
	return ms.last, slices.Clone(ms.recent)
}

func (ms *members) remove(c *client) {
	ms.mu.Lock()
	delete(ms.clients, c)
	ms.mu.Unlock()
}

func (ms *members) count() int {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return len(ms.clients)
}

// messageSize approximates the memory a kept message holds: its strings
// and the fixed part of the struct.
func messageSize(m chat.Message) int {
	return len(m.Room) + len(m.User) + len(m.Text) + len(m.Kind) + len(m.ClientID) + 120
}
