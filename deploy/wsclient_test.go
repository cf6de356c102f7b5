package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/testkit"
	"github.com/natschat/chat/shared/testkit/wstest"
)

// chatClient is a browser stand-in: one WebSocket at a time to a gateway.
// Like the web page, it dials again by itself when the connection ends
// (the gateway closes it with "try again" when it cannot serve the join,
// or dies), resuming with ?since= and the epoch of the last seq it got. A
// reset starts a new run of seqs (a segment), as the page starts its list
// over.
type chatClient struct {
	t          *testing.T
	room, user string

	mu       sync.Mutex
	conn     *wstest.Client
	gateway  string // host:port
	stopped  bool
	msgs     []chat.Message // every message, in the order received
	segments []segment      // msgs cut at each reset
	last     uint64
	epoch    int64                // of last, from the history frames
	acked    map[string]uint64    // client_id -> seq of the stored message
	errors   map[string]chat.Code // client_id -> code of the last error frame
	told     map[string]chat.Code // client_id -> code of its first error frame, kept
	notices  map[string]string    // client_id -> notice text
	problems []string             // a duplicate or out-of-order seq
	resets   int
	dials    int           // connections made
	closed   chan struct{} // closed when the current connection ends
}

func newChatClient(t *testing.T, gateway, room, user string) *chatClient {
	c := &chatClient{t: t, room: room, user: user,
		acked: map[string]uint64{}, errors: map[string]chat.Code{}, told: map[string]chat.Code{}, notices: map[string]string{}}
	c.connect(gateway)
	t.Cleanup(func() {
		c.mu.Lock()
		c.stopped = true
		conn := c.conn
		c.mu.Unlock()
		conn.Conn.CloseNow()
	})
	return c
}

