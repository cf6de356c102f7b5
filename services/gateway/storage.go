package gateway

import (
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// JetStream's error codes for a store that has no room left.
const (
	errCodeInsufficientResources jetstream.ErrorCode = 10023
	errCodeStorageExceeded       jetstream.ErrorCode = 10047
)

// storage watches whether JetStream stores the gateway's messages. A full
// store refuses every message of every room: it is an alarm (error log,
// the chat_gateway_store_full gauge, a line in /readyz), not a silent
// outage.
type storage struct {
	log    *slog.Logger
	isFull atomic.Bool // fullAt is set: lets ok skip the lock

	mu       sync.Mutex
	fullAt   time.Time // when publishes started failing for lack of space; zero: fine
	lastLog  time.Time
	refusals int
}

// refused reports whether err is JetStream refusing a message for lack of
// space, and raises the alarm if so.
func (s *storage) refused(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || (apiErr.ErrorCode != errCodeInsufficientResources && apiErr.ErrorCode != errCodeStorageExceeded) {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if s.fullAt.IsZero() {
		s.fullAt = now
		s.isFull.Store(true)
	}
	s.refusals++
	if now.Sub(s.lastLog) >= time.Minute {
		s.log.Error("JetStream storage is full: messages are refused", "since", s.fullAt, "refused", s.refusals, "err", err)
		s.lastLog, s.refusals = now, 0
	}
	return true
}

// ok records a stored message: the store has room again.
func (s *storage) ok() {
	if !s.isFull.Load() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.fullAt.IsZero() {
		s.log.Info("JetStream storage accepts messages again", "full_for", time.Since(s.fullAt).Round(time.Second).String())
		s.fullAt, s.lastLog = time.Time{}, time.Time{}
		s.isFull.Store(false)
	}
}

// full returns since when the store has been refusing messages.
func (s *storage) full() (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fullAt, !s.fullAt.IsZero()
}
