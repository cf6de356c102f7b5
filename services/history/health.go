package history

import (
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"
)

// health is what /readyz reports (admin.Start): the service is ready when
// it has started, is not stopping, NATS is connected, the last fetch from
// the chat consumer succeeded and the last database write (or idle ping)
// succeeded.
type health struct {
	mu          sync.Mutex
	nc          *nats.Conn
	started     bool
	stopping    bool
	consumerErr error
	dbErr       error
}

func (h *health) setConn(nc *nats.Conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.nc = nc
}

func (h *health) setStarted() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.started = true
}

func (h *health) setStopping() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stopping = true
}

// setConsumer records why fetching from the chat consumer fails, or nil
// once a fetch worked.
func (h *health) setConsumer(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.consumerErr = err
}

func (h *health) setDB(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dbErr = err
}

// ready returns nil when the service is ready, or why it is not.
func (h *health) ready() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.stopping:
		return errors.New("shutting down")
	case !h.started:
		return errors.New("starting")
	case h.nc == nil || !h.nc.IsConnected():
		return errors.New("nats not connected")
	case h.consumerErr != nil:
		return fmt.Errorf("chat consumer: %w", h.consumerErr)
	case h.dbErr != nil:
		return fmt.Errorf("database: %w", h.dbErr)
	}
	return nil
}