// connect moves the client to gateway: it dials until it is connected
// there, resuming after the last seq it got.
func (c *chatClient) connect(gateway string) {
	c.t.Helper()
	c.mu.Lock()
	c.gateway = gateway
	old := c.conn
	c.mu.Unlock()
	deadline := time.Now().Add(testkit.Deadline)
	for {
		err := c.dial(gateway, old)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: connect to %s: %v", c.user, gateway, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// dial opens a WebSocket to gateway and makes it the client's connection,
// unless the connection is no longer old (another dial won).
func (c *chatClient) dial(gateway string, old *wstest.Client) error {
	c.mu.Lock()
	url := fmt.Sprintf("ws://%s/ws/chat/%s/%s", gateway, c.room, c.user)
	if c.last > 0 {
		url += fmt.Sprintf("?since=%d&epoch=%d", c.last, c.epoch)
	}
	c.mu.Unlock()
	conn, err := wstest.DialHeader(c.t, url, nil)
	if err != nil {
		return err
	}
	closed := make(chan struct{})
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != old || c.stopped {
		conn.Conn.CloseNow()
		return nil
	}
	if old != nil {
		old.Conn.CloseNow()
	}
	c.conn, c.gateway, c.closed = conn, gateway, closed
	c.dials++
	go c.read(conn, closed)
	return nil
}

// redial reconnects after conn ended, to the client's gateway, until it
// succeeds or the test moves the client elsewhere.
func (c *chatClient) redial(conn *wstest.Client) {
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		time.Sleep(wait)
		c.mu.Lock()
		gateway, current := c.gateway, c.conn == conn && !c.stopped
		c.mu.Unlock()
		if !current || c.dial(gateway, conn) == nil {
			return
		}
	}
}

func (c *chatClient) read(conn *wstest.Client, closed chan struct{}) {
	defer func() {
		close(closed)
		go c.redial(conn)
	}()
	for f, err := range conn.Frames() {
		if err != nil {
			c.problem("%v", err)
			continue
		}
		switch f.Type {
		case chat.FrameHistory:
			c.mu.Lock()
			if f.Reset {
				c.resets++
				c.last = 0
				c.segments = append(c.segments, segment{epoch: f.Epoch})
			}
			if f.Epoch != 0 {
				c.epoch = f.Epoch
			}
			c.mu.Unlock()
			for _, m := range f.Messages {
				c.add(m)
			}
		case chat.FrameMessage:
			c.add(f.Message)
		case chat.FrameError:
			c.mu.Lock()
			c.errors[f.ClientID] = f.Code
			if _, ok := c.told[f.ClientID]; !ok {
				c.told[f.ClientID] = f.Code
			}
			c.mu.Unlock()
		case chat.FrameNotice:
			c.mu.Lock()
			c.notices[f.ClientID] = f.Text
			c.mu.Unlock()
		}
	}
}

func (c *chatClient) add(m chat.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m.Seq <= c.last {
		c.problems = append(c.problems, fmt.Sprintf("seq %d after %d (duplicate or out of order)", m.Seq, c.last))
		return
	}
	c.last = m.Seq
	c.msgs = append(c.msgs, m)
	if len(c.segments) == 0 {
		c.segments = append(c.segments, segment{epoch: c.epoch})
	}
	seg := &c.segments[len(c.segments)-1]
	seg.msgs = append(seg.msgs, m)
	if m.ClientID != "" && m.User == c.user {
		c.acked[m.ClientID] = m.Seq
	}
}

// segment is a run of messages between resets, of one epoch.
type segment struct {
	epoch int64
	msgs  []chat.Message
}

func (c *chatClient) problem(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.problems = append(c.problems, fmt.Sprintf(format, args...))
}

func (c *chatClient) write(text, clientID string) {
	c.mu.Lock()
	conn := c.conn
	delete(c.errors, clientID)
	c.mu.Unlock()
	data, _ := json.Marshal(chat.ClientFrame{Type: chat.FrameMessage, Text: text, ClientID: clientID})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = conn.Conn.Write(ctx, websocket.MessageText, data) // a lost write is resent
}

// deliver sends text with clientID until done reports it went through, as
// a browser does: an error frame or no answer within 10s means send again
// with the same client_id, which the stack de-duplicates.
func (c *chatClient) deliver(text, clientID string, done func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for attempt := 1; ; attempt++ {
		c.write(text, clientID)
		retryAt := time.Now().Add(10 * time.Second)
		for {
			if done() {
				return
			}
			if time.Now().After(deadline) {
				c.t.Errorf("%s: %q not done after %d attempts", c.user, text, attempt)
				return
			}
			c.mu.Lock()
			failed := c.errors[clientID] != ""
			c.mu.Unlock()
			if failed || time.Now().After(retryAt) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		// Back off a little so an outage is not hammered.
		time.Sleep(200 * time.Millisecond)
	}
}

// say sends a chat message and waits for its stored copy (the ack).
func (c *chatClient) say(text, clientID string) {
	c.t.Helper()
	c.deliver(text, clientID, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.acked[clientID] > 0
	})
}

// command sends a command and waits until seen reports its effect.
func (c *chatClient) command(text, clientID string, seen func() bool) {
	c.t.Helper()
	c.deliver(text, clientID, seen)
}

// count is how many received messages satisfy match.
func (c *chatClient) count(match func(chat.Message) bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, m := range c.msgs {
		if match(m) {
			n++
		}
	}
	return n
}

// outcome is what the client knows of the message sent as clientID: the
// seq of its stored copy (0: none yet), the code of an error frame since it
// was last written, and the connections made so far (a new one means a
// write may have been lost).
func (c *chatClient) outcome(clientID string) (seq uint64, code chat.Code, dials int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.acked[clientID], c.errors[clientID], c.dials
}

// clearError forgets the error frame about clientID, to see the next one.
func (c *chatClient) clearError(clientID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.errors, clientID)
}

// bounce ends the current connection as a lost network would; the client
// dials again by itself and resumes.
func (c *chatClient) bounce() {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	conn.Conn.CloseNow()
}

func (c *chatClient) hasNotice(clientID string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.notices[clientID] != ""
}

func (c *chatClient) seqs() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]uint64, len(c.msgs))
	for i, m := range c.msgs {
		out[i] = m.Seq
	}
	return out
}

func (c *chatClient) lastSeq() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

func (c *chatClient) connClosed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

func textHas(sub string) func(chat.Message) bool {
	return func(m chat.Message) bool { return strings.Contains(m.Text, sub) }
}
