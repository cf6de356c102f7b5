package natsconn

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/natschat/chat/shared/config"
	"github.com/natschat/chat/shared/natstest"
)

// lockedBuffer collects log output written from NATS callbacks.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestConnectReconnectsAndLogs: the connection is named, survives its
// server going away and coming back, and says so in the log.
func TestConnectReconnectsAndLogs(t *testing.T) {
	s := natstest.Start(t)
	var logs lockedBuffer
	nc, err := Connect(Config{URL: s.ClientURL()}, "svc-test", slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	waitFor(t, "connected", nc.IsConnected)

	connz, err := s.Connz(&server.ConnzOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(connz.Conns) != 1 || connz.Conns[0].Name != "svc-test" {
		t.Fatalf("connections %+v, want one named svc-test", connz.Conns)
	}
	if err := s.DisconnectClientByID(connz.Conns[0].Cid); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "reconnected", func() bool { return strings.Contains(logs.String(), "nats reconnected") })
	if !strings.Contains(logs.String(), "nats disconnected") || !strings.Contains(logs.String(), "nats_client=svc-test") {
		t.Errorf("log lacks the disconnect or the client name:\n%s", logs.String())
	}
}

// TestConnectBeforeServer: a service may start before NATS; Connect returns
// and the connection comes up when the server does.
func TestConnectBeforeServer(t *testing.T) {
	nc, err := Connect(Config{URL: "nats://127.0.0.1:1"}, "early", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("Connect failed instead of retrying in the background: %v", err)
	}
	defer nc.Close()
	var started atomic.Bool
	ready := Readiness(&started, nc)
	if err := ready(); err == nil {
		t.Error("ready before start")
	}
	started.Store(true)
	if err := ready(); err == nil || !strings.Contains(err.Error(), "nats") {
		t.Errorf("ready while disconnected: %v", err)
	}
	if err := Drain(context.Background(), nc); err != nil {
		t.Errorf("drain of a connection still trying to connect: %v", err)
	}
}

func TestRetry(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	calls := 0
	err := Retry(context.Background(), log, "thing", func(context.Context) error {
		calls++
		if calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Errorf("got %v after %d calls, want success after 3", err, calls)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err = Retry(ctx, log, "thing", func(context.Context) error { return errors.New("never") })
	if err == nil || !strings.Contains(err.Error(), "thing: never") {
		t.Errorf("got %v, want the last error once the context ends", err)
	}
}

func TestDrainWaitsForClose(t *testing.T) {
	s := natstest.Start(t)
	nc, err := Connect(Config{URL: s.ClientURL()}, "drain", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "connected", nc.IsConnected)
	if err := Drain(context.Background(), nc); err != nil {
		t.Fatal(err)
	}
	if !nc.IsClosed() {
		t.Error("connection not closed after Drain")
	}
}

func TestConfigCheck(t *testing.T) {
	for _, tt := range []struct {
		cfg  Config
		want string // empty: valid
	}{
		{Config{URL: "nats://a:4222,nats://b:4222"}, ""},
		{Config{URL: "nats://a:4222", User: "gateway", Password: "pw"}, ""},
		{Config{URL: " "}, "SVC_NATS_URL (or NATS_URL) must name at least one server"},
		{Config{URL: "nats://a:4222", Password: "pw"}, "SVC_NATS_PASSWORD (or NATS_PASSWORD) is set but NATS_USER is empty"},
		{Config{URL: "nats://a:4222", User: "u", CredsFile: "u.creds"}, "SVC_NATS_CREDS (or NATS_CREDS) and NATS_USER are both set"},
	} {
		c := config.NewChecker("SVC")
		tt.cfg.Check(c)
		err := c.Err()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%+v refused: %v", tt.cfg, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%+v: got %v, want %q", tt.cfg, err, tt.want)
		}
	}
}
