package gateway

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/natschat/chat/shared/natstest"
)

// TestCatchUpAfterNATSReconnect: messages stored while the gateway's NATS
// connection was down never come on the feed; the gateway reads them from
// the stream after reconnecting, so its clients miss nothing.
func TestCatchUpAfterNATSReconnect(t *testing.T) {
	s := natstest.Start(t)
	base := startGateway(t, s, nil)
	nc := natstest.Connect(t, s)
	c := dial(t, base, "/ws/chat/lobby/alice")
	c.next("history")
	publishN(t, nc, "lobby", 0, 3)
	for range 3 {
		c.next("message")
	}

	connz, err := s.Connz(&server.ConnzOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var cid uint64
	for _, ci := range connz.Conns {
		if ci.Name == gatewayClientName {
			cid = ci.Cid
		}
	}
	if cid == 0 {
		t.Fatal("gateway connection not found")
	}
	if err := s.DisconnectClientByID(cid); err != nil {
		t.Fatal(err)
	}
	// The gateway waits a second before reconnecting: these are missed live.
	publishN(t, nc, "lobby", 3, 5)
	for i := 3; i < 8; i++ {
		if f := c.next("message"); f["text"] != "m"+string(rune('0'+i)) {
			t.Fatalf("got %v, want m%d", f["text"], i)
		}
	}
}
