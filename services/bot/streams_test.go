package bot_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natschat/chat/services/bot"
	"github.com/natschat/chat/shared/natsconn"
	"github.com/natschat/chat/shared/stream"
	"github.com/natschat/chat/shared/testkit"
	"github.com/natschat/chat/shared/testkit/natstest"
)

// syncBuffer collects log output written from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestStreamsNotOwned: the bot owns neither CHAT nor SMS. It creates the
// missing SMS stream with the definition, and leaves a CHAT stream someone
// changed as it is, with a warning naming what differs.
func TestStreamsNotOwned(t *testing.T) {
	s := natstest.Start(t)
	js, err := jetstream.New(natstest.Connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	changed := stream.ChatConfig(stream.Options{})
	changed.MaxMsgsPerSubject = 1
	if _, err := js.CreateStream(ctx, changed); err != nil {
		t.Fatal(err)
	}

	var logs syncBuffer
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	cfg := bot.Config{Config: natsconn.Config{URL: s.ClientURL()}, ShutdownTimeout: 10 * time.Second}
	go func() { done <- bot.Run(runCtx, cfg, slog.New(slog.NewTextHandler(&logs, nil))) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("bot.Run: %v", err)
		}
	}()
	testkit.WaitFor(t, "the bot serving", func() bool { return strings.Contains(logs.String(), "bot serving") })

	sms, err := js.Stream(ctx, stream.SMS)
	if err != nil {
		t.Fatalf("SMS not created: %v", err)
	}
	if got, want := sms.CachedInfo().Config.Retention, stream.SMSConfig(stream.Options{}).Retention; got != want {
		t.Errorf("SMS created with retention %v, want %v", got, want)
	}
	chat, err := js.Stream(ctx, stream.Chat)
	if err != nil {
		t.Fatal(err)
	}
	if got := chat.CachedInfo().Config.MaxMsgsPerSubject; got != 1 {
		t.Errorf("CHAT has %d messages per room, want the 1 it was left with", got)
	}
	out := logs.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "stream=CHAT") || !strings.Contains(out, "max_msgs_per_subject=1 (want 100000)") {
		t.Errorf("no warning naming CHAT's changed field:\n%s", out)
	}
	if strings.Contains(out, "stream=SMS owner=sms-worker fields") {
		t.Errorf("a warning for SMS, created as defined:\n%s", out)
	}
}
