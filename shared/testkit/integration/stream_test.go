package integration

import (
	"context"
	"strconv"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/stream"
	"github.com/natschat/chat/shared/testkit"
	"github.com/natschat/chat/shared/testkit/natstest"
)

// TestChatRepublish pins what gateways rely on: every message published on
// chat.room.<room>, also with plain core NATS, is republished to
// chat.feed.<room> with its stream sequence and the previous sequence of the
// same room.
func TestChatRepublish(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Deadline)
	defer cancel()
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// Ensure twice: the second service to start must not fail.
	for range 2 {
		if _, err := stream.Ensure(ctx, js, stream.ChatConfig(stream.Options{})); err != nil {
			t.Fatal(err)
		}
	}
	feed := make(chan *nats.Msg, 16)
	sub, err := nc.ChanSubscribe(chat.FeedWildcard, feed)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	nc.Flush()

	for _, room := range []string{"a", "b", "a"} {
		if err := nc.Publish(chat.RoomSubject(room), []byte(`{"text":"x"}`)); err != nil {
			t.Fatal(err)
		}
	}
	want := []struct {
		subject   string
		seq, last uint64
	}{
		{chat.FeedSubject("a"), 1, 0},
		{chat.FeedSubject("b"), 2, 0},
		{chat.FeedSubject("a"), 3, 1},
	}
	for _, w := range want {
		select {
		case m := <-feed:
			seq, _ := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
			last, _ := strconv.ParseUint(m.Header.Get(jetstream.LastSequenceHeader), 10, 64)
			if m.Subject != w.subject || seq != w.seq || last != w.last {
				t.Errorf("got %s seq=%d last=%d, want %s seq=%d last=%d", m.Subject, seq, last, w.subject, w.seq, w.last)
			}
		case <-ctx.Done():
			t.Fatal("republished message did not arrive")
		}
	}
}

// TestCreateLeavesAStreamCreatedMeanwhile: services start together, and
// the stream one of them creates while another waits to create it is
// used as it is, messages and all (its epoch unchanged).
func TestCreateLeavesAStreamCreatedMeanwhile(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Deadline)
	defer cancel()
	js := natstest.JetStream(t, natstest.Connect(t, natstest.Start(t)))
	def := stream.ChatConfig(stream.Options{})
	first, err := stream.Create(ctx, js, def)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, chat.RoomSubject("a"), []byte(`{"text":"x"}`)); err != nil {
		t.Fatal(err)
	}
	again, err := stream.Create(ctx, js, def)
	if err != nil {
		t.Fatalf("the same stream created again: %v", err)
	}
	info, err := again.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 || !info.Created.Equal(first.CachedInfo().Created) {
		t.Errorf("after a second create: %d messages, created %v; want the first stream's message and creation time %v",
			info.State.Msgs, info.Created, first.CachedInfo().Created)
	}
}
