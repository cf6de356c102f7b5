package gateway

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/stream"
	"github.com/natschat/chat/shared/testkit"
	"github.com/natschat/chat/shared/testkit/natstest"
)

// TestNoGoroutineOutlivesClose runs a gateway with clients doing all they
// can (messages with acks, commands, history pages, presence in two rooms;
// one leaves early, one stops reading) and checks that once Serve has
// returned not one goroutine it started is left: readers, writers, ack
// waiters, commands, feeds and presence all have an owner that waits.
//
// Not parallel: goleak counts every goroutine of the process.
func TestNoGoroutineOutlivesClose(t *testing.T) {
	s := natstest.Start(t)
	// The stream's goroutines belong to the server, which outlives the
	// gateway: create it first.
	js, err := jetstream.New(natstest.Connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Ensure(context.Background(), js, stream.ChatConfig(stream.Options{})); err != nil {
		t.Fatal(err)
	}
	ignore := goleak.IgnoreCurrent()

	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, cfg, nc, ln, testkit.Logger(t)) }()
	base := "ws://" + ln.Addr().String()
	httpc := &http.Client{Transport: &http.Transport{}}

	dial := func(path string) *websocket.Conn {
		t.Helper()
		var c *websocket.Conn
		testkit.WaitFor(t, "websocket "+path, func() bool {
			dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer dcancel()
			c, _, err = websocket.Dial(dctx, base+path, &websocket.DialOptions{HTTPClient: httpc})
			return err == nil
		})
		c.SetReadLimit(1 << 20)
		return c
	}
	write := func(c *websocket.Conn, f chat.ClientFrame) {
		t.Helper()
		if err := c.Write(context.Background(), websocket.MessageText, mustJSON(f)); err != nil {
			t.Fatal(err)
		}
	}
	// readUntil reads until a frame matches, or fails the test.
	readUntil := func(c *websocket.Conn, match func(chat.ServerFrame) bool) {
		t.Helper()
		rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer rcancel()
		for {
			_, data, err := c.Read(rctx)
			if err != nil {
				t.Fatalf("reading: %v", err)
			}
			frames, err := chat.DecodeFrames(data)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range frames {
				if match(f) {
					return
				}
			}
		}
	}

	alice := dial("/ws/chat/lobby/alice?batch=1")
	bob := dial("/ws/chat/lobby/bob")
	carol := dial("/ws/chat/other/carol")
	stalled := dial("/ws/chat/lobby/dave")
	for i, c := range []*websocket.Conn{alice, bob, carol} {
		write(c, chat.ClientFrame{Type: chat.FrameMessage, Text: "hello", ClientID: string(rune('a' + i))})
		write(c, chat.ClientFrame{Type: chat.FrameMessage, Text: "/now", ClientID: "cmd"})
		write(c, chat.ClientFrame{Type: chat.FrameHistory, Limit: 10})
	}
	// Each client gets its message back and, since no bot runs, an error
	// for its command, in either order.
	for i, c := range []*websocket.Conn{alice, bob, carol} {
		acked, refused := false, false
		readUntil(c, func(f chat.ServerFrame) bool {
			acked = acked || (f.Type == chat.FrameMessage && f.ClientID == string(rune('a'+i)))
			refused = refused || (f.Type == chat.FrameError && f.Code == chat.CodeBotUnavailable)
			return acked && refused
		})
	}
	bob.Close(websocket.StatusNormalClosure, "bye")

	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return within 30s")
	}
	for _, c := range []*websocket.Conn{alice, carol, stalled} {
		c.CloseNow()
	}
	nc.Close()
	httpc.CloseIdleConnections()
	goleak.VerifyNone(t, ignore,
		// The server's side of a short-lived consumer the gateway read
		// from: it belongs to the server, which outlives the gateway, and
		// goes when the consumer's inactivity threshold passes.
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*consumer).loopAndGatherMsgs"),
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*consumer).processInboundAcks"),
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*consumer).processInboundNextMsgReqs"),
	)
}
