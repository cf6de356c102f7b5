package smsworker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/natschat/chat/shared/chat"
)

// Sender sends the SMS a task asks for. The worker calls Send concurrently
// from up to Concurrency goroutines.
type Sender interface {
	// Send sends task's SMS to task.To and returns once the provider took
	// it, or an error to have the task retried later. It must give up when
	// ctx is done. A worker that dies after Send but before recording the
	// task as sent makes the next worker call Send again for the same task,
	// so an implementation talking to a real provider passes task.ID as the
	// provider's idempotency key.
	Send(ctx context.Context, task chat.SMSTask) error
}

// fakeSender stands in for an SMS provider: it logs "sms sent", and can be
// made slow or failing to show retries and dead-lettering in tests and demos.
type fakeSender struct {
	delay    time.Duration
	failRate float64 // 0: never fails, 1: always
	log      *slog.Logger
}

func newFakeSender(delay time.Duration, fail string, log *slog.Logger) (*fakeSender, error) {
	rate, err := parseFailRate(fail)
	if err != nil {
		return nil, err
	}
	return &fakeSender{delay: delay, failRate: rate, log: log}, nil
}

// parseFailRate reads SMSWORKER_FAKE_FAIL: always, never, or a rate in [0, 1].
func parseFailRate(s string) (float64, error) {
	switch s {
	case "never", "":
		return 0, nil
	case "always":
		return 1, nil
	}
	rate, err := strconv.ParseFloat(s, 64)
	if err != nil || rate < 0 || rate > 1 {
		return 0, fmt.Errorf("SMSWORKER_FAKE_FAIL is %q, want always, never or a rate between 0 and 1", s)
	}
	return rate, nil
}

var errFakeFailure = errors.New("fake sender: simulated provider failure")

func (f *fakeSender) Send(ctx context.Context, task chat.SMSTask) error {
	log := f.log.With("task_id", task.ID, "room", task.Room, "to", task.To)
	if f.delay > 0 {
		log.Info("sms sending", "delay", f.delay.String())
		select {
		case <-time.After(f.delay):
		case <-ctx.Done():
			return fmt.Errorf("fake sender: %w", ctx.Err())
		}
	}
	if f.failRate > 0 && rand.Float64() < f.failRate {
		return errFakeFailure
	}
	log.Info("sms sent")
	return nil
}
