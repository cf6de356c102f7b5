package gateway

import (
	"context"
	"sync"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// client is one browser WebSocket in a room. The room queues shared frames
// without ever blocking; a client whose queue is full is too slow and is
// disconnected instead of stalling the room.
//
// An idle client costs its reader goroutine and nothing else: the writer
// goroutine runs only while frames are queued, and the queue is released
// when it empties.
type client struct {
	conn *websocket.Conn
	room string
	user string
	// batch: the client accepts several frames in one WebSocket message,
	// separated by newlines, so a client that fell behind catches up with
	// one write instead of one per frame.
	batch    bool
	maxQueue int

	// since is the seq a resuming client already has.
	since uint64
	// joined is the client's room, set before its reads start.
	joined *room

	// joining and pending are guarded by the room's mutex: while joining,
	// live frames wait in pending until the backlog is written.
	joining bool
	pending [][]byte

	mu      sync.Mutex
	queue   [][]byte // frames not yet taken by the writer
	writing bool     // a writer goroutine is running
	gone    bool

	// slow counts clients dropped for a full queue.
	slow prometheus.Counter

	limiter *rate.Limiter
	// commands bounds the bot requests in flight for this client.
	commands chan struct{}
	// publishing bounds the client's messages stored asynchronously and not
	// yet acknowledged by JetStream; acks (guarded by mu) are their futures,
	// awaited in order by a goroutine that runs only while there are some.
	publishing chan struct{}
	acks       []pendingAck
	awaiting   bool

	// cancel ends the client's background work (commands, backlog reads).
	cancel    context.CancelFunc
	closeOnce sync.Once
	closed    chan struct{} // closed when the close handshake is over
}

// pendingAck is a message sent to JetStream, not yet acknowledged.
type pendingAck struct {
	future   jetstream.PubAckFuture
	clientID string
}

// maxPending bounds the live frames held for a client while its backlog is
// written; a client that cannot catch up with that is too slow for the room.
const maxPending = 4096

// maxBatch bounds the bytes of one batched WebSocket message.
const maxBatch = 64 << 10

// push queues a room frame; seq is the message's, 0 for other frames.
// Called with the room's mutex held.
func (c *client) push(frame []byte, seq uint64) {
	if seq != 0 && seq <= c.since {
		// A resuming client that was ahead of this gateway's room (it came
		// from a gateway whose feed was a little faster) has this one.
		return
	}
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
	c.mu.Lock()
	if c.gone {
		c.mu.Unlock()
		return
	}
	if len(c.queue) >= c.maxQueue {
		c.mu.Unlock()
		c.dropSlow()
		return
	}
	c.queue = append(c.queue, frame)
	start := !c.writing
	c.writing = true
	c.mu.Unlock()
	if start {
		go c.writeLoop()
	}
}

func (c *client) dropSlow() {
	c.mu.Lock()
	gone := c.gone
	c.mu.Unlock()
	if !gone {
		c.slow.Inc()
		c.close(websocket.StatusPolicyViolation, "too slow: send queue full")
	}
}

// close closes the socket once, in the background: a close handshake waits
// for the peer, and callers hold locks. The first code and reason win.
func (c *client) close(code websocket.StatusCode, reason string) {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.gone = true
		c.queue = nil
		c.mu.Unlock()
		if c.cancel != nil {
			c.cancel()
		}
		go func() {
			defer close(c.closed)
			c.conn.Close(code, reason)
		}()
	})
}

// writeLoop writes what is queued and exits when the queue is empty.
func (c *client) writeLoop() {
	var spare [][]byte
	var buf []byte
	for {
		c.mu.Lock()
		frames := c.queue
		if len(frames) == 0 || c.gone {
			c.writing = false
			c.queue = nil // an idle client holds no queue
			c.mu.Unlock()
			return
		}
		c.queue = spare[:0]
		c.mu.Unlock()

		var err error
		if c.batch {
			buf, err = c.writeBatched(frames, buf)
		} else {
			for _, f := range frames {
				if err = c.write(f); err != nil {
					break
				}
			}
		}
		if err != nil {
			c.close(websocket.StatusPolicyViolation, "write failed")
			return
		}
		clear(frames)
		spare = frames
	}
}

// writeBatched joins frames with newlines into messages of up to maxBatch
// bytes: one write, and one system call, for many frames.
func (c *client) writeBatched(frames [][]byte, buf []byte) ([]byte, error) {
	for len(frames) > 0 {
		if len(frames) == 1 || len(frames[0]) >= maxBatch {
			if err := c.write(frames[0]); err != nil {
				return buf, err
			}
			frames = frames[1:]
			continue
		}
		buf = append(buf[:0], frames[0]...)
		n := 1
		for ; n < len(frames) && len(buf)+1+len(frames[n]) <= maxBatch; n++ {
			buf = append(buf, '\n')
			buf = append(buf, frames[n]...)
		}
		if err := c.write(buf); err != nil {
			return buf, err
		}
		frames = frames[n:]
	}
	return buf, nil
}

// write writes one WebSocket message. Its time limit is the connection's
// write deadline (see deadlineConn), not a context.
func (c *client) write(frame []byte) error {
	return c.conn.Write(context.Background(), websocket.MessageText, frame)
}
