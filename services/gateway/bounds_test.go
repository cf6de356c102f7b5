package gateway

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/stream"
	"github.com/natschat/chat/shared/testkit"
	"github.com/natschat/chat/shared/testkit/natstest"
	"github.com/natschat/chat/shared/testkit/wstest"
)

// TestConnectionsPerAddress: one address gets at most MaxConnsPerAddr
// WebSockets (429 with Retry-After beyond), and one more once one closes.
// Behind a trusted proxy the address is the proxy's X-Forwarded-For hop;
// from anyone else that header is ignored.
func TestConnectionsPerAddress(t *testing.T) {
	s := natstest.Start(t)
	base := startGateway(t, s, func(c *Config) { c.MaxConnsPerAddr = 3 })
	var open []*wstest.Client
	for i := range 3 {
		open = append(open, wstest.Dial(t, base+fmt.Sprintf("/ws/chat/lobby/u%d", i)))
	}
	res, err := http.Get(base + "/ws/chat/lobby/u3")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") == "" {
		t.Fatalf("4th connection: %s, Retry-After %q; want 429 with Retry-After", res.Status, res.Header.Get("Retry-After"))
	}
	// A made-up X-Forwarded-For from a client that is no proxy changes nothing.
	if _, err := wstest.DialHeader(t, base+"/ws/chat/lobby/u4", http.Header{"X-Forwarded-For": {"192.0.2.7"}}); err == nil {
		t.Error("X-Forwarded-For from an untrusted peer was believed")
	}
	open[0].Conn.Close(1000, "")
	testkit.WaitFor(t, "a slot after a close", func() bool {
		c, err := wstest.DialHeader(t, base+"/ws/chat/lobby/u5", nil)
		if err == nil {
			c.Conn.CloseNow()
		}
		return err == nil
	})

	proxied := startGateway(t, s, func(c *Config) { c.MaxConnsPerAddr = 2; c.TrustedProxies = []string{"127.0.0.0/8"} })
	hdr := func(hops string) http.Header { return http.Header{"X-Forwarded-For": {hops}} }
	for i := range 2 {
		if _, err := wstest.DialHeader(t, proxied+fmt.Sprintf("/ws/chat/lobby/p%d", i), hdr("203.0.113.9, 192.0.2.1")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := wstest.DialHeader(t, proxied+"/ws/chat/lobby/p2", hdr("198.51.100.1, 192.0.2.1")); err == nil {
		t.Error("a third connection from 192.0.2.1 through the proxy was accepted: only the proxy's own hop counts")
	}
	if _, err := wstest.DialHeader(t, proxied+"/ws/chat/lobby/p3", hdr("192.0.2.2")); err != nil {
		t.Errorf("another client behind the proxy refused: %v", err)
	}
}

// TestRoomsBounded: a gateway serves at most MaxRooms rooms at once; a join
// of one more is refused with 503 before the upgrade.
func TestRoomsBounded(t *testing.T) {
	s := natstest.Start(t)
	base := startGateway(t, s, func(c *Config) { c.MaxRooms = 2 })
	wstest.Dial(t, base+"/ws/chat/a/alice").Next(chat.FrameHistory)
	wstest.Dial(t, base+"/ws/chat/b/alice").Next(chat.FrameHistory)
	wstest.Dial(t, base+"/ws/chat/a/bob").Next(chat.FrameHistory) // a room already served
	res, err := http.Get(base + "/ws/chat/c/alice")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "rooms") {
		t.Errorf("third room: %s %q, want 503 naming the room bound", res.Status, body)
	}
	if got := metric(t, base, `chat_gateway_upgrades_refused_total{limit="rooms"}`); got != 1 {
		t.Errorf("refused rooms metric %v, want 1", got)
	}
}

// TestDeadPeerClosed: a client that never answers pings is closed; one that
// reads (and so answers them) stays.
func TestDeadPeerClosed(t *testing.T) {
	s := natstest.Start(t)
	base := startGateway(t, s, func(c *Config) { c.PingInterval, c.PingTimeout = 100*time.Millisecond, 300*time.Millisecond })
	live := wstest.Dial(t, base+"/ws/chat/lobby/alice")
	live.Next(chat.FrameHistory)

	conn, r := rawUpgrade(t, strings.TrimPrefix(base, "http://"), "/ws/chat/lobby/ghost")
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	pings := 0
	for {
		opcode, _, err := readServerFrame(r)
		if errors.Is(err, io.EOF) || opcode == 8 {
			break // closed by the gateway
		}
		if err != nil {
			t.Fatalf("after %d pings: %v", pings, err)
		}
		if opcode == 9 {
			pings++ // and no pong
		}
	}
	if pings == 0 {
		t.Error("closed without a ping")
	}
	testkit.WaitFor(t, "no_pong counted", func() bool {
		return metricOr0(t, base, `chat_gateway_disconnects_total{reason="no_pong"}`) == 1
	})
	live.Say("still here", "c1")
	if f := live.Next(chat.FrameMessage); f.ClientID != "c1" {
		t.Errorf("live client got %v", f)
	}
}

// rawUpgrade opens a WebSocket by hand, for a client that does what no
// library does (never answer a ping).
func rawUpgrade(t *testing.T, addr, path string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var key [16]byte
	rand.Read(key[:])
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", path, addr, base64.StdEncoding.EncodeToString(key[:]))
	r := bufio.NewReader(conn)
	res, err := http.ReadResponse(r, nil)
	if err != nil || res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", res, err)
	}
	return conn, r
}

