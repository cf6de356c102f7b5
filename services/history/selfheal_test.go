package history

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natschat/chat/services/history/internal/store"
	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/stream"
	"github.com/natschat/chat/shared/testkit"
	"github.com/natschat/chat/shared/testkit/natstest"
)

// TestConsumerDeleted: the durable consumer is deleted while messages flow.
// History reports it on /readyz while it cannot create it again (its NATS
// user is refused for a while, so the window is seen for sure), then
// re-creates it without a restart, and every message, also those published
// meanwhile, is stored exactly once.
func TestConsumerDeleted(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			srv := startAuthServer(t)
			nc := srv.connect(t, "admin")
			js := natstest.JetStream(t, nc)
			cfg := testConfig(t, srv.Server)
			cfg.User, cfg.Password = "history", "history-pw"
			cfg.AdminAddr = testkit.FreeAddr(t)
			cfg.BatchSize = 50
			st := openStore(t, b.setup(t, &cfg))
			startHistory(t, cfg, nc)
			waitReady(t, cfg.AdminAddr, http.StatusOK, "ready")

			pub := startPublisher(t, js, roomNames(3), true)
			waitRows(t, st, 100, testkit.Deadline)

			srv.lockJetStream(t, true)
			if err := js.DeleteConsumer(context.Background(), stream.Chat, consumerName); err != nil {
				t.Fatal(err)
			}
			waitReady(t, cfg.AdminAddr, http.StatusServiceUnavailable, "chat consumer: consumer missing, re-creating")
			pub.waitMore(t, 200) // messages keep coming while it is missing
			if code, body := getStatus("http://" + cfg.AdminAddr + "/readyz"); code != http.StatusServiceUnavailable {
				t.Errorf("/readyz while the consumer cannot be created: %d %q", code, body)
			}
			srv.lockJetStream(t, false)
			waitReady(t, cfg.AdminAddr, http.StatusOK, "ready")

			pub.waitMore(t, 200)
			n := pub.stop(t)
			checkExactlyOnce(t, waitStored(t, st, n, 30*time.Second), n, true)
			if _, body := getStatus("http://" + cfg.AdminAddr + "/metrics"); strings.Contains(body, "chat_history_consumer_failures_total 0") {
				t.Errorf("consumer failures not counted:\n%s", body)
			}
		})
	}
}

