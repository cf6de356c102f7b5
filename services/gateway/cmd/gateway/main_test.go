package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/natschat/chat/services/gateway"
	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/config"
	"github.com/natschat/chat/shared/service"
	"github.com/natschat/chat/shared/stream"
	"github.com/natschat/chat/shared/testkit"
	"github.com/natschat/chat/shared/testkit/natstest"
	"github.com/natschat/chat/shared/testkit/wstest"
)

func TestHelpListsEveryVariable(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := service.Run(context.Background(), gateway.Prefix, []string{"-h"}, &out, &out, gateway.Run); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"GATEWAY_ADDR", "GATEWAY_NATS_URL", "GATEWAY_ALLOWED_ORIGINS", "GATEWAY_SEND_QUEUE", "GATEWAY_SHUTDOWN_TIMEOUT",
		"GATEWAY_GUESTS", "GATEWAY_SECURE_COOKIES", "GATEWAY_ADMINS", "GATEWAY_JWT_SECRET", "GATEWAY_JWT_PUBLIC_KEY", "GATEWAY_AUTH_TIMEOUT"} {
		if !strings.Contains(out.String(), v) {
			t.Errorf("-h does not list %s", v)
		}
	}
}

// TestBadConfigRefused: every problem is reported at once, naming its
// variable, before anything connects or listens.
func TestBadConfigRefused(t *testing.T) {
	t.Setenv("GATEWAY_SEND_QUEUE", "0")
	t.Setenv("GATEWAY_RATE", "-1")
	t.Setenv("GATEWAY_NATS_URL", "")
	t.Setenv("GATEWAY_ALLOWED_ORIGINS", "[chat.example.com")
	err := service.Run(context.Background(), gateway.Prefix, nil, io.Discard, io.Discard, gateway.Run)
	if !service.IsConfigError(err) {
		t.Fatalf("got %v, want a configuration error", err)
	}
	for _, want := range []string{
		"GATEWAY_SEND_QUEUE must be at least 1 (got 0)",
		"GATEWAY_RATE must be more than 0 (got -1)",
		"GATEWAY_NATS_URL (or NATS_URL) must name at least one server",
		`GATEWAY_ALLOWED_ORIGINS has "[chat.example.com", not a valid host pattern`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// TestSIGTERMDrains runs the real binary: on SIGTERM it closes WebSockets
// with going-away and exits cleanly.
func TestSIGTERMDrains(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	s := natstest.Start(t)
	bin := testkit.GoBuild(t, ".", ".")
	addr := testkit.FreeAddr(t)
	p := testkit.StartProcess(t, "gateway", bin, "GATEWAY_NATS_URL="+s.ClientURL(), "GATEWAY_ADDR="+addr, "GATEWAY_SHUTDOWN_TIMEOUT=5s", "GATEWAY_LOG_FORMAT=json")
	testkit.WaitReady(t, "http://"+addr)
	c := wstest.Dial(t, "ws://"+addr+"/ws/chat/lobby/alice")
	c.Next(chat.FrameHistory)

	start := time.Now()
	p.Signal(t, syscall.SIGTERM)
	if err := c.WaitClosed(); websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Errorf("socket closed with %v (%v), want going-away", websocket.CloseStatus(err), err)
	}
	if err := p.Wait(t); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
	t.Logf("exited %v after SIGTERM", time.Since(start))
	if strings.Contains(p.Output(), "panic") {
		t.Errorf("panic in output:\n%s", p.Output())
	}
}

// TestLeavesChatStreamAlone: the gateway does not own CHAT. It serves with
// a stream someone changed, leaves it as it is and warns about it.
func TestLeavesChatStreamAlone(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	js := natstest.JetStream(t, natstest.Connect(t, s))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	changed := stream.ChatConfig(stream.Options{})
	changed.MaxAge = time.Hour
	if _, err := js.CreateStream(ctx, changed); err != nil {
		t.Fatal(err)
	}

	var cfg gateway.Config
	if err := config.Load("GATEWAY_TEST_DEFAULTS", &cfg, nil, nil); err != nil {
		t.Fatal(err)
	}
	cfg.URL, cfg.Addr = s.ClientURL(), testkit.FreeAddr(t)
	var logs testkit.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	testkit.Start(t, "gateway", func(ctx context.Context) error { return gateway.Run(ctx, cfg, log) })
	testkit.WaitReady(t, "http://"+cfg.Addr)
	st, err := js.Stream(ctx, stream.Chat)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.MaxAge; got != time.Hour {
		t.Errorf("CHAT max age %v, want the hour it was left with", got)
	}
	if out := logs.String(); !strings.Contains(out, `"level":"WARN"`) || !strings.Contains(out, "max_age=1h0m0s (want 168h0m0s)") {
		t.Errorf("no warning naming the changed field:\n%s", out)
	}
}

func TestMain(m *testing.M) { testkit.Main(m) }
