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
// published, and waits for the connection to close, or for ctx: then it
// closes the connection at once. nats.go's own drain timeout (30 s by
// default) bounds the wait too.
func Drain(ctx context.Context, nc *nats.Conn) error {
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
		nc.Close()
		return fmt.Errorf("drain nats: %w", err)
	}
	select {
	case <-closed:
		return nil
	case <-ctx.Done():
		nc.Close()
		return fmt.Errorf("drain nats: %w", ctx.Err())
	}
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
