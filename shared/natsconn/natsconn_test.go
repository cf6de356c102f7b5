package natsconn

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/natschat/chat/shared/config"
)

// The tests that need a server are in shared/testkit/integration.

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
