package gateway

import (
	"context"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// client is one browser WebSocket in a room. The room pushes shared frames
// into queue without ever blocking; a client whose queue is full is too slow
// and is disconnected instead of stalling the room.
type client struct {
	conn *websocket.Conn
	room string
	user string

	queue chan []byte
	// joining and pending are guarded by the room's mutex: while joining,
	// live frames wait in pending until the backlog is written.
	joining bool
	pending [][]byte

	// slow counts clients dropped for a full queue.
	slow prometheus.Counter

	limiter *rate.Limiter
	// commands bounds the bot requests in flight for this client.
	commands chan struct{}

	closeOnce sync.Once
	gone      chan struct{} // closed when the client starts closing
	closed    chan struct{} // closed when the close handshake is over
}

func newClient(conn *websocket.Conn, room, user string, queueLen int, limiter *rate.Limiter, slow prometheus.Counter) *client {
	return &client{
		slow:     slow,
		conn:     conn,
		room:     room,
		user:     user,
		queue:    make(chan []byte, queueLen),
		limiter:  limiter,
		commands: make(chan struct{}, 2),
		gone:     make(chan struct{}),
		closed:   make(chan struct{}),
	}
}

// maxPending bounds the live frames held for a client while its backlog is
// written; a client that cannot catch up with that is too slow for the room.
const maxPending = 4096

// push queues a room frame. Called with the room's mutex held.
func (c *client) push(frame []byte) {
	if c.joining {
		if len(c.pending) >= maxPending {
			c.dropSlow()
			return
		}
		c.pending = append(c.pending, frame)
		return
	}
	c.send(frame)
}

// send queues a frame without blocking; a full queue disconnects the client.
func (c *client) send(frame []byte) {
	select {
	case c.queue <- frame:
	default:
		c.dropSlow()
	}
}

func (c *client) dropSlow() {
	select {
	case <-c.gone:
	default:
		c.slow.Inc()
		c.close(websocket.StatusPolicyViolation, "too slow: send queue full")
	}
}

// close closes the socket once, in the background: a close handshake waits
// for the peer, and callers hold locks. The first code and reason win.
func (c *client) close(code websocket.StatusCode, reason string) {
	c.closeOnce.Do(func() {
		close(c.gone)
		go func() {
			defer close(c.closed)
			c.conn.Close(code, reason)
		}()
	})
}

// writeLoop writes queued frames until the client is gone or a write fails.
func (c *client) writeLoop(timeout time.Duration) {
	for {
		select {
		case f := <-c.queue:
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			err := c.conn.Write(ctx, websocket.MessageText, f)
			cancel()
			if err != nil {
				c.close(websocket.StatusPolicyViolation, "write failed")
				return
			}
		case <-c.gone:
			return
		}
	}
}
