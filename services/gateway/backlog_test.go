package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/testkit"
	"github.com/natschat/chat/shared/testkit/natstest"
	"github.com/natschat/chat/shared/testkit/wstest"
)

// These tests run without a history service: the gateway falls back to the
// CHAT stream for everything, which is also what it does while history is down.

func publishN(t *testing.T, nc *nats.Conn, room string, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := nc.Publish(chat.RoomSubject(room), []byte(fmt.Sprintf(`{"user":"p","text":"m%d"}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

func TestJoinGetsRecentThenLive(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	base := startGateway(t, s, nil)
	nc := natstest.Connect(t, s)
	publishN(t, nc, "lobby", 0, 120)
	publishN(t, nc, "elsewhere", 0, 30)
	waitStored(t, nc, "lobby", 120)

	c := wstest.Dial(t, base+"/ws/chat/lobby/alice")
	h := c.Next(chat.FrameHistory)
	got := texts(h)
	if len(got) != 50 || got[0] != "m70" || got[49] != "m119" || !h.HasMore {
		t.Fatalf("join history: %d messages %v..., has_more %v", len(got), got[:min(3, len(got))], h.HasMore)
	}
	publishN(t, nc, "lobby", 120, 1)
	if f := c.Next(chat.FrameMessage); f.Text != "m120" {
		t.Errorf("live: got %+v", f)
	}

	// Page back to the first message.
	oldest := h.Messages[0].Seq
	all := got
	for {
		c.Send(chat.ClientFrame{Type: chat.FrameHistory, Before: oldest, Limit: 50})
		p := c.Next(chat.FrameHistory)
		all = append(texts(p), all...)
		if !p.HasMore {
			break
		}
		oldest = p.Messages[0].Seq
	}
	if len(all) != 120 || all[0] != "m0" {
		t.Errorf("paged back to %d messages starting %q, want 120 from m0", len(all), all[0])
	}
}

func TestResumeSinceMissesNothing(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	base := startGateway(t, s, nil)
	nc := natstest.Connect(t, s)
	c := wstest.Dial(t, base+"/ws/chat/lobby/alice")
	c.Next(chat.FrameHistory)
	publishN(t, nc, "lobby", 0, 10)
	var last uint64
	for range 10 {
		last = c.Next(chat.FrameMessage).Seq
	}
	c.Conn.CloseNow()

	publishN(t, nc, "lobby", 10, 15)
	waitStored(t, nc, "lobby", 25)
	r := wstest.Dial(t, base+fmt.Sprintf("/ws/chat/lobby/alice?since=%d", last))
	h := r.Next(chat.FrameHistory)
	if h.Reset {
		t.Fatalf("resume: a reset, want what was missed")
	}
	// The history frame ends where the room's feed is; on a busy machine
	// the feed may not have all 15 yet, and the rest come live after it.
	got := texts(h)
	for len(got) < 15 {
		got = append(got, r.Next(chat.FrameMessage).Text)
	}
	for i, text := range got {
		if want := fmt.Sprintf("m%d", 10+i); text != want {
			t.Fatalf("resume: %v, want m10 to m24 in order", got)
		}
	}
	publishN(t, nc, "lobby", 25, 1)
	if f := r.Next(chat.FrameMessage); f.Text != "m25" {
		t.Errorf("live after resume: %+v", f)
	}
}

// TestResumesIntoARoomJustStartedReadItOnce: the clients of a gateway
// that restarted come back with ?since= into rooms that have just started
// here. The room reads its newest messages once as it starts and answers
// every resume from them: one stream read, not one per client (10,000
// clients coming back at once would also meet JetStream's limit of 1,000
// consumers per stream).
func TestResumesIntoARoomJustStartedReadItOnce(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	base := startGateway(t, s, nil)
	nc := natstest.Connect(t, s)
	publishN(t, nc, "lobby", 0, 30)
	waitStored(t, nc, "lobby", 30)
	msg, err := nc.Request("$JS.API.STREAM.MSG.GET.CHAT", []byte(`{"last_by_subj":"`+chat.RoomSubject("lobby")+`"}`), testkit.Deadline)
	if err != nil {
		t.Fatal(err)
	}
	var last struct {
		Message struct{ Seq uint64 } `json:"message"`
	}
	if err := json.Unmarshal(msg.Data, &last); err != nil || last.Message.Seq == 0 {
		t.Fatalf("last seq of lobby: %s (%v)", msg.Data, err)
	}
	// lobby's messages are the stream's only ones: m25..m29 follow since.
	since := last.Message.Seq - 5

	var reads atomic.Int64
	sub, err := nc.Subscribe("$JS.API.CONSUMER.CREATE.CHAT.>", func(*nats.Msg) { reads.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	const clients = 20
	for i := range clients {
		c := wstest.Dial(t, base+fmt.Sprintf("/ws/chat/lobby/u%d?since=%d", i, since))
		h := c.Next(chat.FrameHistory)
		if got, want := texts(h), []string{"m25", "m26", "m27", "m28", "m29"}; h.Reset || !slices.Equal(got, want) {
			t.Errorf("resume %d: reset %v, %v; want %v", i, h.Reset, got, want)
		}
	}
	// The reads were asked for before the frames were sent; the flush
	// brings their copies to this subscription.
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := reads.Load(); n > 1 {
		t.Errorf("%d stream reads for %d resumes into one room, want at most one", n, clients)
	}
}

func TestResumeTooFarResets(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	base := startGateway(t, s, func(c *Config) { c.ResumeMax = 20 })
	nc := natstest.Connect(t, s)
	publishN(t, nc, "lobby", 0, 100)
	waitStored(t, nc, "lobby", 100)
	c := wstest.Dial(t, base+"/ws/chat/lobby/alice?since=1")
	h := c.Next(chat.FrameHistory)
	if !h.Reset || len(h.Messages) != 50 {
		t.Errorf("got reset=%v with %d messages, want a reset with the newest 50", h.Reset, len(h.Messages))
	}
	res, err := http.Get(base + "/ws/chat/lobby/alice?since=abc")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest {
		t.Errorf("since=abc: %d, want 400", res.StatusCode)
	}
}

// TestJoinDuringTraffic: clients joining while messages flow see every
// message exactly once, backlog and live together, in order.
func TestJoinDuringTraffic(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	base := startGateway(t, s, func(c *Config) { c.HistoryOnJoin, c.SendQueue = 1000, 2048 })
	nc := natstest.Connect(t, s)
	const total = 600
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range total {
			nc.Publish(chat.RoomSubject("busy"), []byte(fmt.Sprintf(`{"text":"m%d"}`, i)))
			if i%50 == 0 {
				time.Sleep(5 * time.Millisecond)
			}
		}
		nc.Flush()
	}()
	var clients []*wstest.Client
	for range 5 {
		clients = append(clients, wstest.Dial(t, base+"/ws/chat/busy/u"))
		time.Sleep(10 * time.Millisecond) // spread the joins over the traffic
	}
	<-done
	for i, c := range clients {
		seen := map[string]bool{}
		for _, tx := range texts(c.Next(chat.FrameHistory)) {
			seen[tx] = true
		}
		for len(seen) < total {
			f := c.Next(chat.FrameMessage)
			if seen[f.Text] {
				t.Fatalf("client %d: %s twice", i, f.Text)
			}
			seen[f.Text] = true
		}
	}
}

func waitStored(t *testing.T, nc *nats.Conn, room string, n uint64) {
	t.Helper()
	testkit.WaitFor(t, "messages stored", func() bool {
		msg, err := nc.Request("$JS.API.STREAM.INFO.CHAT", []byte(`{"subjects_filter":"`+chat.RoomSubject(room)+`"}`), testkit.Deadline)
		if err != nil {
			return false
		}
		var info struct {
			State struct {
				Subjects map[string]uint64 `json:"subjects"`
			} `json:"state"`
		}
		json.Unmarshal(msg.Data, &info)
		return info.State.Subjects[chat.RoomSubject(room)] >= n
	})
}

// TestJoinWithLaggingHistory runs a stand-in history service on NATS whose
// database holds only the first 60 of 120 messages (stored_through = the
// 60th seq): the join takes the newest from the stream, paging back crosses
// from the stream into the database, and nothing is missing or doubled.
func TestJoinWithLaggingHistory(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	base := startGateway(t, s, nil)
	nc := natstest.Connect(t, s)
	publishN(t, nc, "lobby", 0, 120)
	waitStored(t, nc, "lobby", 120)

	// The "database": the first 60 messages.
	stored := storedMessages(t, nc, "lobby", 60)
	queries := standInHistory(t, nc, "lobby", stored, stored[59].Seq)

	c := wstest.Dial(t, base+"/ws/chat/lobby/alice")
	h := c.Next(chat.FrameHistory)
	all := texts(h)
	if len(all) != 50 || all[0] != "m70" || !h.HasMore {
		t.Fatalf("join: %d messages from %q, has_more %v", len(all), all[0], h.HasMore)
	}
	oldest := h.Messages[0].Seq
	for {
		c.Send(chat.ClientFrame{Type: chat.FrameHistory, Before: oldest, Limit: 30})
		p := c.Next(chat.FrameHistory)
		all = append(texts(p), all...)
		if !p.HasMore {
			break
		}
		oldest = p.Messages[0].Seq
	}
	for i, text := range all {
		if text != fmt.Sprintf("m%d", i) {
			t.Fatalf("message %d is %q: %v", i, text, all)
		}
	}
	if len(all) != 120 {
		t.Fatalf("got %d messages, want 120", len(all))
	}
	if queries.Load() == 0 {
		t.Error("the history service was never asked")
	}
}

// TestJoinsServedFromRecent: once a room is active on a gateway, joins and
// short resumes are answered from the messages it holds, without asking
// history: a reconnect storm does not become a storm of history queries.
func TestJoinsServedFromRecent(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	base := startGateway(t, s, nil)
	nc := natstest.Connect(t, s)
	var queries atomic.Int32
	nc.QueueSubscribe(chat.HistorySubject("lobby"), chat.HistoryQueue, func(m *nats.Msg) {
		queries.Add(1)
		m.Respond([]byte(`{"error":"not this time"}`))
	})
	nc.Flush()
	first := wstest.Dial(t, base+"/ws/chat/lobby/first")
	first.Next(chat.FrameHistory)
	publishN(t, nc, "lobby", 0, 60)
	var seqs []uint64
	for range 60 {
		seqs = append(seqs, first.Next(chat.FrameMessage).Seq)
	}
	asked := queries.Load()

	join := wstest.Dial(t, base+"/ws/chat/lobby/second")
	if got := texts(join.Next(chat.FrameHistory)); len(got) != 50 || got[0] != "m10" || got[49] != "m59" {
		t.Errorf("join from recent: %v", got)
	}
	resume := wstest.Dial(t, base+fmt.Sprintf("/ws/chat/lobby/third?since=%d", seqs[54]))
	if got := texts(resume.Next(chat.FrameHistory)); len(got) != 5 || got[0] != "m55" {
		t.Errorf("resume from recent: %v", got)
	}
	if n := queries.Load(); n != asked {
		t.Errorf("history asked %d more times", n-asked)
	}
}
