package history

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natschat/chat/shared/stream"
	"github.com/natschat/chat/shared/testkit/natstest"
)

// TestOwnsChatStream: history owns CHAT, so at start it brings a stream
// someone changed back to the definition, with its own byte bound.
func TestOwnsChatStream(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	changed := stream.ChatConfig(stream.Options{})
	changed.MaxMsgsPerSubject = 1
	changed.RePublish = nil
	if _, err := js.CreateStream(ctx, changed); err != nil {
		t.Fatal(err)
	}

	cfg := testConfig(t, s)
	cfg.ChatMaxBytes = 64 << 20
	sqliteBackend.setup(t, &cfg)
	startHistory(t, cfg, nc)

	st, err := js.Stream(ctx, stream.Chat)
	if err != nil {
		t.Fatal(err)
	}
	got := st.CachedInfo().Config
	want := stream.ChatConfig(stream.Options{ChatMaxBytes: cfg.ChatMaxBytes})
	if got.MaxMsgsPerSubject != want.MaxMsgsPerSubject || got.RePublish == nil || got.MaxBytes != want.MaxBytes {
		t.Errorf("CHAT after history started: %d per room, republish %v, max bytes %d; want %d, %v, %d",
			got.MaxMsgsPerSubject, got.RePublish, got.MaxBytes, want.MaxMsgsPerSubject, want.RePublish, want.MaxBytes)
	}
}
