package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/natschat/chat/shared/testkit"
)

// serveFrames runs a WebSocket server that hands each connection, as the
// gateway does, to serve with its library side and the frameConn under it.
func serveFrames(t *testing.T, serve func(ws *websocket.Conn, raw *frameConn)) *websocket.Conn {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hijacked := &smallBuffers{ResponseWriter: w, writeTimeout: 5 * time.Second}
		ws, err := websocket.Accept(hijacked, r, nil)
		if err != nil {
			t.Errorf("accept: %v", err)
			return
		}
		go serve(ws, hijacked.conn)
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// TestWriteTextIsAWebSocketMessage: messages the gateway writes itself, of
// every header length, reach a real client whole and in order, with the
// library's pings (control frames) between them.
func TestWriteTextIsAWebSocketMessage(t *testing.T) {
	sizes := []int{0, 1, 125, 126, 127, 1000, 65535, 65536, 200_000}
	errs := make(chan error, 1)
	c := serveFrames(t, func(ws *websocket.Conn, raw *frameConn) {
		for i, n := range sizes {
			if err := raw.writeText(bytes.Repeat([]byte{'a' + byte(i)}, n)); err != nil {
				errs <- fmt.Errorf("message of %d bytes: %w", n, err)
				return
			}
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				ws.Ping(ctx) // answered by the client's reads below
			}()
		}
		errs <- nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, n := range sizes {
		typ, data, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("message %d (%d bytes): %v", i, n, err)
		}
		if typ != websocket.MessageText || !bytes.Equal(data, bytes.Repeat([]byte{'a' + byte(i)}, n)) {
			t.Fatalf("message %d: got a %v message of %d bytes, want text of %d bytes of %q", i, typ, len(data), n, 'a'+byte(i))
		}
	}
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
}

// TestNoMessageAfterTheCloseFrame: once the library has written a close
// frame, writeText refuses, so a client never sees a message after it.
func TestNoMessageAfterTheCloseFrame(t *testing.T) {
	raws := make(chan *frameConn, 1)
	c := serveFrames(t, func(ws *websocket.Conn, raw *frameConn) {
		raw.writeText([]byte("before"))
		raws <- raw
		ws.Close(websocket.StatusNormalClosure, "bye") // waits for the client's reply
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, data, err := c.Read(ctx); err != nil || string(data) != "before" {
		t.Fatalf("first read: %q, %v", data, err)
	}
	raw := <-raws
	testkit.WaitFor(t, "the close frame written", func() bool { return closedFrame(raw) })
	if err := raw.writeText([]byte("after")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("writeText after the close frame: %v, want net.ErrClosed", err)
	}
	_, data, err := c.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Errorf("second read: %q, %v; want the close frame", data, err)
	}
}

func closedFrame(c *frameConn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// TestWriteTextJoinsParts: a batch written as parts arrives as one
// message, the parts joined by newlines.
func TestWriteTextJoinsParts(t *testing.T) {
	errs := make(chan error, 1)
	c := serveFrames(t, func(_ *websocket.Conn, raw *frameConn) {
		errs <- raw.writeText([]byte(`{"a":1}`), []byte(`{"b":2}`), bytes.Repeat([]byte("c"), 300))
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, data, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"a":1}` + "\n" + `{"b":2}` + "\n" + strings.Repeat("c", 300); string(data) != want {
		t.Errorf("got %q, want %q", data, want)
	}
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
}

// TestTextHeader: the three length encodings of RFC 6455, section 5.2.
func TestTextHeader(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want []byte
	}{
		{0, []byte{0x81, 0}},
		{125, []byte{0x81, 125}},
		{126, []byte{0x81, 126, 0, 126}},
		{65535, []byte{0x81, 126, 0xff, 0xff}},
		{65536, []byte{0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0}},
	} {
		if got := textHeader(nil, tc.n); !bytes.Equal(got, tc.want) {
			t.Errorf("textHeader(%d) = % x, want % x", tc.n, got, tc.want)
		}
	}
}
