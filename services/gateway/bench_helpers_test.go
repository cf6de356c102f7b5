package gateway

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// benchQuery is what benchmark clients add to the WebSocket URL.
const benchQuery = "?batch=1"

func startBenchGateway(b *testing.B, s *server.Server) string {
	b.Helper()
	var cfg Config
	if err := envconfig.Process("GATEWAY_BENCH_DEFAULTS", &cfg); err != nil {
		b.Fatal(err)
	}
	cfg.SendQueue = 4096
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, cfg, nc, ln, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	b.Cleanup(func() { cancel(); <-done; nc.Close() })
	base := "http://" + ln.Addr().String()
	for deadline := time.Now().Add(10 * time.Second); ; {
		res, err := http.Get(base + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return base
			}
		}
		if time.Now().After(deadline) {
			b.Fatal("gateway not ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
