package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/natstest"
)

func TestCommandWithoutBot(t *testing.T) {
	s := natstest.Start(t)
	base := startGateway(t, s, func(c *Config) { c.BotTimeout = 5 * time.Second })
	nc := natstest.Connect(t, s)
	spy, _ := nc.SubscribeSync(chat.RoomSubject("lobby"))
	nc.Flush()
	c := dial(t, base, "/ws/chat/lobby/alice")
	c.next("history")
	start := time.Now()
	c.say("/now", "c1")
	f := c.next("error")
	if f["code"] != "bot_unavailable" || f["client_id"] != "c1" {
		t.Errorf("got %v", f)
	}
	// No-responders answers at once; a timeout would take the full 5s.
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("bot_unavailable took %v", d)
	}
	if m, err := spy.NextMsg(200 * time.Millisecond); err == nil {
		t.Errorf("command line was published to the room: %s", m.Data)
	}
}

// TestCommandRepliesArePrivate runs a stand-in bot on bot.cmd: errors and
// notices go to the sender only, and the command line is never broadcast.
func TestCommandRepliesArePrivate(t *testing.T) {
	s := natstest.Start(t)
	base := startGateway(t, s, nil)
	nc := natstest.Connect(t, s)
	var got []chat.BotRequest
	reqs := make(chan chat.BotRequest, 10)
	_, err := nc.QueueSubscribe(chat.BotCmd, chat.BotQueue, func(m *nats.Msg) {
		var r chat.BotRequest
		json.Unmarshal(m.Data, &r)
		reqs <- r
		reply := chat.BotReply{OK: false, Code: "unknown_command", Error: "unknown command /nope; type /help"}
		if r.Text == "/help" {
			reply = chat.BotReply{OK: true, Notice: "/now  the time", Commands: []chat.Command{{Name: "now", Usage: "/now", Help: "the time"}}}
		}
		b, _ := json.Marshal(reply)
		m.Respond(b)
	})
	if err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	alice := dial(t, base, "/ws/chat/lobby/alice")
	bob := dial(t, base, "/ws/chat/lobby/bob")
	alice.next("history")
	bob.next("history")

	alice.say("/nope", "c1")
	if f := alice.next("error"); f["code"] != "unknown_command" || f["client_id"] != "c1" {
		t.Errorf("got %v", f)
	}
	alice.say("/help", "c2")
	if f := alice.next("notice"); f["text"] != "/now  the time" || f["client_id"] != "c2" || len(f["commands"].([]any)) != 1 {
		t.Errorf("got %v", f)
	}
	for range 2 {
		got = append(got, <-reqs)
	}
	if got[0].Room != "lobby" || got[0].User != "alice" || got[0].Text != "/nope" || got[0].ID == "" {
		t.Errorf("bot request %+v", got[0])
	}
	bob.none("error", 200*time.Millisecond)
	bob.none("notice", 10*time.Millisecond)
	bob.none("message", 10*time.Millisecond)
}

func TestAPIWithoutHistory(t *testing.T) {
	s := natstest.Start(t)
	base := startGateway(t, s, nil)
	tests := []struct {
		path string
		code int
	}{
		{"/api/rooms", http.StatusServiceUnavailable},
		{"/api/rooms/lobby/messages", http.StatusServiceUnavailable},
		{"/api/rooms/a.b/messages", http.StatusBadRequest},
		{"/api/rooms/lobby/messages?before=x", http.StatusBadRequest},
		{"/api/rooms/lobby/messages?limit=0", http.StatusBadRequest},
		{"/api/rooms/lobby/messages?limit=100000", http.StatusBadRequest},
		{"/api/rooms/lobby/messages?after=5&before=5", http.StatusBadRequest},
		{"/api/rooms?limit=-1", http.StatusBadRequest},
	}
	for _, tt := range tests {
		res, err := http.Get(base + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		var e struct{ Error string }
		if res.StatusCode != tt.code || json.Unmarshal(body, &e) != nil || e.Error == "" {
			t.Errorf("GET %s: %d %s, want %d with an error", tt.path, res.StatusCode, body, tt.code)
		}
	}
}

// TestAPIThroughHistory answers history.room.lobby with a stand-in
// responder: the gateway passes the request and the reply through.
func TestAPIThroughHistory(t *testing.T) {
	s := natstest.Start(t)
	base := startGateway(t, s, nil)
	nc := natstest.Connect(t, s)
	nc.QueueSubscribe(chat.HistorySubject("lobby"), chat.HistoryQueue, func(m *nats.Msg) {
		var req chat.HistoryRequest
		json.Unmarshal(m.Data, &req)
		b, _ := json.Marshal(chat.HistoryResponse{
			Messages:      []chat.Message{{Room: "lobby", Seq: req.Before - 1, User: "a", Text: "x", Kind: "user"}},
			StoredThrough: 99,
		})
		m.Respond(b)
	})
	nc.Flush()
	res, err := http.Get(base + "/api/rooms/lobby/messages?before=10&limit=5")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var got chat.HistoryResponse
	if err := json.NewDecoder(res.Body).Decode(&got); err != nil || res.StatusCode != 200 {
		t.Fatalf("%d %v", res.StatusCode, err)
	}
	if len(got.Messages) != 1 || got.Messages[0].Seq != 9 {
		t.Errorf("got %+v", got)
	}
}
