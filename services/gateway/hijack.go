package gateway

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// smallBuffers hands coder/websocket a hijacked connection with small read
// and write buffers instead of net/http's 4 KiB ones, which the library
// would otherwise keep for the life of every connection. Chat frames are
// small and a larger read goes around the buffer; the library writes only
// control frames (see frameConn).
//
// After a successful Hijack, conn is the connection under the WebSocket.
type smallBuffers struct {
	http.ResponseWriter
	writeTimeout time.Duration
	conn         *frameConn
}

// The buffers every connection keeps. The write buffer holds a control
// frame whole (at most 2+125 bytes), so each of the library's frames is
// one write.
const (
	readBufferSize  = 512
	writeBufferSize = 256
)

func (w *smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.conn = &frameConn{Conn: conn, timeout: w.writeTimeout}
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

// frameConn is the connection under a client's WebSocket. The gateway
// writes its text messages itself (writeText): a header and the message in
// one system call, without the library's per-message locks and copies,
// which were a fifth of the gateway's CPU when fanning out. The library
// still reads, and writes its control frames (pings, pongs, the close
// handshake) through Write. Each of those is one Write: the library
// flushes after every frame, and its buffer holds a control frame whole.
// Under mu the two kinds never interleave, and once a close frame has gone
// out no message follows it.
//
// Every write gets a deadline, so the gateway writes without a context:
// a context with a timeout per frame costs a timer and several allocations
// per delivery.
type frameConn struct {
	net.Conn
	timeout time.Duration

	mu     sync.Mutex
	closed bool // a close frame was written
}

// closeFrameStart is the first byte of a close frame: FIN and opcode 8.
const closeFrameStart = 0x88

// Write is the library's way out.
func (c *frameConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(p) > 0 && p[0] == closeFrameStart && !c.closed {
		c.closed = true
	}
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// writeText writes parts, joined by newlines, as one unfragmented,
// unmasked text message: the header and the parts copied after it, in one
// write (a copy is cheaper here than a writev of the pieces).
func (c *frameConn) writeText(parts ...[]byte) error {
	n := len(parts) - 1
	for _, p := range parts {
		n += len(p)
	}
	b := frameBuffers.Get().(*[]byte)
	defer func() {
		// A join's backlog can be larger than a batch: such a buffer is
		// left to the GC rather than kept in the pool.
		if cap(*b) <= maxFrameHeader+maxBatch {
			frameBuffers.Put(b)
		}
	}()
	*b = textHeader((*b)[:0], n)
	for i, p := range parts {
		if i > 0 {
			*b = append(*b, '\n')
		}
		*b = append(*b, p...)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return net.ErrClosed
	}
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return err
	}
	_, err := c.Conn.Write(*b)
	return err
}

// frameBuffers holds the buffers messages are written from, each big
// enough for the header and a whole batch.
var frameBuffers = sync.Pool{New: func() any { b := make([]byte, 0, maxFrameHeader+maxBatch); return &b }}

// maxFrameHeader is the longest header of a server's WebSocket frame
// (unmasked, 64-bit length).
const maxFrameHeader = 10

// textHeader appends the header of a final text frame of n bytes
// (RFC 6455, section 5.2).
func textHeader(b []byte, n int) []byte {
	b = append(b, 0x81) // FIN, opcode 1 (text)
	switch {
	case n < 126:
		return append(b, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(b, 127), uint64(n))
	}
}

// Unwrap lets http.ResponseController reach the real writer.
func (w *smallBuffers) Unwrap() http.ResponseWriter { return w.ResponseWriter }
