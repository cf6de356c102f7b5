package bot_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/natschat/chat/services/bot"
	"github.com/natschat/chat/shared/config"
	"github.com/natschat/chat/shared/natsconn"
	"github.com/natschat/chat/shared/natstest"
)

func TestConfigFromEnv(t *testing.T) {
	t.Setenv("NATS_URL", "nats://shared:4222")
	t.Setenv("BOT_ADMIN_ADDR", ":9999")
	t.Setenv("LOG_LEVEL", "debug")
	t.Setenv("BOT_LOG_LEVEL", "warn")
	var cfg bot.Config
	if err := config.Load("BOT", &cfg, nil, io.Discard); err != nil {
		t.Fatal(err)
	}
	if cfg.URL != "nats://shared:4222" || cfg.AdminAddr != ":9999" || cfg.Level != "warn" || cfg.Replicas != 1 {
		t.Errorf("got %+v, want NATS_URL as fallback, BOT_ADMIN_ADDR, BOT_LOG_LEVEL over LOG_LEVEL, 1 replica", cfg)
	}
}

// TestAdmin checks /healthz and /readyz: ready once the bot serves.
func TestAdmin(t *testing.T) {
	s := natstest.Start(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	cfg := bot.Config{Config: natsconn.Config{URL: s.ClientURL()}, AdminAddr: addr, ShutdownTimeout: 10 * time.Second}
	go func() { done <- bot.Run(ctx, cfg, slog.New(slog.NewTextHandler(t.Output(), nil))) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("bot.Run: %v", err)
		}
	}()

	status := func(path string) int {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	waitFor(t, 10*time.Second, "/readyz to answer 200", func() bool { return status("/readyz") == http.StatusOK })
	if got := status("/healthz"); got != http.StatusOK {
		t.Errorf("got /healthz %d, want 200", got)
	}
	s.Shutdown()
	waitFor(t, 10*time.Second, "/readyz to answer 503 without NATS", func() bool { return status("/readyz") == http.StatusServiceUnavailable })
}
