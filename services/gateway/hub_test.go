package gateway

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natschat/chat/shared/stream"
	"github.com/natschat/chat/shared/testkit"
	"github.com/natschat/chat/shared/testkit/natstest"
)

// TestRoomsStopWithTheirLastClient: rooms acquired and released in
// parallel leave no subscription and no goroutine behind.
func TestRoomsStopWithTheirLastClient(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := stream.Ensure(context.Background(), js, stream.ChatConfig(stream.Options{}))
	if err != nil {
		t.Fatal(err)
	}
	log := testkit.Logger(t)
	src := &natsSource{nc: nc, chat: st, historyTimeout: time.Second, log: log}
	h := newHub("gw", time.Second, nc, src, log)
	h.feedBuffer = 16
	h.metrics = newMetrics(h)
	before := nc.NumSubscriptions()
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			r, err := h.acquire(fmt.Sprintf("room%d", i%5))
			if err != nil {
				t.Error(err)
				return
			}
			h.release(r, nil)
		})
	}
	wg.Wait()
	if got := nc.NumSubscriptions(); got != before {
		t.Errorf("%d subscriptions left", got-before)
	}
	done := make(chan struct{})
	go func() { h.wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(testkit.Deadline):
		t.Error("a room goroutine is still running")
	}
}
