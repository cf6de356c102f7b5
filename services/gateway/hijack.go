package gateway

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// smallBuffers hands coder/websocket a hijacked connection with small read
// and write buffers instead of net/http's 4 KiB ones, which the library
// would otherwise keep for the life of every connection. Chat frames are
// small; a larger read goes around the buffer, and a message that does not
// fit the write buffer is gathered (see gatherConn), so it still takes one
// system call.
//
// Every write on the connection also gets a deadline, so the gateway can
// write with a plain context: a context with a timeout per frame costs a
// timer and several allocations per delivery.
//
// After a successful Hijack, conn is the connection the library writes to.
type smallBuffers struct {
	http.ResponseWriter
	writeTimeout time.Duration
	conn         *gatherConn
}

// The buffers every connection keeps. The write buffer holds a control
// frame whole (a close frame is at most 2+125 bytes), so the library's
// pings, pongs and close frames are each one write.
const (
	readBufferSize  = 512
	writeBufferSize = 256
)

func (w *smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.conn = &gatherConn{Conn: conn, timeout: w.writeTimeout}
	conn = w.conn
	r := bufio.NewReaderSize(conn, readBufferSize)
	if n := brw.Reader.Buffered(); n > 0 {
		// What the client sent right after its upgrade request. It must
		// sit in the returned reader's buffer, not behind it:
		// websocket.Accept keeps only the bytes buffered there and resets
		// the reader onto the connection.
		early, _ := brw.Reader.Peek(n)
		r = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(early)), conn), max(readBufferSize, n))
		if _, err := r.Peek(n); err != nil {
			conn.Close()
			return nil, nil, err
		}
	}
	return conn, bufio.NewReadWriter(r, bufio.NewWriterSize(conn, writeBufferSize)), nil
}

// gatherConn sets a write deadline before every write, and between gather
// and flush collects the writes instead of making them. The library writes
// a message larger than its write buffer in two system calls (the buffer
// topped up and flushed, then the rest); a batched message gathered here
// goes out in one. Writes from other goroutines meanwhile (a pong, a close
// frame) are gathered too, in the order the library made them, and go out
// with the flush.
type gatherConn struct {
	net.Conn
	timeout time.Duration

	mu       sync.Mutex
	gathered *[]byte // nil: writes go straight out
}

// gatherBuffers holds the buffers of gathers in progress: a connection
// holds one only while it writes a large message.
var gatherBuffers = sync.Pool{New: func() any { b := make([]byte, 0, maxBatch+16); return &b }}

func (c *gatherConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gathered != nil {
		*c.gathered = append(*c.gathered, p...)
		return len(p), nil
	}
	return c.write(p)
}

func (c *gatherConn) write(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// gather starts collecting writes; flush must follow.
func (c *gatherConn) gather() {
	b := gatherBuffers.Get().(*[]byte)
	c.mu.Lock()
	c.gathered = b
	c.mu.Unlock()
}

// flush writes what was gathered in one write and stops gathering. It
// holds the lock while it writes, so nothing written after the gather can
// overtake it.
func (c *gatherConn) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.gathered
	c.gathered = nil
	var err error
	if len(*b) > 0 {
		_, err = c.write(*b)
	}
	*b = (*b)[:0]
	if cap(*b) <= maxBatch+16 {
		gatherBuffers.Put(b)
	}
	return err
}

// Unwrap lets http.ResponseController reach the real writer.
func (w *smallBuffers) Unwrap() http.ResponseWriter { return w.ResponseWriter }
