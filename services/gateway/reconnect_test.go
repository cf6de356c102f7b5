package gateway

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/testkit"
	"github.com/natschat/chat/shared/testkit/natstest"
	"github.com/natschat/chat/shared/testkit/wstest"
)

// TestCatchUpAfterNATSReconnect: messages stored while the gateway's NATS
// connection was down never come on the feed; the gateway reads them from
// the stream after reconnecting, so its clients miss nothing.
func TestCatchUpAfterNATSReconnect(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	base := startGateway(t, s, nil)
	nc := natstest.Connect(t, s)
	c := wstest.Dial(t, base+"/ws/chat/lobby/alice")
	c.Next(chat.FrameHistory)
	publishN(t, nc, "lobby", 0, 3)
	for range 3 {
		c.Next(chat.FrameMessage)
	}

	natstest.Disconnect(t, s, gatewayClientName)
	// The gateway waits a second before reconnecting: these are missed live.
	publishN(t, nc, "lobby", 3, 5)
	for i := 3; i < 8; i++ {
		if f := c.Next(chat.FrameMessage); f.Text != fmt.Sprintf("m%d", i) {
			t.Fatalf("got %q, want m%d", f.Text, i)
		}
	}
}

// TestCatchUpRetriesWhileJetStreamIsDown: messages stored while the
// gateway was away, then a server without JetStream when it comes back: the
// catch-up fails, the gateway keeps what it delivered and retries, and once
// JetStream is back the missed messages arrive in order, none skipped.
func TestCatchUpRetriesWhileJetStreamIsDown(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	port := testkit.FreePort(t)
	a := natstest.StartWith(t, natstest.Options{StoreDir: dir, Port: port})
	var logs testkit.Buffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("gateway log:\n%s", logs.String())
		}
	})
	base := startGatewayLog(t, a, nil, slog.New(slog.NewTextHandler(&logs, nil)))
	c := wstest.Dial(t, base+"/ws/chat/lobby/alice")
	c.Next(chat.FrameHistory)
	nc := natstest.Connect(t, a)
	publishN(t, nc, "lobby", 0, 3)
	for range 3 {
		c.Next(chat.FrameMessage)
	}
	natstest.Disconnect(t, a, gatewayClientName)
	publishN(t, nc, "lobby", 3, 5) // stored, missed live
	// Stored before the server stops: a publish is flushed to the server
	// before JetStream has written it, and a busy server may not have.
	waitStored(t, nc, "lobby", 8)
	a.Shutdown()
	a.WaitForShutdown()

	// No JetStream: once the gateway is back, its catch-up fails.
	failed := func() int { return strings.Count(logs.String(), "room behind the stream, retrying") }
	before := failed()
	b := natstest.StartWith(t, natstest.Options{StoreDir: dir, Port: port, NoJetStream: true})
	testkit.WaitFor(t, "a failed catch-up", func() bool { return failed() > before })
	b.Shutdown()
	b.WaitForShutdown()

	natstest.StartWith(t, natstest.Options{StoreDir: dir, Port: port})
	for i := 3; i < 8; i++ {
		if f := c.Next(chat.FrameMessage); f.Text != fmt.Sprintf("m%d", i) {
			t.Fatalf("got %q, want m%d", f.Text, i)
		}
	}
}
