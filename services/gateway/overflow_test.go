package gateway

import (
	"fmt"
	"testing"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/testkit/natstest"
	"github.com/natschat/chat/shared/testkit/wstest"
)

// TestFeedOverflowTailDelivered: when the room's feed channel overflows,
// nats.go drops messages (slow consumer). A later message's
// Nats-Last-Sequence would reveal the gap, but if the drops are at the end
// of a burst there is no later message: the room notices the drop count
// and catches up from the stream. (feedBuffer is 4096 in production; 1
// here to make a burst overflow it.)
func TestFeedOverflowTailDelivered(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	cfg := testConfig(t)
	cfg.SendQueue = 1 << 20
	g, base := newGateway(t, s, cfg)
	g.hub.feedBuffer = 1

	c := wstest.Dial(t, base+"/ws/chat/lobby/alice?batch=0")
	c.Next(chat.FrameHistory)
	nc := natstest.Connect(t, s)
	const n = 3000
	for i := range n {
		if err := nc.Publish(chat.RoomSubject("lobby"), []byte(fmt.Sprintf(`{"user":"p","text":"m%d"}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	nc.Flush()
	// Without the drop check the tail would wait for the next message,
	// which never comes: Next would time out.
	for i := range n {
		if f := c.Next(chat.FrameMessage); f.Text != fmt.Sprintf("m%d", i) {
			t.Fatalf("message %d is %q", i, f.Text)
		}
	}
	g.hub.mu.Lock()
	var dropped int
	for _, r := range g.hub.rooms {
		d, _ := r.feed.sub.Dropped()
		dropped = d
	}
	g.hub.mu.Unlock()
	t.Logf("feed drops: %d", dropped)
}
