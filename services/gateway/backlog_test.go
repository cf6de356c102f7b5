package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/natstest"
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

func texts(f map[string]any) []string {
	var out []string
	for _, m := range f["messages"].([]any) {
		out = append(out, m.(map[string]any)["text"].(string))
	}
	return out
}

func TestJoinGetsRecentThenLive(t *testing.T) {
	s := natstest.Start(t)
	base := startGateway(t, s, nil)
	nc := natstest.Connect(t, s)
	publishN(t, nc, "lobby", 0, 120)
	publishN(t, nc, "elsewhere", 0, 30)
	waitStored(t, nc, "lobby", 120)

	c := dial(t, base, "/ws/chat/lobby/alice")
	h := c.next("history")
	got := texts(h)
	if len(got) != 50 || got[0] != "m70" || got[49] != "m119" || h["has_more"] != true {
		t.Fatalf("join history: %d messages %v..., has_more %v", len(got), got[:min(3, len(got))], h["has_more"])
	}
	publishN(t, nc, "lobby", 120, 1)
	if f := c.next("message"); f["text"] != "m120" {
		t.Errorf("live: got %v", f)
	}

	// Page back to the first message.
	oldest := uint64(h["messages"].([]any)[0].(map[string]any)["seq"].(float64))
	all := got
	for {
		c.send(map[string]any{"type": "history", "before": oldest, "limit": 50})
		p := c.next("history")
		page := texts(p)
		all = append(page, all...)
		if p["has_more"] != true {
			break
		}
		oldest = uint64(p["messages"].([]any)[0].(map[string]any)["seq"].(float64))
	}
	if len(all) != 120 || all[0] != "m0" {
		t.Errorf("paged back to %d messages starting %q, want 120 from m0", len(all), all[0])
	}
}

func TestResumeSinceMissesNothing(t *testing.T) {
	s := natstest.Start(t)
	base := startGateway(t, s, nil)
	nc := natstest.Connect(t, s)
	c := dial(t, base, "/ws/chat/lobby/alice")
	c.next("history")
	publishN(t, nc, "lobby", 0, 10)
	var last uint64
	for range 10 {
		last = seqOf(c.next("message"))
	}
	c.conn.CloseNow()

	publishN(t, nc, "lobby", 10, 15)
	waitStored(t, nc, "lobby", 25)
	r := dial(t, base, fmt.Sprintf("/ws/chat/lobby/alice?since=%d", last))
	h := r.next("history")
	got := texts(h)
	if len(got) != 15 || got[0] != "m10" || got[14] != "m24" || h["reset"] == true {
		t.Fatalf("resume: %v (reset %v)", got, h["reset"])
	}
	publishN(t, nc, "lobby", 25, 1)
	if f := r.next("message"); f["text"] != "m25" {
		t.Errorf("live after resume: %v", f)
	}
}

func TestResumeTooFarResets(t *testing.T) {
	s := natstest.Start(t)
	base := startGateway(t, s, func(c *Config) { c.ResumeMax = 20 })
	nc := natstest.Connect(t, s)
	publishN(t, nc, "lobby", 0, 100)
	waitStored(t, nc, "lobby", 100)
	c := dial(t, base, "/ws/chat/lobby/alice?since=1")
	h := c.next("history")
	if h["reset"] != true || len(texts(h)) != 50 {
		t.Errorf("got reset=%v with %d messages, want a reset with the newest 50", h["reset"], len(texts(h)))
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
	var clients []*wsClient
	for range 5 {
		clients = append(clients, dial(t, base, "/ws/chat/busy/u"))
		time.Sleep(10 * time.Millisecond)
	}
	<-done
	for i, c := range clients {
		seen := map[string]bool{}
		h := c.next("history")
		for _, tx := range texts(h) {
			seen[tx] = true
		}
		for len(seen) < total {
			f := c.next("message")
			if seen[f["text"].(string)] {
				t.Fatalf("client %d: %v twice", i, f["text"])
			}
			seen[f["text"].(string)] = true
		}
	}
}

func waitStored(t *testing.T, nc *nats.Conn, room string, n uint64) {
	t.Helper()
	waitFor(t, 5*time.Second, "messages stored", func() bool {
		msg, err := nc.Request("$JS.API.STREAM.INFO.CHAT", []byte(`{"subjects_filter":"`+chat.RoomSubject(room)+`"}`), time.Second)
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
	s := natstest.Start(t)
	base := startGateway(t, s, nil)
	nc := natstest.Connect(t, s)
	publishN(t, nc, "lobby", 0, 120)
	waitStored(t, nc, "lobby", 120)

	// The "database": the first 60 messages.
	stored := storedMessages(t, nc, "lobby", 60)
	queries := standInHistory(t, nc, "lobby", stored, stored[59].Seq)

	c := dial(t, base, "/ws/chat/lobby/alice")
	h := c.next("history")
	all := texts(h)
	if len(all) != 50 || all[0] != "m70" || h["has_more"] != true {
		t.Fatalf("join: %d messages from %q, has_more %v", len(all), all[0], h["has_more"])
	}
	oldest := uint64(h["messages"].([]any)[0].(map[string]any)["seq"].(float64))
	for {
		c.send(map[string]any{"type": "history", "before": oldest, "limit": 30})
		p := c.next("history")
		all = append(texts(p), all...)
		if p["has_more"] != true {
			break
		}
		oldest = uint64(p["messages"].([]any)[0].(map[string]any)["seq"].(float64))
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
	s := natstest.Start(t)
	base := startGateway(t, s, nil)
	nc := natstest.Connect(t, s)
	var queries atomic.Int32
	nc.QueueSubscribe(chat.HistorySubject("lobby"), chat.HistoryQueue, func(m *nats.Msg) {
		queries.Add(1)
		m.Respond([]byte(`{"error":"not this time"}`))
	})
	nc.Flush()
	first := dial(t, base, "/ws/chat/lobby/first")
	first.next("history")
	publishN(t, nc, "lobby", 0, 60)
	var seqs []uint64
	for range 60 {
		seqs = append(seqs, seqOf(first.next("message")))
	}
	asked := queries.Load()

	join := dial(t, base, "/ws/chat/lobby/second")
	h := join.next("history")
	if got := texts(h); len(got) != 50 || got[0] != "m10" || got[49] != "m59" {
		t.Errorf("join from recent: %v", got)
	}
	resume := dial(t, base, fmt.Sprintf("/ws/chat/lobby/third?since=%d", seqs[54]))
	if got := texts(resume.next("history")); len(got) != 5 || got[0] != "m55" {
		t.Errorf("resume from recent: %v", got)
	}
	if n := queries.Load(); n != asked {
		t.Errorf("history asked %d more times", n-asked)
	}
}
