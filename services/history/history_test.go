package history

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/stream"
	"github.com/natschat/chat/shared/testkit"
	"github.com/natschat/chat/shared/testkit/natstest"
)

// TestStoresEveryMessageOnce: 1,000 messages across 10 rooms, published
// with plain core NATS, are each stored once with their stream sequence, in
// seq order per room.
func TestStoresEveryMessageOnce(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			s := natstest.Start(t)
			nc := natstest.Connect(t, s)
			cfg := testConfig(t, s)
			st := openStore(t, b.setup(t, &cfg))
			startHistory(t, cfg, nc)

			const n = 1000
			publish(t, nc, roomNames(10), 0, n)
			c := waitStored(t, st, n, testkit.Deadline)
			checkExactlyOnce(t, c, n, true)
			if len(c.rows) != 10 {
				t.Errorf("got %d rooms, want 10", len(c.rows))
			}
		})
	}
}

// TestTwoInstances: two instances share the durable consumer while
// messages arrive, and one of them is stopped and restarted halfway: still
// one row per message.
func TestTwoInstances(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			s := natstest.Start(t)
			nc := natstest.Connect(t, s)
			cfg := testConfig(t, s)
			// Small batches so that both instances get work.
			cfg.BatchSize = 50
			st := openStore(t, b.setup(t, &cfg))
			stop1 := startHistory(t, cfg, nc)
			startHistory(t, cfg, nc)

			rooms := roomNames(5)
			const n = 3000
			for i := 0; i < n; i += 100 {
				publish(t, nc, rooms, i, 100)
				if i == n/2 {
					stop1() // drains: its batch in flight is stored and acked
					stop1 = startHistory(t, cfg, nc)
				}
			}
			c := waitStored(t, st, n, 60*time.Second)
			checkExactlyOnce(t, c, n, true)
		})
	}
}

// TestBadPayloadsAreSkipped: garbage on chat.room.x is neither stored nor
// redelivered forever, and the message after it is stored.
func TestBadPayloadsAreSkipped(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	cfg := testConfig(t, s)
	st := openStore(t, sqliteBackend.setup(t, &cfg))
	startHistory(t, cfg, nc)

	garbage := []string{
		`not json`,
		`{"user":"a"}`,
		`{"text":42}`,
		`{"text":"` + strings.Repeat("x", chat.MaxTextLen+1) + `"}`,
		`{"text":"hi","user":"a.b"}`,
		``,
	}
	for _, g := range garbage {
		if err := nc.Publish(chat.RoomSubject("x"), []byte(g)); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Publish(chat.RoomSubject("x"), []byte(`{"user":"ok","text":"after the garbage"}`)); err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	good := uint64(len(garbage) + 1)

	c := waitStored(t, st, 1, testkit.Deadline)
	msgs := c.rows["x"]
	if len(msgs) != 1 || msgs[0].Text != "after the garbage" || msgs[0].Seq != good {
		t.Fatalf("got %+v, want only the good message with seq %d", msgs, good)
	}

	// Terminated garbage counts as done: the ack floor passes it, and
	// nothing is left pending for redelivery.
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(context.Background(), stream.Chat, consumerName)
	if err != nil {
		t.Fatal(err)
	}
	testkit.WaitForState(t, testkit.Deadline, "ack floor past the garbage", func() (bool, string) {
		info, err := cons.Info(context.Background())
		if err != nil {
			return false, err.Error()
		}
		return info.AckFloor.Stream == good && info.NumAckPending == 0 && info.NumRedelivered == 0,
			fmt.Sprintf("ack floor %d, pending %d, redelivered %d", info.AckFloor.Stream, info.NumAckPending, info.NumRedelivered)
	})
}

// TestBacklogIsNotLingeredOver: with a whole batch waiting, history stores
// it at once; the linger is for a trickle. Here the linger is longer than
// the test waits, so only batches taken without lingering can be stored.
func TestBacklogIsNotLingeredOver(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	cfg := testConfig(t, s)
	cfg.BatchSize = 10
	cfg.BatchLinger = time.Hour
	st := openStore(t, sqliteBackend.setup(t, &cfg))
	stop := startHistory(t, cfg, nc) // creates the stream and the consumer
	stop()

	rooms := roomNames(3)
	publish(t, nc, rooms, 0, 25) // two whole batches and five more
	startHistory(t, cfg, nc)
	waitRows(t, st, 20, testkit.Deadline)
}
