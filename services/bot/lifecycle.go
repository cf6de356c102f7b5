package bot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
)

// startAdmin serves /healthz (the process is up), /readyz (ready reports
// true) and /metrics on addr, for orchestrators and Prometheus. An empty
// addr serves nothing. The returned function shuts the server down.
func startAdmin(addr string, ready func() bool, metrics http.Handler, log *slog.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready() {
			http.Error(w, "not ready: NATS not connected or streams not ensured", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET /metrics", metrics)
	// Listen first so a taken port fails the start, not a goroutine later.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin listen: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin server", "err", err)
		}
	}()
	log.Info("admin server listening", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}

// retry calls f until it succeeds or ctx ends: at start NATS may not be up
// yet, and a service should wait for it rather than exit.
func retry(ctx context.Context, log *slog.Logger, what string, f func(context.Context) error) error {
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

// drain lets the subscriptions finish what they received, flushes what was
// published, and waits for the connection to close.
func drain(nc *nats.Conn) error {
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