// TestUnknownOutcomeIsNotFailure: when JetStream's ack does not come back
// in time (here: the path from NATS to the gateway is held), the message
// may well be stored. The sender is told "unconfirmed", never "not sent",
// and the message, stored once, arrives with its client_id when the path
// is back.
func TestUnknownOutcomeIsNotFailure(t *testing.T) {
	s := natstest.Start(t)
	proxy := newPausingProxy(t, strings.TrimPrefix(s.ClientURL(), "nats://"))
	base := startGatewayVia(t, s, "nats://"+proxy.addr(), func(c *Config) { c.PublishTimeout = 200 * time.Millisecond })
	c := wstest.Dial(t, base+"/ws/chat/lobby/alice")
	c.Next(chat.FrameHistory)

	proxy.hold(true) // the gateway sends; nothing comes back
	c.Say("did it go?", "c-1")
	f := c.Next(chat.FrameError)
	if f.Code != chat.CodeUnconfirmed || f.ClientID != "c-1" {
		t.Fatalf("got %v, want an unconfirmed error for c-1", f)
	}
	proxy.hold(false)
	if m := c.Next(chat.FrameMessage); m.ClientID != "c-1" {
		t.Fatalf("got %v, want the message itself", m)
	}
	stored := storedMessages(t, natstest.Connect(t, s), "lobby", 1)
	if len(stored) != 1 {
		t.Errorf("%d copies stored, want 1", len(stored))
	}
}

// TestFullStoreIsAnAlarm: a JetStream store with no room left refuses
// messages: the sender is told, /readyz and the store-full gauge say so,
// and both clear once a message is stored again.
func TestFullStoreIsAnAlarm(t *testing.T) {
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: t.TempDir(), JetStreamMaxStore: 1 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(s.Shutdown)
	// CHAT's byte bound keeps it within a store that has room for it; the
	// store fills up when it is shared with more than it can hold. Here:
	// a CHAT without the bound, in a 1 MiB store.
	def := stream.ChatConfig(stream.Options{})
	def.MaxBytes = -1
	js, err := jetstream.New(natstest.Connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(context.Background(), def); err != nil {
		t.Fatal(err)
	}
	base := startGateway(t, s, func(c *Config) { c.Rate, c.Burst = 1e6, 1e6 })
	c := wstest.Dial(t, base+"/ws/chat/lobby/alice")
	c.Next(chat.FrameHistory)
	text := strings.Repeat("x", 3000)
	full := false
	for i := 0; i < 1000 && !full; i++ {
		c.Say(text, fmt.Sprintf("c-%d", i))
		for {
			f := anyFrame(c)
			if f.Type == chat.FrameError {
				full = f.Code == chat.CodeUnavailable && strings.Contains(f.Error, "full")
				if !full {
					t.Fatalf("got %v", f)
				}
				break
			}
			if f.Type == chat.FrameMessage && f.ClientID == fmt.Sprintf("c-%d", i) {
				break
			}
		}
	}
	if !full {
		t.Fatal("1,000 messages of 3,000 bytes fitted in a 1 MiB store")
	}
	if got := metric(t, base, "chat_gateway_store_full"); got != 1 {
		t.Errorf("chat_gateway_store_full = %v, want 1", got)
	}
	res, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(body), "storage is full") {
		t.Errorf("/readyz says %q, want the full store named", body)
	}

	// Room again: purge the stream.
	st, err := js.Stream(context.Background(), "CHAT")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.Say("room again", "after")
	for f := anyFrame(c); f.ClientID != "after"; f = anyFrame(c) {
	}
	testkit.WaitFor(t, "the alarm cleared", func() bool { return metric(t, base, "chat_gateway_store_full") == 0 })
}

// pausingProxy forwards TCP to a NATS server and can hold what the server
// sends back, as a congested or half-broken path does.
type pausingProxy struct {
	ln     net.Listener
	mu     sync.Mutex
	held   bool
	resume *sync.Cond
}

func newPausingProxy(t *testing.T, target string) *pausingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pausingProxy{ln: ln}
	p.resume = sync.NewCond(&p.mu)
	t.Cleanup(func() { ln.Close(); p.hold(false) })
	go func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			upstream, err := net.Dial("tcp", target)
			if err != nil {
				client.Close()
				continue
			}
			go func() { io.Copy(upstream, client); upstream.Close() }()
			go func() { p.copyHeld(client, upstream); client.Close() }()
		}
	}()
	return p
}

func (p *pausingProxy) addr() string { return p.ln.Addr().String() }

func (p *pausingProxy) hold(on bool) {
	p.mu.Lock()
	p.held = on
	p.mu.Unlock()
	p.resume.Broadcast()
}

// copyHeld copies src to dst, waiting while held.
func (p *pausingProxy) copyHeld(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		p.mu.Lock()
		for p.held {
			p.resume.Wait()
		}
		p.mu.Unlock()
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// startGatewayVia is startGateway with the gateway's NATS connection made
// to url (a proxy in front of s).
func startGatewayVia(t *testing.T, s *server.Server, url string, tweak func(*Config)) string {
	t.Helper()
	cfg := testConfig(t)
	if tweak != nil {
		tweak(&cfg)
	}
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, cfg, nc, ln, testkit.Logger(t)) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("gateway did not stop within 30s")
		}
	})
	base := "http://" + ln.Addr().String()
	testkit.WaitFor(t, "gateway ready", func() bool {
		res, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
	return base
}

// anyFrame is the client's next frame, whatever its type.
func anyFrame(c *wstest.Client) chat.ServerFrame {
	return c.NextMatch("a frame", func(chat.ServerFrame) bool { return true })
}

// metricOr0 is metric, or 0 while the series does not exist yet.
func metricOr0(t *testing.T, base, name string) float64 {
	t.Helper()
	res, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if !strings.Contains(string(body), name+" ") {
		return 0
	}
	return metric(t, base, name)
}