// TestStreamStartsOver: the CHAT stream is deleted and created again while
// messages flow, so sequences start over at 1. History notices (the stream's
// creation time changed), stores the new stream's messages in a new epoch
// instead of dropping them as duplicates of the old seqs, answers queries
// with the new epoch, and keeps the old epoch readable.
func TestStreamStartsOver(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			srv := startAuthServer(t)
			nc := srv.connect(t, "admin")
			js := natstest.JetStream(t, nc)
			cfg := testConfig(t, srv.Server)
			cfg.User, cfg.Password = "history", "history-pw"
			cfg.AdminAddr = testkit.FreeAddr(t)
			cfg.BatchSize = 50
			st := openStore(t, b.setup(t, &cfg))
			startHistory(t, cfg, nc)
			oldEpoch := streamEpoch(t, js)

			pub := startPublisher(t, js, roomNames(3), false)
			waitRows(t, st, 150, testkit.Deadline)

			srv.lockJetStream(t, true)
			if err := js.DeleteStream(context.Background(), stream.Chat); err != nil {
				t.Fatal(err)
			}
			waitReady(t, cfg.AdminAddr, http.StatusServiceUnavailable, "chat consumer")
			// Another service creates the stream again, as the gateway and
			// the bot do at start; publishing works again from seq 1.
			if _, err := stream.Ensure(context.Background(), js, stream.ChatConfig(stream.Options{})); err != nil {
				t.Fatal(err)
			}
			newEpoch := streamEpoch(t, js)
			if newEpoch == oldEpoch {
				t.Fatal("the new stream has the old one's creation time")
			}
			pub.waitMore(t, 200)
			if code, body := getStatus("http://" + cfg.AdminAddr + "/readyz"); code != http.StatusServiceUnavailable {
				t.Errorf("/readyz while the consumer cannot be created: %d %q", code, body)
			}
			srv.lockJetStream(t, false)
			waitReady(t, cfg.AdminAddr, http.StatusOK, "ready")
			pub.waitMore(t, 200)
			pub.stop(t)

			// Every message of the new stream is stored, once, in the new
			// epoch, with its new seq.
			want := streamContents(t, js)
			if len(want) < 400 {
				t.Fatalf("only %d messages in the new stream", len(want))
			}
			var got map[string]uint64
			testkit.WaitForState(t, 30*time.Second, "every message of the new stream stored", func() (bool, string) {
				var dups []string
				got, dups = epochContents(t, st, newEpoch)
				if len(dups) > 0 {
					t.Fatalf("stored twice in the new epoch: %v", dups)
				}
				return len(got) == len(want), fmt.Sprintf("%d of %d stored", len(got), len(want))
			})
			for text, seq := range want {
				if got[text] != seq {
					t.Errorf("%s: stored with seq %d, the stream has it at %d", text, got[text], seq)
				}
			}
			// The old epoch keeps what was stored of the old stream, and no
			// message is in both.
			old, dups := epochContents(t, st, oldEpoch)
			if len(old) < 150 || len(dups) > 0 {
				t.Errorf("old epoch: %d messages, duplicates %v; want at least 150 and none", len(old), dups)
			}
			for text := range old {
				if _, ok := want[text]; ok {
					t.Errorf("%s stored in both epochs", text)
				}
			}

			// Queries answer the new epoch and lead back to the old one.
			var resp chat.HistoryResponse
			if err := request(nc, chat.HistorySubject("room-0"), chat.HistoryRequest{Limit: 500}, &resp); err != nil {
				t.Fatal(err)
			}
			if resp.Error != "" || resp.Epoch != newEpoch || resp.PreviousEpoch != oldEpoch || len(resp.Messages) == 0 {
				t.Fatalf("got epoch %d previous %d, %d messages, error %q; want epoch %d previous %d",
					resp.Epoch, resp.PreviousEpoch, len(resp.Messages), resp.Error, newEpoch, oldEpoch)
			}
			for _, m := range resp.Messages {
				if want[m.Text] != m.Seq {
					t.Errorf("current epoch answered %s seq %d, not a message of the new stream", m.Text, m.Seq)
				}
			}
			resp = chat.HistoryResponse{}
			if err := request(nc, chat.HistorySubject("room-0"), chat.HistoryRequest{Limit: 500, Epoch: oldEpoch}, &resp); err != nil {
				t.Fatal(err)
			}
			if resp.Epoch != oldEpoch || resp.StoredThrough != 0 || len(resp.Messages) == 0 {
				t.Errorf("old epoch: got epoch %d stored_through %d, %d messages", resp.Epoch, resp.StoredThrough, len(resp.Messages))
			}
			for _, m := range resp.Messages {
				if _, ok := old[m.Text]; !ok {
					t.Errorf("old epoch answered %s, not stored in it", m.Text)
				}
			}
			var rooms chat.RoomsResponse
			if err := request(nc, chat.HistoryRooms, nil, &rooms); err != nil {
				t.Fatal(err)
			}
			var counted int64
			for _, r := range rooms.Rooms {
				counted += r.Messages
			}
			if counted != int64(len(old)+len(want)) {
				t.Errorf("rooms count %d messages, want %d (both epochs)", counted, len(old)+len(want))
			}
		})
	}
}

// TestHistoryCreatesTheStream: history owns CHAT. Deleted, with nobody else
// to create it, history creates it again and stores what comes next.
func TestHistoryCreatesTheStream(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	js := natstest.JetStream(t, nc)
	cfg := testConfig(t, s)
	st := openStore(t, sqliteBackend.setup(t, &cfg))
	startHistory(t, cfg, nc)
	publish(t, nc, []string{"a"}, 0, 20)
	waitStored(t, st, 20, 10*time.Second)
	oldEpoch := streamEpoch(t, js)

	if err := js.DeleteStream(context.Background(), stream.Chat); err != nil {
		t.Fatal(err)
	}
	testkit.WaitForState(t, 20*time.Second, "history to create CHAT again", func() (bool, string) {
		str, err := js.Stream(context.Background(), stream.Chat)
		if err != nil {
			return false, err.Error()
		}
		return chat.EpochOf(str.CachedInfo().Created) != oldEpoch, "the old stream"
	})
	publish(t, nc, []string{"a"}, 20, 30)
	testkit.WaitForState(t, 20*time.Second, "the new stream's messages stored", func() (bool, string) {
		got, _ := epochContents(t, st, streamEpoch(t, js))
		return len(got) == 30, fmt.Sprintf("%d of 30", len(got))
	})
}

// authServer is a nats-server whose users can be changed while it runs:
// "history" for the service and "admin" for the test.
type authServer struct {
	*server.Server
	dir string
}

func startAuthServer(t *testing.T) *authServer {
	t.Helper()
	a := &authServer{dir: t.TempDir()}
	s, err := server.NewServer(a.options(false))
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		t.Fatal("nats server not ready within 10s")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	a.Server = s
	return a
}

