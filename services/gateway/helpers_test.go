package gateway

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/testkit"
)

// testConfig is the default configuration, as a binary with no variables
// set would have it.
func testConfig(t testing.TB) Config {
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

// gatewayClientName names the NATS connection of test gateways, so a test
// can find it on the server.
const gatewayClientName = "gateway-under-test"

// startGateway serves a gateway on a random port against s until the test
// ends and returns its base URL (http://127.0.0.1:port) once it is ready.
func startGateway(t testing.TB, s *server.Server, tweak func(*Config)) string {
	t.Helper()
	return startGatewayLog(t, s, tweak, testkit.Logger(t))
}

// startGatewayLog is startGateway with the gateway logging to log.
func startGatewayLog(t testing.TB, s *server.Server, tweak func(*Config), log *slog.Logger) string {
	t.Helper()
	cfg := testConfig(t)
	cfg.URL = s.ClientURL()
	if tweak != nil {
		tweak(&cfg)
	}
	ln := testkit.Listen(t)
	nc, err := nats.Connect(s.ClientURL(), nats.Name(gatewayClientName), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	testkit.Start(t, "gateway", func(ctx context.Context) error { return Serve(ctx, cfg, nc, ln, log) })
	base := "http://" + ln.Addr().String()
	testkit.WaitReady(t, base)
	return base
}

// newGateway builds a gateway on s and serves it with httptest, for a test
// that changes the gateway's insides before its first client. It stops when
// the test ends.
func newGateway(t *testing.T, s *server.Server, cfg Config) (g *Gateway, base string) {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	g, err = New(context.Background(), cfg, nc, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	t.Cleanup(g.Close)
	return g, srv.URL
}

// texts is the texts of a history frame's messages.
func texts(f chat.ServerFrame) []string {
	out := make([]string, len(f.Messages))
	for i, m := range f.Messages {
		out[i] = m.Text
	}
	return out
}

// metric reads one series of the gateway's /metrics; the test fails if it
// is not there.
func metric(t *testing.T, base, series string) float64 {
	t.Helper()
	v, ok := testkit.Metric(t, base+"/metrics", series)
	if !ok {
		t.Fatalf("metric %s not found", series)
	}
	return v
}
