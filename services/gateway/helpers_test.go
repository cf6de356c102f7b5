package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/kelseyhightower/envconfig"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// testConfig is the default configuration, as a binary with no variables
// set would have it.
func testConfig(t *testing.T) Config {
	t.Helper()
	var cfg Config
	if err := envconfig.Process("GATEWAY_TEST_DEFAULTS", &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.HistoryTimeout = 300 * time.Millisecond
	// Every test client comes from 127.0.0.1; TestConnectionsPerAddress
	// tests the bound.
	cfg.MaxConnsPerAddr = 1 << 20
	return cfg
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// gatewayClientName names the NATS connection of test gateways, so a test
// can find it on the server.
const gatewayClientName = "gateway-under-test"

// startGateway serves a gateway on a random port against s and returns its
// base URL (http://127.0.0.1:port). It stops when the test ends.
func startGateway(t *testing.T, s *server.Server, tweak func(*Config)) string {
	t.Helper()
	cfg := testConfig(t)
	cfg.URL = s.ClientURL()
	if tweak != nil {
		tweak(&cfg)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(s.ClientURL(), nats.Name(gatewayClientName), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, cfg, nc, ln, testLogger(t)) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("gateway stopped with %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("gateway did not stop within 15s")
		}
	})
	base := "http://" + ln.Addr().String()
	waitFor(t, 10*time.Second, "gateway ready", func() bool {
		res, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
	return base
}

// wsClient is a test browser: it reads every frame into a channel.
type wsClient struct {
	t      *testing.T
	conn   *websocket.Conn
	frames chan map[string]any
	closed chan error
}

func dial(t *testing.T, base, path string) *wsClient {
	t.Helper()
	c, err := tryDial(t, base, path, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	return c
}

func tryDial(t *testing.T, base, path string, header http.Header) (*wsClient, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	url := "ws" + strings.TrimPrefix(base, "http") + path
	conn, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: header})
	if err != nil {
		return nil, err
	}
	conn.SetReadLimit(1 << 24)
	c := &wsClient{t: t, conn: conn, frames: make(chan map[string]any, 10000), closed: make(chan error, 1)}
	go func() {
		for {
			_, data, err := conn.Read(context.Background())
			if err != nil {
				c.closed <- err
				close(c.frames)
				return
			}
			var f map[string]any
			if err := json.Unmarshal(data, &f); err != nil {
				t.Errorf("server sent a frame that is not JSON: %q", data)
				continue
			}
			c.frames <- f
		}
	}()
	t.Cleanup(func() { conn.CloseNow() })
	return c, nil
}

func (c *wsClient) send(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.conn.Write(ctx, websocket.MessageText, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *wsClient) say(text, clientID string) {
	c.t.Helper()
	c.send(map[string]any{"type": "message", "text": text, "client_id": clientID})
}

// next returns the next frame of type typ, skipping others.
func (c *wsClient) next(typ string) map[string]any {
	c.t.Helper()
	deadline := time.After(10 * time.Second)
	var skipped []string
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				c.t.Fatalf("connection closed while waiting for a %q frame: %v", typ, <-c.closed)
			}
			if f["type"] == typ {
				return f
			}
			if f["type"] == "error" {
				skipped = append(skipped, fmt.Sprint(f))
			}
		case <-deadline:
			c.t.Fatalf("no %q frame within 10s; error frames meanwhile: %v", typ, skipped)
		}
	}
}

// none asserts that no frame of type typ arrives within d.
func (c *wsClient) none(typ string, d time.Duration) {
	c.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				return
			}
			if f["type"] == typ {
				c.t.Fatalf("unexpected %q frame: %v", typ, f)
			}
		case <-deadline:
			return
		}
	}
}

func seqOf(f map[string]any) uint64 { return uint64(f["seq"].(float64)) }

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metric reads one unlabelled series from the gateway's /metrics.
func metric(t *testing.T, base, name string) float64 {
	t.Helper()
	res, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", name, err)
			}
			return f
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}
