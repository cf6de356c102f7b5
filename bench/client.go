package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// roomState is one chat room of a scenario: the publishers that send to it,
// whose ids are consecutive from firstPub, and its members.
type roomState struct {
	name     string
	firstPub int
	pubs     []*publisher
	members  []*member
}

// publisher is the sending side of a member. Its messages are numbered from
// 0; sent counts the frames written to the socket, echoed the ones that came
// back to it through the room.
type publisher struct {
	id     int
	sent   atomic.Int64
	echoed atomic.Int64
	echo   chan struct{} // a token per echo, dropped when full
	err    error         // why it stopped early; read after it returned
	// outbox, set for S7, keeps every message until its echo and sends
	// it again after a reconnect (storm.go).
	outbox *outbox
}

// member is one WebSocket client in a room. Every member receives; some
// also publish. The fields below conn are owned by the read loop until done
// is closed.
type member struct {
	room   *roomState
	user   string
	pub    *publisher
	peer   peer
	conn   *websocket.Conn
	joined chan struct{} // closed when the peer said the member joined
	done   chan struct{} // closed when the read loop ended
	// readErr is why the read loop ended: the scenario closing the
	// connection, or the server dropping it (a slow client, say).
	readErr error

	seen        [][]uint64 // per publisher of the room, a bit per message n
	hist        *histogram
	dups        int64
	foreign     int64 // bench messages from publishers of another room
	errorFrames int64
	rateLimited int64
	firstError  string
	isJoined    bool
	// presence counts and applies presence frames (S9); nil: ignored.
	presence  *presenceTally
	delivered atomic.Int64 // unique deliveries, polled while running
	lastAt    atomic.Int64 // Unix ns of the newest delivery

	// follow, set for S7, makes the member outlive its connection: it
	// keeps its place in the room and reconnects (storm.go). Its read
	// loop then sets conn anew for each connection.
	follow *follower
}

func newMember(r *roomState, user string, pub *publisher) *member {
	return &member{room: r, user: user, pub: pub, joined: make(chan struct{}), done: make(chan struct{})}
}

// dial opens the member's WebSocket to peer p, starts reading it and sends
// the peer's hello.
func (m *member) dial(ctx context.Context, wsBase string, p peer) error {
	url := p.url(wsBase, m.room.name, m.user)
	conn, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		return fmt.Errorf("dial %s: %w", url, err)
	}
	conn.SetReadLimit(1 << 20)
	m.conn, m.peer = conn, p
	if m.follow != nil {
		m.follow.start(m, url, conn)
	} else {
		go m.readLoop()
	}
	if hello := p.hello(m.room.name); hello != nil {
		if err := conn.Write(ctx, websocket.MessageText, hello); err != nil {
			return fmt.Errorf("hello to %s: %w", url, err)
		}
	}
	return nil
}

// readLoop reads frames until the connection ends. Reads use a context
// without deadline (no per-read timer); the scenario ends them by closing
// the connection.
func (m *member) readLoop() {
	defer close(m.done)
	m.readErr = m.read(m.conn)
}

// read handles conn's messages until it fails, and returns why. The
// receive time of every line of a WebSocket message is taken once the
// whole message is read: the latest a reader could take it, so batching
// never flatters a peer.
func (m *member) read(conn *websocket.Conn) error {
	var buf bytes.Buffer
	for {
		_, r, err := conn.Reader(context.Background())
		if err != nil {
			return err
		}
		buf.Reset()
		if _, err := buf.ReadFrom(r); err != nil {
			return err
		}
		now := time.Now().UnixNano()
		eachLine(buf.Bytes(), func(line []byte) { m.handle(line, now) })
	}
}

// eachLine calls f with every newline-separated line of a WebSocket
// message: both peers may send several frames in one.
func eachLine(data []byte, f func([]byte)) {
	for line := range bytes.Lines(data) {
		if line = bytes.TrimSuffix(line, []byte{'\n'}); len(line) > 0 {
			f(line)
		}
	}
}

func (m *member) handle(f []byte, now int64) {
	if m.follow != nil {
		m.follow.handle(m, f, now)
		return
	}
	kind, rest := m.peer.read(f)
	switch kind {
	case frameMessage:
		m.deliverText(rest, now)
	case frameJoined:
		m.markJoined()
	case frameRateLimited, frameError:
		m.refused(kind, f)
	case framePresence:
		if m.presence != nil {
			m.presence.add(rest)
		}
	case framePing:
		// Rare (every 25 s by default in Centrifugo) and bounded: the
		// read loop may wait for the write.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = m.conn.Write(ctx, websocket.MessageText, rest)
		cancel()
	}
}

// markJoined records the first joined frame: the join is done.
func (m *member) markJoined() {
	if !m.isJoined {
		m.isJoined = true
		close(m.joined)
	}
}

// refused counts an error frame.
func (m *member) refused(kind frameKind, f []byte) {
	m.errorFrames++
	if kind == frameRateLimited {
		m.rateLimited++
	}
	if m.firstError == "" {
		m.firstError = string(f)
	}
	if !m.isJoined {
		// Refused before joining: end the join at once, with this
		// frame as the reason.
		m.conn.CloseNow()
	}
}

// deliverText delivers the message whose text (after "b1|") starts rest,
// and reports whether it was new to m.
func (m *member) deliverText(rest []byte, now int64) bool {
	pub, n, sentAt, ok := parseText(rest)
	if !ok {
		m.foreign++
		return false
	}
	return m.deliver(pub, n, now, sentAt)
}

