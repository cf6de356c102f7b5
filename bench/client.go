package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/natschat/chat/shared/chat"
)

// Message frames, one per delivery, are read without decoding the JSON:
// their type and the text of this tool's messages are found with
// bytes.Index, because the tool must stay cheaper than the server it
// measures. Error frames are rare and decoded into chat.ServerFrame;
// presence and notices are skipped.
var (
	typeField    = []byte(`"type":"`)
	messageFrame = []byte(chat.FrameMessage)
	historyFrame = []byte(chat.FrameHistory)
	errorFrame   = []byte(chat.FrameError)
	// textMarker starts the text of every message this tool sends:
	// b1|<publisher>|<n>|<send time, Unix ns>.
	textMarker = []byte(`"text":"b1|`)
)

// frameType returns the value of f's "type" field, wherever the field is.
// The first match is the frame's own: a quote inside a JSON string is
// escaped, and the messages in a history frame have no type.
func frameType(f []byte) []byte {
	i := bytes.Index(f, typeField)
	if i < 0 {
		return nil
	}
	v := f[i+len(typeField):]
	j := bytes.IndexByte(v, '"')
	if j < 0 {
		return nil
	}
	return v[:j]
}

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
}

// member is one WebSocket client in a room. Every member receives; some
// also publish. The fields below conn are owned by the read loop until done
// is closed.
type member struct {
	room   *roomState
	user   string
	pub    *publisher
	conn   *websocket.Conn
	joined chan struct{} // closed when the history frame arrived
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
	delivered   atomic.Int64 // unique deliveries, polled while running
	lastAt      atomic.Int64 // Unix ns of the newest delivery
}

func newMember(r *roomState, user string, pub *publisher) *member {
	return &member{room: r, user: user, pub: pub, joined: make(chan struct{}), done: make(chan struct{})}
}

// dial opens the member's WebSocket and starts reading it.
func (m *member) dial(ctx context.Context, wsBase string) error {
	// batch=1: the gateway may put several frames, one per line, in one
	// WebSocket message when a client is behind.
	url := wsBase + "/ws/chat/" + m.room.name + "/" + m.user + "?batch=1"
	conn, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		return fmt.Errorf("dial %s: %w", url, err)
	}
	conn.SetReadLimit(1 << 20)
	m.conn = conn
	go m.readLoop()
	return nil
}

// readLoop reads frames until the connection ends. Reads use a context
// without deadline (no per-read timer); the scenario ends them by closing
// the connection.
func (m *member) readLoop() {
	defer close(m.done)
	var buf bytes.Buffer
	for {
		_, r, err := m.conn.Reader(context.Background())
		if err != nil {
			m.readErr = err
			return
		}
		buf.Reset()
		if _, err := buf.ReadFrom(r); err != nil {
			m.readErr = err
			return
		}
		now := time.Now().UnixNano()
		data := buf.Bytes()
		for len(data) > 0 {
			line := data
			if i := bytes.IndexByte(data, '\n'); i >= 0 {
				line, data = data[:i], data[i+1:]
			} else {
				data = nil
			}
			m.handle(line, now)
		}
	}
}

func (m *member) handle(f []byte, now int64) {
	switch typ := frameType(f); {
	case bytes.Equal(typ, messageFrame):
		i := bytes.Index(f, textMarker)
		if i < 0 {
			return // not a bench message (a bot's, say)
		}
		pub, n, sentAt, ok := parseText(f[i+len(textMarker):])
		if !ok {
			m.foreign++
			return
		}
		m.deliver(pub, n, now, sentAt)
	case bytes.Equal(typ, historyFrame):
		if !m.isJoined {
			m.isJoined = true
			close(m.joined)
		}
	case bytes.Equal(typ, errorFrame):
		m.errorFrames++
		var sf chat.ServerFrame
		_ = json.Unmarshal(f, &sf) // a malformed one still counts as an error
		if sf.Code == chat.CodeRateLimited {
			m.rateLimited++
		}
		if m.firstError == "" {
			m.firstError = string(f)
		}
	}
}

func (m *member) deliver(pub, n int, now, sentAt int64) {
	slot := pub - m.room.firstPub
	if slot < 0 || slot >= len(m.room.pubs) || n < 0 {
		m.foreign++
		return
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
		return
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
	}
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

// run sends messages on conn until the deadline: rate per second when rate is
// above 0, else as fast as a window of unechoed messages allows. A message is
// due at start+n/rate; one that is late goes at once, so the average rate
// holds while the sender keeps up.
func (p *publisher) run(ctx context.Context, conn *websocket.Conn, rate float64, window int, until time.Time) {
	start := time.Now()
	if rate > 0 {
		// A random phase: publishers started together would otherwise all
		// send at the same instants, a burst load no real room produces.
		start = start.Add(rand.N(time.Duration(float64(time.Second) / rate)))
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	buf := make([]byte, 0, 128)
	for n := int64(0); ; n++ {
		now := time.Now()
		if !now.Before(until) || ctx.Err() != nil {
			return
		}
		if rate > 0 {
			due := start.Add(time.Duration(float64(n) / rate * float64(time.Second)))
			if wait := due.Sub(now); wait > 0 {
				if due.After(until) {
					return
				}
				timer.Reset(wait)
				select {
				case <-timer.C:
				case <-ctx.Done():
					return
				}
			}
		} else if err := p.waitWindow(ctx, n, window); err != nil {
			p.err = err
			return
		}
		buf = appendFrame(buf[:0], p.id, n, time.Now().UnixNano())
		// No write deadline: the scenario closes the connection to stop a
		// blocked write, and a timer per message would cost as much as
		// the write.
		if err := conn.Write(context.Background(), websocket.MessageText, buf); err != nil {
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

// appendFrame appends the client frame of message n of publisher pub. The
// client_id makes it a browser-like message (its echo is the ack).
func appendFrame(b []byte, pub int, n int64, sentAt int64) []byte {
	b = append(b, `{"type":"message","text":"b1|`...)
	b = strconv.AppendInt(b, int64(pub), 10)
	b = append(b, '|')
	b = strconv.AppendInt(b, n, 10)
	b = append(b, '|')
	b = strconv.AppendInt(b, sentAt, 10)
	b = append(b, `","client_id":"`...)
	b = strconv.AppendInt(b, int64(pub), 10)
	b = append(b, '-')
	b = strconv.AppendInt(b, n, 10)
	return append(b, `"}`...)
}
