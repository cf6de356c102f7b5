package gateway

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"time"
)

// smallBuffers hands coder/websocket a hijacked connection with 1 KiB read
// and write buffers instead of net/http's 4 KiB ones, which the library
// would otherwise keep for the life of every connection. Chat frames are
// small; a larger read or write goes around the buffer, and batched writes
// amortise the extra system call.
//
// Every write on the connection also gets a deadline, so the gateway can
// write with a plain context: a context with a timeout per frame costs a
// timer and several allocations per delivery.
type smallBuffers struct {
	http.ResponseWriter
	writeTimeout time.Duration
}

const connBufferSize = 1 << 10

func (w smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	conn = deadlineConn{Conn: conn, timeout: w.writeTimeout}
	r := bufio.NewReaderSize(conn, connBufferSize)
	if n := brw.Reader.Buffered(); n > 0 {
		// What the client sent right after its upgrade request. It must
		// sit in the returned reader's buffer, not behind it:
		// websocket.Accept keeps only the bytes buffered there and resets
		// the reader onto the connection.
		early, _ := brw.Reader.Peek(n)
		r = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(early)), conn), max(connBufferSize, n))
		if _, err := r.Peek(n); err != nil {
			conn.Close()
			return nil, nil, err
		}
	}
	return conn, bufio.NewReadWriter(r, bufio.NewWriterSize(conn, connBufferSize)), nil
}

// deadlineConn sets a write deadline before every write.
type deadlineConn struct {
	net.Conn
	timeout time.Duration
}

func (c deadlineConn) Write(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// Unwrap lets http.ResponseController reach the real writer.
func (w smallBuffers) Unwrap() http.ResponseWriter { return w.ResponseWriter }
