package gateway

import (
	"context"
	"net/netip"
	"sync"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"
)

// client is one browser WebSocket in a room. The room queues shared frames
// without ever blocking; a client whose queue is full is too slow and is
// closed instead of stalling the room.
//
// An idle client costs its reader goroutine and nothing else: the writer
// goroutine runs only while frames are queued, and the queue is released
// when it empties. Every goroutine a client starts (writer, ack waiter,
// commands) is counted in wg, which endClient waits for.
type client struct {
	conn *websocket.Conn
	raw  *frameConn // under conn: messages are written here
	addr netip.Addr // the client's address, counted against MaxConnsPerAddr
	room string
	user string // the author's name: ident.name
	// ident is how the user is known; dir answers whether they are an
	// admin (nil in tests that build clients by hand).
	ident identity
	dir   *directory
	// batch: the client accepts several frames in one WebSocket message,
	// separated by newlines, so a client that fell behind catches up with
	// one write instead of one per frame.
	batch bool
	limit queueLimit

	// joined is the client's room, set before its reads start.
	joined *room

	// The fields below are guarded by mu.
	mu sync.Mutex
	// skipThrough: room frames with a seq up to it are not sent; a
	// resuming client that was ahead of this gateway's room has them.
	skipThrough uint64
	// joining: the backlog is being written by the join; live frames wait
	// in pending meanwhile, then the client goes live (see room.subscribe).
	joining bool
	pending [][]byte
	queue   [][]byte // frames not yet taken by the writer
	queued  int      // bytes in queue
	writing bool     // a writer goroutine is running
	pinging bool     // a ping waits for its pong
	reason  closeReason
	gone    bool // closing: nothing more is queued or started
	// acks are the futures of the client's messages stored asynchronously,
	// awaited in order by a goroutine that runs only while there are some.
	acks     []pendingAck
	awaiting bool

	wg sync.WaitGroup

	limiter *rate.Limiter
	// commands bounds the bot requests in flight for this client.
	commands chan struct{}
	// publishing bounds the client's messages not yet acknowledged by
	// JetStream.
	publishing chan struct{}

	// ctx ends the client's background work (commands, backlog reads)
	// when it goes; cancel is called by close.
	ctx    context.Context
	cancel context.CancelFunc
	closed chan struct{} // closed when the close handshake is over
}

// queueLimit bounds what may wait to be written to one client, in frames
// and in bytes. One frame always fits an empty queue, however large.
type queueLimit struct {
	frames int
	bytes  int
}

// pendingAck is a message sent to JetStream, not yet acknowledged.
type pendingAck struct {
	future   jetstream.PubAckFuture
	msg      *nats.Msg // to publish again if the outcome is unknown
	clientID string
}

// isAdmin reports whether the client's user may act as an admin (delete
// any message, /mute): decided now, from the watched accounts, so a
// change of role applies to open connections too.
func (c *client) isAdmin() bool { return c.dir != nil && c.dir.isAdmin(c.ident) }

// maxPending bounds the live frames held for a client while its backlog is
// written; a client that cannot catch up with that is too slow for the room.
const maxPending = 4096

// maxBatch bounds the bytes of one batched WebSocket message.
const maxBatch = 64 << 10

// push queues a room frame; seq is the message's, 0 for other frames.
func (c *client) push(frame []byte, seq uint64) {
	c.mu.Lock()
	switch {
	case c.gone || (seq != 0 && seq <= c.skipThrough):
		c.mu.Unlock()
	case c.joining:
		if len(c.pending) >= maxPending {
			c.mu.Unlock()
			c.close(reasonSlow)
			return
		}
		c.pending = append(c.pending, frame)
		c.mu.Unlock()
	default:
		c.enqueueLocked(frame)
	}
}

// restart queues the reset frame of a stream that started over: from
// now on no sequence is one the client already has.
func (c *client) restart(frame []byte) {
	c.mu.Lock()
	c.skipThrough = 0
	switch {
	case c.gone:
		c.mu.Unlock()
	case c.joining:
		c.pending = append(c.pending, frame)
		c.mu.Unlock()
	default:
		c.enqueueLocked(frame)
	}
}

