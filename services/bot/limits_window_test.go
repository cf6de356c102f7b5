package bot

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/stream"
	"github.com/natschat/chat/shared/testkit/natstest"
)

// TestSMSWindowSlides drives the limiter on a real KV bucket with a clock
// the test moves: slots free up one by one as sends leave the window, and
// concurrent instances never both take the last slot.
func TestSMSWindowSlides(t *testing.T) {
	s := natstest.Start(t)
	js, err := jetstream.New(natstest.Connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	newLimiter := func() *smsLimiter {
		l := newSMSLimiter(js, Config{Settings: stream.Settings{Replicas: 1}, SMSPerRequester: 3, SMSPerRecipient: 100, SMSWindow: time.Minute})
		l.clock = clock
		return l
	}
	l := newLimiter()
	ctx := context.Background()
	allow := func(id string) error { return l.allow(ctx, "alice", "bob-"+id, id) }

	for i, id := range []string{"1", "2", "3"} {
		if err := allow(id); err != nil {
			t.Fatalf("send %d: %v", i+1, err)
		}
		advance(10 * time.Second)
	}
	// 30s after the first: full until the first leaves the window.
	var r *refusal
	if err := allow("4"); !errors.As(err, &r) || r.code != chat.CodeRateLimited {
		t.Fatalf("fourth send: got %v, want rate_limited", err)
	} else if want := "try again in 30s"; !strings.Contains(r.msg, want) {
		t.Errorf("got %q, want %q", r.msg, want)
	}
	advance(30 * time.Second) // the first is a minute old
	if err := allow("4"); err != nil {
		t.Fatalf("after the first left the window: %v", err)
	}
	if err := allow("5"); !errors.As(err, &r) || !strings.Contains(r.msg, "try again in 10s") {
		t.Errorf("got %v, want rate_limited with 10s to wait", err)
	}

	// Many instances race for the last slot of a fresh name: one wins.
	advance(2 * time.Minute)
	var wg sync.WaitGroup
	results := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results <- newLimiter().allow(ctx, "carol", "dave", "race-"+string(rune('a'+i)))
		}()
	}
	wg.Wait()
	close(results)
	ok := 0
	for err := range results {
		if err == nil {
			ok++
		} else if !errors.As(err, &r) {
			t.Errorf("racing instance: %v", err)
		}
	}
	if ok != 3 {
		t.Errorf("%d racing sends allowed, want 3", ok)
	}

	// A deleted bucket is created again on the next use.
	if err := js.DeleteKeyValue(ctx, smsLimitsBucket); err != nil {
		t.Fatal(err)
	}
	var lastErr error
	for range 2 { // the first use may notice the bucket is gone
		if lastErr = allow("after-delete"); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		t.Errorf("after the bucket was deleted: %v", lastErr)
	}
}
