package natsconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// Retry calls f until it succeeds or ctx ends, each attempt limited to 5 s,
// waiting 250 ms doubling to 5 s between attempts. At start NATS (or a
// JetStream leader) may not be there yet: a service waits for it rather
// than exit.
func Retry(ctx context.Context, log *slog.Logger, what string, f func(context.Context) error) error {
	wait := 250 * time.Millisecond
	for {
		attemptCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := f(attemptCtx)
		cancel()
		if err == nil {
			return nil
		}
		log.Warn("retrying", "what", what, "err", err, "retry_in", wait.String())
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// Drain lets the subscriptions finish what they received, flushes what was
// published, and waits for the connection to close.
func Drain(nc *nats.Conn) error {
	closed := nc.StatusChanged(nats.CLOSED)
	defer nc.RemoveStatusListener(closed)
	if err := nc.Drain(); err != nil {
		switch {
		case errors.Is(err, nats.ErrConnectionClosed):
			return nil
		case errors.Is(err, nats.ErrConnectionReconnecting):
			// Nothing can be flushed to a server we are not connected to.
			nc.Close()
			return nil
		}
		return fmt.Errorf("drain nats: %w", err)
	}
	select {
	case <-closed:
	case <-time.After(nats.DefaultDrainTimeout + time.Second):
		return errors.New("drain nats: timed out")
	}
	return nil
}

// Readiness reports a service ready once started is set and while nc is
// connected, for admin.Start.
func Readiness(started *atomic.Bool, nc *nats.Conn) func() error {
	return func() error {
		switch {
		case !started.Load():
			return errors.New("starting: streams not ensured yet")
		case !nc.IsConnected():
			return errors.New("nats " + nc.Status().String())
		}
		return nil
	}
}
