package natstest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/stream"
	"github.com/natschat/chat/shared/testkit"
)

// JetStream is the JetStream API on nc.
func JetStream(t testing.TB, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// StreamState is the state of the stream called name.
func StreamState(t testing.TB, js jetstream.JetStream, name string) jetstream.StreamState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Deadline)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	return info.State
}

// RoomMessages reads every message of room stored in the CHAT stream, in
// order: what the gateways deliver and history stores.
func RoomMessages(t testing.TB, js jetstream.JetStream, room string) []chat.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Deadline)
	defer cancel()
	subject := chat.RoomSubject(room)
	s, err := js.Stream(ctx, stream.Chat)
	if err != nil {
		t.Fatalf("CHAT stream: %v", err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	n := info.State.Subjects[subject]
	if n == 0 {
		return nil
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := c.Fetch(int(n), jetstream.FetchMaxWait(testkit.Deadline))
	if err != nil {
		t.Fatal(err)
	}
	var msgs []chat.Message
	for m := range batch.Messages() {
		msg, err := chat.ParseMessage(m.Data(), time.Now())
		if err != nil {
			t.Fatalf("room message %q: %v", m.Data(), err)
		}
		meta, err := m.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		msg.Room, msg.Seq = room, meta.Sequence.Stream
		msgs = append(msgs, msg)
	}
	if uint64(len(msgs)) != n {
		t.Fatalf("read %d messages of %s, the stream has %d", len(msgs), room, n)
	}
	return msgs
}
