package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/testkit"
	"github.com/natschat/chat/shared/testkit/natstest"
	"github.com/natschat/chat/shared/testkit/wstest"
)

func TestCommandWithoutBot(t *testing.T) {
	t.Parallel()
	// No-responders answers at once. The bot timeout is far beyond the
	// test's deadline, so an answer that waited for it never comes.
	s := natstest.Start(t)
	base := startGateway(t, s, func(c *Config) { c.BotTimeout = time.Hour })
	nc := natstest.Connect(t, s)
	spy, err := nc.SubscribeSync(chat.RoomSubject("lobby"))
	if err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	c := wstest.Dial(t, base+"/ws/chat/lobby/alice")
	c.Next(chat.FrameHistory)
	c.Say("/now", "c1")
	f := c.Next(chat.FrameError)
	if f.Code != chat.CodeBotUnavailable || f.ClientID != "c1" || !strings.Contains(f.Error, "no bot is running") {
		t.Errorf("got %+v, want bot_unavailable for c1 because no bot is running", f)
	}
	if got := metric(t, base, `chat_gateway_commands_total{outcome="no_bot"}`); got != 1 {
		t.Errorf("no_bot commands = %v, want 1", got)
	}
	// A message said after the error is the first one in the room: the
	// command line was not published.
	c.Say("after the command", "c2")
	if m, err := spy.NextMsg(testkit.Deadline); err != nil || !strings.Contains(string(m.Data), "after the command") {
		t.Errorf("first message in the room: %v %v, want the one after the command", m, err)
	}
}

// TestCommandRepliesArePrivate runs a stand-in bot on bot.cmd: errors and
// notices go to the sender only, and the command line is never broadcast.
func TestCommandRepliesArePrivate(t *testing.T) {
	t.Parallel()
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
	alice := wstest.Dial(t, base+"/ws/chat/lobby/alice")
	bob := wstest.Dial(t, base+"/ws/chat/lobby/bob")
	alice.Next(chat.FrameHistory)
	bob.Next(chat.FrameHistory)

	alice.Say("/nope", "c1")
	if f := alice.Next(chat.FrameError); f.Code != chat.CodeUnknownCommand || f.ClientID != "c1" {
		t.Errorf("got %+v", f)
	}
	alice.Say("/help", "c2")
	if f := alice.Next(chat.FrameNotice); f.Text != "/now  the time" || f.ClientID != "c2" || len(f.Commands) != 1 {
		t.Errorf("got %+v", f)
	}
	for range 2 {
		got = append(got, <-reqs)
	}
	if got[0].Room != "lobby" || got[0].User != "alice" || got[0].Text != "/nope" || got[0].ID == "" {
		t.Errorf("bot request %+v", got[0])
	}
	// Alice's next message reaches bob after anything her commands could
	// have sent him.
	alice.Say("barrier", "c3")
	for _, f := range bob.Until("alice's barrier message", func(f chat.ServerFrame) bool { return f.Text == "barrier" }) {
		if f.Type != chat.FramePresence {
			t.Errorf("bob got %+v before alice's next message", f)
		}
	}
}

func TestAPIWithoutHistory(t *testing.T) {
	t.Parallel()
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
	t.Parallel()
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