func (a *authServer) options(locked bool) *server.Options {
	var perms *server.Permissions // nil: everything
	if locked {
		perms = &server.Permissions{Publish: &server.SubjectPermission{
			Allow: []string{">"},
			Deny: []string{
				"$JS.API.STREAM.CREATE.>", "$JS.API.STREAM.UPDATE.>",
				"$JS.API.CONSUMER.CREATE.>", "$JS.API.CONSUMER.DURABLE.CREATE.>",
			},
		}}
	}
	return &server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT,
		JetStream: true, StoreDir: a.dir,
		NoSigs: true, NoLog: true,
		Users: []*server.User{
			{Username: "history", Password: "history-pw", Permissions: perms},
			{Username: "admin", Password: "admin-pw"},
		},
	}
}

// lockJetStream refuses (or allows again) the history user creating or
// updating streams and consumers.
func (a *authServer) lockJetStream(t *testing.T, locked bool) {
	t.Helper()
	if err := a.ReloadOptions(a.options(locked)); err != nil {
		t.Fatalf("reload nats permissions: %v", err)
	}
}

func (a *authServer) connect(t *testing.T, user string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(a.ClientURL(), nats.UserInfo(user, user+"-pw"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func streamEpoch(t *testing.T, js jetstream.JetStream) int64 {
	t.Helper()
	str, err := js.Stream(context.Background(), stream.Chat)
	if err != nil {
		t.Fatal(err)
	}
	return chat.EpochOf(str.CachedInfo().Created)
}

// publisher publishes m-0, m-1, ... through JetStream, a message every few
// milliseconds, spread over rooms, until stopped.
type publisher struct {
	mu     sync.Mutex
	sent   int // attempted
	acked  int
	failed int
	quit   chan struct{}
	done   chan struct{}
	halt   func()
}

// startPublisher starts publishing; mustAck makes a failed publish a test
// error (when the stream is never away).
func startPublisher(t *testing.T, js jetstream.JetStream, rooms []string, mustAck bool) *publisher {
	t.Helper()
	p := &publisher{quit: make(chan struct{}), done: make(chan struct{})}
	p.halt = sync.OnceFunc(func() { close(p.quit); <-p.done })
	go func() {
		defer close(p.done)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-p.quit:
				return
			case <-tick.C:
			}
			data := fmt.Sprintf(`{"user":"u%d","text":"m-%d","client_id":"c-%d"}`, i%7, i, i)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := js.Publish(ctx, chat.RoomSubject(rooms[i%len(rooms)]), []byte(data))
			cancel()
			if err != nil && mustAck {
				t.Errorf("publish m-%d: %v", i, err)
			}
			p.mu.Lock()
			p.sent++
			if err == nil {
				p.acked++
			} else {
				p.failed++
			}
			p.mu.Unlock()
		}
	}()
	t.Cleanup(p.halt)
	return p
}

// waitMore waits until n more messages were acknowledged.
func (p *publisher) waitMore(t *testing.T, n int) {
	t.Helper()
	p.mu.Lock()
	target := p.acked + n
	p.mu.Unlock()
	testkit.WaitForState(t, 30*time.Second, fmt.Sprintf("%d more published messages", n), func() (bool, string) {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.acked >= target, fmt.Sprintf("%d acked, %d failed", p.acked, p.failed)
	})
}

// stop stops publishing and returns how many messages were sent.
func (p *publisher) stop(t *testing.T) int {
	p.halt()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent
}

// streamContents is every message in CHAT: text -> seq.
func streamContents(t *testing.T, js jetstream.JetStream) map[string]uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	str, err := js.Stream(ctx, stream.Chat)
	if err != nil {
		t.Fatal(err)
	}
	n := str.CachedInfo().State.Msgs
	c, err := str.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for uint64(len(out)) < n {
		batch, err := c.Fetch(500, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			meta, err := m.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			msg, err := chat.ParseMessage(m.Data(), meta.Timestamp)
			if err != nil {
				t.Fatal(err)
			}
			out[msg.Text] = meta.Sequence.Stream
			got++
		}
		if got == 0 {
			t.Fatalf("read %d of %d stream messages", len(out), n)
		}
	}
	return out
}

// epochContents is what the database holds in epoch: text -> seq, and the
// texts stored more than once.
func epochContents(t *testing.T, st *store.Store, epoch int64) (map[string]uint64, []string) {
	t.Helper()
	ctx := context.Background()
	rooms, err := st.Rooms(ctx, 1000)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	var dups []string
	for _, r := range rooms {
		var before uint64
		for {
			msgs, more, err := st.Messages(ctx, r.Name, store.Query{Epoch: epoch, Before: before, Limit: 500})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range msgs {
				if _, ok := out[m.Text]; ok {
					dups = append(dups, m.Text)
				}
				out[m.Text] = m.Seq
			}
			if !more || len(msgs) == 0 {
				break
			}
			before = msgs[0].Seq
		}
	}
	return out, dups
}

// getStatus is testkit.Get without the error: a refused connection is
// status 0 with the error as its body.
func getStatus(url string) (int, string) {
	code, body, err := testkit.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	return code, body
}
