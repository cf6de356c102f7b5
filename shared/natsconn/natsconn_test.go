package natsconn

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"
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
