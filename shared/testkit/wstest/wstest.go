// Package wstest is a test browser for the gateway's WebSocket protocol:
// it sends chat.ClientFrame and reads every frame the gateway sends as a
// chat.ServerFrame (also several in one message, with ?batch=1), in the
// background, so that the server never sees it as a slow client.
package wstest

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/testkit"
)

// Client is one WebSocket to a gateway.
type Client struct {
	// Conn is the socket, for what the protocol does not cover: a raw or
	// binary frame, closing it abruptly.
	Conn *websocket.Conn

	t testing.TB

	mu      sync.Mutex
	queue   []item        // received, not yet taken
	arrived chan struct{} // signalled when the queue grows or the read ends
	ended   bool          // the read loop ended; readErr says why
	readErr error
	done    chan struct{} // closed when the read loop ended
	// roster is who is online after the presence frames taken so far.
	roster chat.Roster
}

// item is a received frame, or what was wrong with a received message.
type item struct {
	frame chat.ServerFrame
	err   error
}

// Dial connects to url: a gateway WebSocket path on an http:// or ws://
// base, such as http://127.0.0.1:8080/ws/chat/lobby/alice?since=12. The
// socket is closed when the test ends.
func Dial(t testing.TB, url string) *Client {
	t.Helper()
	c, err := DialHeader(t, url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	return c
}

// DialHeader is Dial with request headers (an Origin, say), returning the
// error of a refused upgrade instead of failing the test.
func DialHeader(t testing.TB, url string, header http.Header) (*Client, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Deadline)
	defer cancel()
	if rest, ok := strings.CutPrefix(url, "http"); ok {
		url = "ws" + rest
	}
	conn, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: header})
	if err != nil {
		return nil, err
	}
	conn.SetReadLimit(1 << 24)
	c := &Client{Conn: conn, t: t, arrived: make(chan struct{}, 1), done: make(chan struct{})}
	go c.read()
	t.Cleanup(func() {
		conn.CloseNow()
		<-c.done
	})
	return c, nil
}

func (c *Client) read() {
	defer close(c.done)
	for {
		_, data, err := c.Conn.Read(context.Background())
		if err != nil {
			c.mu.Lock()
			c.ended, c.readErr = true, err
			c.mu.Unlock()
			c.signal()
			return
		}
		frames, err := chat.DecodeFrames(data)
		c.mu.Lock()
		for _, f := range frames {
			c.queue = append(c.queue, item{frame: f})
		}
		if err != nil {
			c.queue = append(c.queue, item{err: fmt.Errorf("server sent a bad frame: %w", err)})
		}
		c.mu.Unlock()
		c.signal()
	}
}

func (c *Client) signal() {
	select {
	case c.arrived <- struct{}{}:
	default:
	}
}

// Send writes one frame.
func (c *Client) Send(f chat.ClientFrame) {
	c.t.Helper()
	b, err := json.Marshal(f)
	if err != nil {
		c.t.Fatal(err)
	}
	c.SendRaw(websocket.MessageText, b)
}

// SendRaw writes one WebSocket message as given, valid or not.
func (c *Client) SendRaw(typ websocket.MessageType, data []byte) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Deadline)
	defer cancel()
	if err := c.Conn.Write(ctx, typ, data); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// Say sends a chat message, as the page does when the user presses Enter.
func (c *Client) Say(text, clientID string) {
	c.t.Helper()
	c.Send(chat.ClientFrame{Type: chat.FrameMessage, Text: text, ClientID: clientID})
}

// take returns the next frame, waiting until deadline; ok is false if the
// connection ended or the deadline passed first, with the reason.
func (c *Client) take(deadline <-chan time.Time) (f chat.ServerFrame, ok bool, why string) {
	for {
		c.mu.Lock()
		if len(c.queue) > 0 {
			it := c.queue[0]
			c.queue = c.queue[1:]
			c.mu.Unlock()
			if it.err != nil {
				c.t.Errorf("%v", it.err)
				continue
			}
			c.apply(it.frame)
			return it.frame, true, ""
		}
		ended, err := c.ended, c.readErr
		c.mu.Unlock()
		if ended {
			return f, false, fmt.Sprintf("connection closed: %v", err)
		}
		select {
		case <-c.arrived:
		case <-deadline:
			return f, false, fmt.Sprintf("nothing within %v", testkit.Deadline)
		}
	}
}

// NextMatch returns the first frame match accepts, skipping the frames
// before it, and fails the test if none came within testkit.Deadline. what
// names the frame in the failure, which lists the error frames skipped.
func (c *Client) NextMatch(what string, match func(chat.ServerFrame) bool) chat.ServerFrame {
	c.t.Helper()
	deadline := time.After(testkit.Deadline)
	var errs []string
	for {
		f, ok, why := c.take(deadline)
		if !ok {
			c.t.Fatalf("no %s: %s; error frames meanwhile: %v", what, why, errs)
		}
		if match(f) {
			return f
		}
		if f.Type == chat.FrameError {
			errs = append(errs, fmt.Sprintf("%s %q", f.Code, f.Error))
		}
	}
}

// Next returns the next frame of type typ, skipping other types.
func (c *Client) Next(typ chat.FrameType) chat.ServerFrame {
	c.t.Helper()
	return c.NextMatch(fmt.Sprintf("%q frame", typ), func(f chat.ServerFrame) bool { return f.Type == typ })
}

// Until returns every frame before the first one match accepts, which it
// consumes. It is how a test shows that something did not arrive: make
// something arrive after it (a barrier message), then look at what came
// before.
func (c *Client) Until(what string, match func(chat.ServerFrame) bool) []chat.ServerFrame {
	c.t.Helper()
	var before []chat.ServerFrame
	c.NextMatch(what, func(f chat.ServerFrame) bool {
		if match(f) {
			return true
		}
		before = append(before, f)
		return false
	})
	return before
}

// Frames yields the frames as they arrive, until the connection ends, for
// a client that reads in the background. A bad frame is yielded as an
// error.
func (c *Client) Frames() iter.Seq2[chat.ServerFrame, error] {
	return func(yield func(chat.ServerFrame, error) bool) {
		for {
			c.mu.Lock()
			if len(c.queue) == 0 {
				ended := c.ended
				c.mu.Unlock()
				if ended {
					return
				}
				<-c.arrived
				continue
			}
			it := c.queue[0]
			c.queue = c.queue[1:]
			c.mu.Unlock()
			c.apply(it.frame)
			if !yield(it.frame, it.err) {
				return
			}
		}
	}
}

func (c *Client) apply(f chat.ServerFrame) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.roster.Apply(f)
}

// Online is who is online in the room, and the guests among them, after
// the presence frames taken so far (the whole list, then the deltas).
func (c *Client) Online() (users, guests []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.roster.Users(), c.roster.Guests()
}

// Closed is closed once the connection has ended.
func (c *Client) Closed() <-chan struct{} { return c.done }

// WaitClosed waits until the server has closed the connection, at most
// testkit.Deadline, and returns why it ended (websocket.CloseStatus tells
// the status). Frames not read yet stay readable.
func (c *Client) WaitClosed() error {
	c.t.Helper()
	select {
	case <-c.done:
	case <-time.After(testkit.Deadline):
		c.t.Fatalf("connection still open after %v", testkit.Deadline)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readErr
}