// send queues a frame for this client alone (an error, a notice, a page).
func (c *client) send(frame []byte) {
	c.mu.Lock()
	if c.gone {
		c.mu.Unlock()
		return
	}
	c.enqueueLocked(frame)
}

// enqueueLocked queues frame and unlocks c.mu; a full queue closes the
// client.
func (c *client) enqueueLocked(frame []byte) {
	if len(c.queue) > 0 && (len(c.queue) >= c.limit.frames || c.queued+len(frame) > c.limit.bytes) {
		c.mu.Unlock()
		c.close(reasonSlow)
		return
	}
	c.queue = append(c.queue, frame)
	c.queued += len(frame)
	if c.writing {
		c.mu.Unlock()
		return
	}
	c.writing = true
	c.wg.Add(1)
	c.mu.Unlock()
	go c.writeLoop()
}

// goLive writes the join's backlog frame, then the live frames that
// arrived meanwhile, then hands over to the send queue. It runs on the
// connection's goroutine before reads start; the backlog does not fit a
// bounded queue, and the pending frames must follow it in order.
func (c *client) goLive(backlog []byte) error {
	if err := c.write(backlog); err != nil {
		return err
	}
	for {
		c.mu.Lock()
		frames := c.pending
		c.pending = nil
		if len(frames) == 0 {
			c.joining = false
			c.mu.Unlock()
			return nil
		}
		c.mu.Unlock()
		for _, f := range frames {
			if err := c.write(f); err != nil {
				return err
			}
		}
	}
}

// close starts closing the client for reason, once: the first reason
// wins. The close handshake runs in the background, since it waits for
// the peer and callers may hold the room's lock.
func (c *client) close(reason closeReason) {
	c.mu.Lock()
	if c.gone {
		c.mu.Unlock()
		return
	}
	c.gone, c.reason = true, reason
	c.queue, c.queued, c.pending = nil, 0, nil
	c.wg.Add(1)
	c.mu.Unlock()
	c.cancel()
	go func() {
		defer c.wg.Done()
		defer close(c.closed)
		if reason == reasonNoPong || reason == reasonWriteFailed {
			// The peer is not reading: a close handshake would only
			// wait out its timeout.
			c.conn.CloseNow()
			return
		}
		code, text := reason.status()
		c.conn.Close(code, text)
	}()
}

// closeReason says why it closed, once it has.
func (c *client) closeReason() closeReason {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reason
}

// writeLoop writes what is queued and exits when the queue is empty.
func (c *client) writeLoop() {
	defer c.wg.Done()
	var spare [][]byte
	for {
		c.mu.Lock()
		frames := c.queue
		if len(frames) == 0 || c.gone {
			c.writing = false
			c.queue = nil // an idle client holds no queue
			c.mu.Unlock()
			return
		}
		c.queue, c.queued = spare[:0], 0
		c.mu.Unlock()

		var err error
		if c.batch {
			err = c.writeBatched(frames)
		} else {
			for _, f := range frames {
				if err = c.write(f); err != nil {
					break
				}
			}
		}
		if err != nil {
			c.close(reasonWriteFailed)
			c.mu.Lock()
			c.writing = false
			c.mu.Unlock()
			return
		}
		clear(frames)
		spare = frames
	}
}

// writeBatched joins frames with newlines into messages of up to maxBatch
// bytes: one write, and one system call, for many frames. The frames are
// copied once, into the buffer the message is written from.
func (c *client) writeBatched(frames [][]byte) error {
	for len(frames) > 0 {
		n, size := 1, len(frames[0])
		for n < len(frames) && size+1+len(frames[n]) <= maxBatch {
			size += 1 + len(frames[n])
			n++
		}
		if err := c.raw.writeText(frames[:n]...); err != nil {
			return err
		}
		frames = frames[n:]
	}
	return nil
}

// write writes one WebSocket message. Its time limit is the connection's
// write deadline (see frameConn), not a context.
func (c *client) write(frame []byte) error {
	return c.raw.writeText(frame)
}

// spawn runs f on a goroutine the client owns, unless it is closing.
func (c *client) spawn(f func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gone {
		return false
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
	return true
}
