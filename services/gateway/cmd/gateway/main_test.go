package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natschat/chat/services/gateway"
	"github.com/natschat/chat/shared/config"
	"github.com/natschat/chat/shared/natstest"
	"github.com/natschat/chat/shared/service"
	"github.com/natschat/chat/shared/stream"
)

func TestHelpListsEveryVariable(t *testing.T) {
	var out bytes.Buffer
	if err := service.Run(context.Background(), gateway.Prefix, []string{"-h"}, &out, &out, gateway.Run); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"GATEWAY_ADDR", "GATEWAY_NATS_URL", "GATEWAY_ALLOWED_ORIGINS", "GATEWAY_SEND_QUEUE", "GATEWAY_SHUTDOWN_TIMEOUT"} {
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
// with going-away and exits cleanly within the shutdown timeout.
func TestSIGTERMDrains(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	s := natstest.Start(t)
	bin := filepath.Join(t.TempDir(), "gateway")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	addr := freeAddr(t)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "GATEWAY_NATS_URL="+s.ClientURL(), "GATEWAY_ADDR="+addr, "GATEWAY_SHUTDOWN_TIMEOUT=5s", "GATEWAY_LOG_FORMAT=json")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := http.Get("http://" + addr + "/readyz")
		if err == nil && res.StatusCode == 200 {
			res.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway not ready: %s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws://"+addr+"/ws/chat/lobby/alice", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := conn.Read(ctx); err != nil { // the join history
		t.Fatal(err)
	}

	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for err == nil {
		_, _, err = conn.Read(ctx) // presence, then the close
	}
	if got := websocket.CloseStatus(err); got != websocket.StatusGoingAway {
		t.Errorf("socket closed with %v (%v), want going-away", got, err)
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	select {
	case err := <-waitErr:
		if err != nil {
			t.Errorf("exit: %v\n%s", err, stderr.String())
		}
	case <-time.After(8 * time.Second):
		t.Fatalf("still running 8s after SIGTERM")
	}
	t.Logf("exited %v after SIGTERM", time.Since(start))
	if strings.Contains(stderr.String(), "panic") {
		t.Errorf("panic in output:\n%s", stderr.String())
	}
}

// TestLeavesChatStreamAlone: the gateway does not own CHAT. It serves with
// a stream someone changed, leaves it as it is and warns about it.
func TestLeavesChatStreamAlone(t *testing.T) {
	s := natstest.Start(t)
	js, err := jetstream.New(natstest.Connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
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
	cfg.URL, cfg.Addr = s.ClientURL(), freeAddr(t)
	var logs syncBuffer
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gateway.Run(runCtx, cfg, slog.New(slog.NewJSONHandler(&logs, nil))) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("gateway.Run: %v", err)
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := http.Get("http://" + cfg.Addr + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway not ready:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
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

// syncBuffer collects log output written from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
