package bot_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/natschat/chat/services/bot"
	"github.com/natschat/chat/shared/natsconn"
	"github.com/natschat/chat/shared/natstest"
)

// TestMetrics checks /metrics on the admin server: commands counted by name
// and outcome, with unknown names folded into one label.
func TestMetrics(t *testing.T) {
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	cfg := bot.Config{Config: natsconn.Config{URL: s.ClientURL()}, AdminAddr: addr, ShutdownTimeout: 10 * time.Second}
	go func() { done <- bot.Run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("bot.Run: %v", err)
		}
	}()
	metrics := func() string {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	waitFor(t, 10*time.Second, "/metrics", func() bool { return metrics() != "" })
	for _, text := range []string{"/now", "/now", "/sms", "/frobnicate-a", "/frobnicate-b"} {
		if _, err := nc.Request("bot.cmd", []byte(`{"room":"lobby","user":"ann","text":"`+text+`"}`), 5*time.Second); err != nil {
			t.Fatalf("request %s: %v", text, err)
		}
	}
	got := metrics()
	for _, want := range []string{
		`chat_bot_commands_total{command="now",outcome="ok"} 2`,
		`chat_bot_commands_total{command="sms",outcome="refused"} 1`,
		`chat_bot_commands_total{command="unknown",outcome="refused"} 2`,
		`go_goroutines`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, got)
		}
	}
}
