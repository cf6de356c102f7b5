package gateway

import (
	"bufio"
	"bytes"
	"net"
	"sync"
	"testing"
	"time"
)

// countingConn records every write that reaches the socket.
type countingConn struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, bytes.Clone(p))
	c.mu.Unlock()
	return len(p), nil
}

func (c *countingConn) SetWriteDeadline(time.Time) error { return nil }

// TestGatherMakesOneWrite: a message larger than the write buffer, written
// through it the way the library does (header, payload, flush), reaches
// the socket in one write when gathered, and in two when not.
func TestGatherMakesOneWrite(t *testing.T) {
	payload := bytes.Repeat([]byte("x"), 5000)
	write := func(gather bool) [][]byte {
		raw := &countingConn{}
		c := &gatherConn{Conn: raw, timeout: time.Second}
		bw := bufio.NewWriterSize(c, writeBufferSize)
		if gather {
			c.gather()
		}
		bw.Write([]byte{0x81, 126, 0x13, 0x88})
		bw.Write(payload)
		if err := bw.Flush(); err != nil {
			t.Fatal(err)
		}
		if gather {
			if err := c.flush(); err != nil {
				t.Fatal(err)
			}
		}
		return raw.writes
	}
	want := append([]byte{0x81, 126, 0x13, 0x88}, payload...)
	for _, gather := range []bool{false, true} {
		writes := write(gather)
		if got := bytes.Join(writes, nil); !bytes.Equal(got, want) {
			t.Errorf("gather=%v: the socket got %d bytes, want the %d written, in order", gather, len(got), len(want))
		}
		if wantN := map[bool]int{false: 2, true: 1}[gather]; len(writes) != wantN {
			t.Errorf("gather=%v: %d writes, want %d", gather, len(writes), wantN)
		}
	}
}

// TestGatherKeepsOtherWritesInOrder: what another goroutine writes while a
// gather is open (a pong, a close frame) is neither lost nor reordered,
// and after the flush writes go straight out again.
func TestGatherKeepsOtherWritesInOrder(t *testing.T) {
	raw := &countingConn{}
	c := &gatherConn{Conn: raw, timeout: time.Second}
	c.gather()
	c.Write([]byte("one "))
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Write([]byte("pong "))
	}()
	<-done
	c.Write([]byte("two "))
	if len(raw.writes) != 0 {
		t.Fatalf("%d writes reached the socket during the gather", len(raw.writes))
	}
	if err := c.flush(); err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("three"))
	if got := string(bytes.Join(raw.writes, nil)); got != "one pong two three" || len(raw.writes) != 2 {
		t.Errorf("socket got %q in %d writes, want %q in 2", got, len(raw.writes), "one pong two three")
	}
}
