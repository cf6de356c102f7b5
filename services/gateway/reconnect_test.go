package gateway

import (
	"fmt"
	"net"
	"testing"
	"time"

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

// TestCatchUpRetriesWhileJetStreamIsDown: messages stored while the
// gateway was away, then a server without JetStream when it comes back: the
// catch-up fails, the gateway keeps what it delivered and retries, and once
// JetStream is back the missed messages arrive in order, none skipped.
func TestCatchUpRetriesWhileJetStreamIsDown(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	a := startServerAt(t, dir, port, true)
	base := startGateway(t, a, nil)
	c := dial(t, base, "/ws/chat/lobby/alice")
	c.next("history")
	nc := natstest.Connect(t, a)
	publishN(t, nc, "lobby", 0, 3)
	for range 3 {
		c.next("message")
	}
	disconnectGateway(t, a)
	publishN(t, nc, "lobby", 3, 5) // stored, missed live
	a.Shutdown()
	a.WaitForShutdown()

	b := startServerAt(t, dir, port, false) // no JetStream: catching up fails
	time.Sleep(3 * time.Second)             // reconnect and a few failed retries
	b.Shutdown()
	b.WaitForShutdown()

	startServerAt(t, dir, port, true)
	for i := 3; i < 8; i++ {
		if f := c.next("message"); f["text"] != fmt.Sprintf("m%d", i) {
			t.Fatalf("got %v, want m%d", f["text"], i)
		}
	}
}

func startServerAt(t *testing.T, dir string, port int, jetStream bool) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: jetStream, StoreDir: dir, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(s.Shutdown)
	return s
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func disconnectGateway(t *testing.T, s *server.Server) {
	t.Helper()
	connz, err := s.Connz(&server.ConnzOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ci := range connz.Conns {
		if ci.Name == gatewayClientName {
			if err := s.DisconnectClientByID(ci.Cid); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatal("gateway connection not found")
}
