package gateway

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/natstest"
)

// TestFeedOverflowTailDelivered: when the room's feed channel overflows,
// nats.go drops messages (slow consumer). A later message's
// Nats-Last-Sequence would reveal the gap, but if the drops are at the end
// of a burst there is no later message: the room notices the drop count
// and catches up from the stream. (feedBuffer is 4096 in production; 1
// here to make a burst overflow it.)
func TestFeedOverflowTailDelivered(t *testing.T) {
	s := natstest.Start(t)
	cfg := testConfig(t)
	cfg.SendQueue = 1 << 20
	gnc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer gnc.Close()
	g, err := New(context.Background(), cfg, gnc, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	g.hub.feedBuffer = 1
	srv := httptest.NewServer(g)
	defer srv.Close()
	defer g.Close()

	c := dial(t, srv.URL, "/ws/chat/lobby/alice?batch=0")
	c.next("history")
	nc := natstest.Connect(t, s)
	const n = 3000
	for i := range n {
		if err := nc.Publish(chat.RoomSubject("lobby"), []byte(fmt.Sprintf(`{"user":"p","text":"m%d"}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	nc.Flush()
	got := 0
	last := ""
	deadline := time.After(5 * time.Second)
loop:
	for got < n {
		select {
		case f, ok := <-c.frames:
			if !ok {
				t.Fatal("closed")
			}
			if f["type"] == "message" {
				got++
				last = f["text"].(string)
			}
		case <-deadline:
			break loop
		}
	}
	g.hub.mu.Lock()
	var dropped int
	for _, r := range g.hub.rooms {
		d, _ := r.feed.sub.Dropped()
		dropped = d
	}
	g.hub.mu.Unlock()
	t.Logf("feed drops: %d; client got %d of %d, last %q", dropped, got, n, last)
	if got < n {
		t.Errorf("5s after the burst the client has %d of %d messages (last %q): the dropped tail waits for the next message", got, n, last)
	}
}