// deliver records message n of publisher pub, received at now, and reports
// whether it was new to m (not a duplicate, nor another room's).
func (m *member) deliver(pub, n int, now, sentAt int64) bool {
	slot := pub - m.room.firstPub
	if slot < 0 || slot >= len(m.room.pubs) || n < 0 {
		m.foreign++
		return false
	}
	if m.seen == nil {
		m.seen = make([][]uint64, len(m.room.pubs))
		m.hist = new(histogram)
	}
	word := n / 64
	if word >= len(m.seen[slot]) {
		grown := make([]uint64, max(word+1, 2*len(m.seen[slot])))
		copy(grown, m.seen[slot])
		m.seen[slot] = grown
	}
	bit := uint64(1) << (n % 64)
	if m.seen[slot][word]&bit != 0 {
		m.dups++
		return false
	}
	m.seen[slot][word] |= bit
	m.hist.record(time.Duration(now - sentAt))
	m.delivered.Add(1)
	m.lastAt.Store(now)
	if p := m.pub; p != nil && p.id == pub {
		p.echoed.Add(1)
		select {
		case p.echo <- struct{}{}:
		default:
		}
		if p.outbox != nil {
			p.outbox.ack(n)
		}
	}
	return true
}

// unique counts the distinct messages of publisher slot below n received.
func (m *member) unique(slot int, n int64) int64 {
	if m.seen == nil {
		return 0
	}
	var c int64
	for i, w := range m.seen[slot] {
		lo := int64(i) * 64
		if lo >= n {
			break
		}
		if n-lo < 64 {
			w &= 1<<(n-lo) - 1
		}
		c += int64(bits.OnesCount64(w))
	}
	return c
}

// parseText reads "<pub>|<n>|<unixnano>" followed by the closing quote.
func parseText(b []byte) (pub, n int, sentAt int64, ok bool) {
	var p, k, ts int64
	if p, b, ok = parseUint(b, '|'); !ok {
		return
	}
	if k, b, ok = parseUint(b, '|'); !ok {
		return
	}
	if ts, _, ok = parseUint(b, '"'); !ok {
		return
	}
	return int(p), int(k), ts, true
}

func parseUint(b []byte, end byte) (v int64, rest []byte, ok bool) {
	for i, c := range b {
		switch {
		case c >= '0' && c <= '9' && i < 19:
			v = v*10 + int64(c-'0')
		case c == end && i > 0:
			return v, b[i+1:], true
		default:
			return 0, nil, false
		}
	}
	return 0, nil, false
}

// errStalled means an unpaced publisher saw no echo of its messages for a
// while: deliveries to it are lost or the server is stuck.
var errStalled = errors.New("publisher stalled: no echo of its messages for 5s")

// pacing is how publishers send during a scenario.
type pacing struct {
	rate   float64 // messages per second of each publisher; 0: window-bound
	window int     // unechoed messages a window-bound publisher may have
	until  time.Time
	// uniform spaces messages evenly (from a random phase) instead of
	// at random (Poisson arrivals); see run.
	uniform bool
	// stampWrite stamps every message with the time it is written, also
	// a late one: see run.
	stampWrite bool
}

// run sends messages on m's connection until the deadline: at rate per
// second when rate is above 0 (open loop: the schedule does not wait for
// the server), else as fast as a window of unechoed messages allows.
//
// Paced messages arrive as a Poisson process, the gaps between them drawn
// at random around 1/rate, as messages from people do: every publisher has
// its own phase, and bursts of several messages within a millisecond
// happen as often as chance makes them. (uniform: exactly 1/rate apart.)
//
// A message that is late, due while the previous write was still
// blocked, goes at once and carries the time it was due, not the time it
// was written: a server that stops reading blocks the writes, and stamps
// taken after the block would hide that wait from the latency
// (coordinated omission). A message the publisher waited for carries the
// time its timer woke it: the timer's lag is the tool's, not the server's.
func (p *publisher) run(ctx context.Context, m *member, pc pacing) {
	due := time.Now()
	gap := func() time.Duration {
		if pc.uniform {
			return time.Duration(float64(time.Second) / pc.rate)
		}
		return time.Duration(rand.ExpFloat64() / pc.rate * float64(time.Second))
	}
	if pc.rate > 0 {
		if pc.uniform {
			// A random phase: publishers started together would
			// otherwise all send at the same instants.
			due = due.Add(rand.N(gap()))
		} else {
			due = due.Add(gap())
		}
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	buf := make([]byte, 0, 160)
	for n := int64(0); ; n++ {
		now := time.Now()
		if !now.Before(pc.until) || ctx.Err() != nil {
			return
		}
		stamp := now
		if pc.rate > 0 {
			if wait := due.Sub(now); wait > 0 {
				if due.After(pc.until) {
					return
				}
				timer.Reset(wait)
				select {
				case <-timer.C:
				case <-ctx.Done():
					return
				}
				stamp = time.Now()
			} else {
				stamp = due
			}
			due = due.Add(gap())
		} else if err := p.waitWindow(ctx, n, pc.window); err != nil {
			p.err = err
			return
		}
		if pc.stampWrite {
			stamp = time.Now()
		}
		buf = m.peer.appendMessage(buf[:0], m.room.name, p.id, n, stamp.UnixNano())
		// No write deadline: the scenario closes the connection to stop a
		// blocked write, and a timer per message would cost as much as
		// the write.
		if err := m.conn.Write(context.Background(), websocket.MessageText, buf); err != nil {
			if ctx.Err() == nil {
				p.err = fmt.Errorf("publisher %d: %w", p.id, err)
			}
			return
		}
		p.sent.Add(1)
	}
}

func (p *publisher) waitWindow(ctx context.Context, n int64, window int) error {
	for n-p.echoed.Load() >= int64(window) {
		select {
		case <-p.echo:
		case <-time.After(5 * time.Second):
			return errStalled
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
