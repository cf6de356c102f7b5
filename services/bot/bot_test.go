package bot_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natschat/chat/services/bot"
	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/natsconn"
	"github.com/natschat/chat/shared/stream"
	"github.com/natschat/chat/shared/testkit"
	"github.com/natschat/chat/shared/testkit/natstest"
)

// startBot runs bot.Run with its own connection until the test ends, and
// checks that it stops cleanly.
func startBot(t *testing.T, s *server.Server) {
	t.Helper()
	startBotConfig(t, bot.Config{Config: natsconn.Config{URL: s.ClientURL()}, ShutdownTimeout: 10 * time.Second})
}

// startBotConfig is startBot with a configuration.
func startBotConfig(t *testing.T, cfg bot.Config) {
	t.Helper()
	log := testkit.Logger(t)
	testkit.Start(t, "bot", func(ctx context.Context) error { return bot.Run(ctx, cfg, log) })
}

// ask sends a request to bot.cmd and decodes the reply, retrying while no
// bot is subscribed yet.
func ask(t *testing.T, nc *nats.Conn, req chat.BotRequest) chat.BotReply {
	t.Helper()
	data, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return askRaw(t, nc, data)
}

func askRaw(t *testing.T, nc *nats.Conn, data []byte) chat.BotReply {
	t.Helper()
	var msg *nats.Msg
	testkit.WaitForState(t, testkit.Deadline, "a bot on "+chat.BotCmd, func() (bool, string) {
		var err error
		msg, err = nc.Request(chat.BotCmd, data, testkit.Deadline)
		if errors.Is(err, nats.ErrNoResponders) {
			return false, "no bot subscribed yet"
		}
		if err != nil {
			t.Fatalf("request %s: %v", data, err)
		}
		return true, ""
	})
	var reply chat.BotReply
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		t.Fatalf("reply %q: %v", msg.Data, err)
	}
	return reply
}

var nowText = regexp.MustCompile(`^alice asked for the time: it is (.+)$`)

func TestNow(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	js := natstest.JetStream(t, nc)
	startBot(t, s)

	for _, text := range []string{"/now", "/NOW", "  /Now  "} {
		t.Run(text, func(t *testing.T) {
			before := len(roomMessagesIfAny(t, js, "lobby"))
			reply := ask(t, nc, chat.BotRequest{ID: "r-" + text, Room: "lobby", User: "alice", Text: text})
			if !reply.OK || reply.Error != "" {
				t.Fatalf("got reply %+v, want ok", reply)
			}
			msgs := natstest.RoomMessages(t, js, "lobby")
			if got, want := len(msgs), before+1; got != want {
				t.Fatalf("got %d room messages, want %d", got, want)
			}
			m := msgs[len(msgs)-1]
			if m.User != "bot" || m.Kind != chat.KindBot {
				t.Errorf("got user %q kind %q, want bot bot", m.User, m.Kind)
			}
			match := nowText.FindStringSubmatch(m.Text)
			if match == nil {
				t.Fatalf("got text %q, want %q", m.Text, nowText)
			}
			// The time must carry its zone, and be the server's now.
			at, err := time.Parse(time.RFC1123, match[1])
			if err != nil {
				t.Fatalf("time %q is not RFC 1123 with a zone: %v", match[1], err)
			}
			if d := time.Since(at); d < -time.Minute || d > time.Minute {
				t.Errorf("got time %v, %v away from now", at, d)
			}
		})
	}
}

// roomMessagesIfAny is roomMessages before the bot may have created CHAT.
func roomMessagesIfAny(t *testing.T, js jetstream.JetStream, room string) []chat.Message {
	t.Helper()
	if _, err := js.Stream(context.Background(), stream.Chat); err != nil {
		return nil
	}
	return natstest.RoomMessages(t, js, room)
}

func TestSMSQueuesOneTaskPerRequestID(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	js := natstest.JetStream(t, nc)
	startBot(t, s)

	req := chat.BotRequest{ID: "c-42", Room: "lobby", User: "alice", Text: "/sms bob"}
	// The gateway retries a request it got no reply to, with the same id.
	for range 3 {
		reply := ask(t, nc, req)
		if want := (chat.BotReply{OK: true, Notice: "SMS to bob queued"}); !reflect.DeepEqual(reply, want) {
			t.Fatalf("got %+v, want %+v", reply, want)
		}
	}
	if got := natstest.StreamState(t, js, stream.SMS).Msgs; got != 1 {
		t.Fatalf("got %d tasks after a request sent 3 times, want 1", got)
	}

	ctx, cancel := context.WithTimeout(context.Background(), testkit.Deadline)
	defer cancel()
	sms, err := js.Stream(ctx, stream.SMS)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := sms.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	var task chat.SMSTask
	if err := json.Unmarshal(raw.Data, &task); err != nil {
		t.Fatal(err)
	}
	if task.ID == "" || task.Room != "lobby" || task.From != "alice" || task.To != "bob" || time.Since(task.RequestedAt) > time.Minute {
		t.Errorf("got task %+v", task)
	}
	if got := raw.Header.Get(jetstream.MsgIDHeader); got != task.ID {
		t.Errorf("got Nats-Msg-Id %q, want the task id %q", got, task.ID)
	}
	// The sender's confirmation is private: nothing in the room yet.
	if msgs := natstest.RoomMessages(t, js, "lobby"); len(msgs) != 0 {
		t.Errorf("got room messages %+v, want none", msgs)
	}

	// Another request id is another task, and so is the same id from
	// another user.
	ask(t, nc, chat.BotRequest{ID: "c-43", Room: "lobby", User: "alice", Text: "/sms bob"})
	ask(t, nc, chat.BotRequest{ID: "c-42", Room: "lobby", User: "carol", Text: "/sms bob"})
	if got := natstest.StreamState(t, js, stream.SMS).Msgs; got != 3 {
		t.Errorf("got %d tasks, want 3", got)
	}
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	js := natstest.JetStream(t, nc)
	startBot(t, s)

	for _, tc := range []struct {
		name, payload string
		code          chat.Code
		errHas        []string
	}{
		{"unknown command", `{"id":"1","room":"lobby","user":"alice","text":"/nope"}`,
			"unknown_command", []string{"unknown command /nope; type /help to see the commands"}},
		{"sms without a name", `{"id":"2","room":"lobby","user":"alice","text":"/sms"}`,
			"invalid", []string{"missing <user>", "/sms <user>", "/help"}},
		{"sms to an invalid name", `{"id":"3","room":"lobby","user":"alice","text":"/sms a.b"}`,
			"invalid", []string{`"a.b"`}},
		{"sms with two names", `{"id":"4","room":"lobby","user":"alice","text":"/sms a b"}`,
			"invalid", []string{"takes 1 argument, got 2", "/sms <user>", "/help"}},
		{"now with an argument", `{"id":"5","room":"lobby","user":"alice","text":"/now please"}`,
			"invalid", []string{"takes no arguments", "/help"}},
		{"not a command", `{"id":"6","room":"lobby","user":"alice","text":"hello"}`,
			"invalid", []string{"start with /"}},
		{"empty text", `{"id":"7","room":"lobby","user":"alice","text":""}`,
			"invalid", []string{"start with /"}},
		{"bare slash", `{"id":"8","room":"lobby","user":"alice","text":"/"}`,
			"invalid", []string{"start with /"}},
		{"invalid room", `{"id":"9","room":"a.b","user":"alice","text":"/now"}`,
			"invalid", []string{"room name"}},
		{"no user", `{"id":"10","room":"lobby","text":"/now"}`,
			"invalid", []string{"user name is empty"}},
		{"not JSON", `/now`,
			"invalid", []string{"not valid JSON"}},
		{"wrong types", `{"id":1,"room":"lobby","user":"alice","text":"/now"}`,
			"invalid", []string{"not valid JSON"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reply := askRaw(t, nc, []byte(tc.payload))
			if reply.OK || reply.Code != tc.code {
				t.Fatalf("got %+v, want ok false, code %q", reply, tc.code)
			}
			for _, want := range tc.errHas {
				if !strings.Contains(reply.Error, want) {
					t.Errorf("got error %q, want it to contain %q", reply.Error, want)
				}
			}
		})
	}
	// Replies come after any publish, so whatever was published is stored.
	if got := natstest.StreamState(t, js, stream.Chat).Msgs; got != 0 {
		t.Errorf("got %d room messages after refused commands, want 0", got)
	}
	if got := natstest.StreamState(t, js, stream.SMS).Msgs; got != 0 {
		t.Errorf("got %d SMS tasks after refused commands, want 0", got)
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	js := natstest.JetStream(t, nc)
	startBot(t, s)

	reply := ask(t, nc, chat.BotRequest{Room: "lobby", User: "alice", Text: "/HELP"})
	if !reply.OK {
		t.Fatalf("got %+v, want ok", reply)
	}
	lines := strings.Split(reply.Notice, "\n")
	for _, prefix := range []string{"/help - ", "/now - ", "/sms <user> - "} {
		found := false
		for _, l := range lines {
			found = found || strings.HasPrefix(l, prefix)
		}
		if !found {
			t.Errorf("help %q has no line starting with %q", reply.Notice, prefix)
		}
	}
	if got := natstest.StreamState(t, js, stream.Chat).Msgs; got != 0 {
		t.Errorf("got %d room messages after /help, want 0 (it is private)", got)
	}
	// Readable in the nats CLI: no \u003cuser\u003e.
	raw, err := nc.Request(chat.BotCmd, []byte(`{"room":"lobby","user":"alice","text":"/help"}`), testkit.Deadline)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw.Data), "/sms <user>") {
		t.Errorf("got raw reply %s, want it to contain /sms <user>", raw.Data)
	}
	var help chat.BotReply
	if err := json.Unmarshal(raw.Data, &help); err != nil {
		t.Fatal(err)
	}
	var usages []string
	for _, c := range help.Commands {
		usages = append(usages, c.Usage)
	}
	if got := strings.Join(usages, ","); got != "/help,/now,/sms <user>" {
		t.Errorf("machine-readable commands %q, want /help,/now,/sms <user>", got)
	}
}

// TestThreeBots checks that bots in the queue group answer each request
// once: one reply and one room message per request.
func TestThreeBots(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	js := natstest.JetStream(t, nc)
	for range 3 {
		startBot(t, s)
	}
	// Wait for the three to be subscribed, so each gets a share.
	testkit.WaitFor(t, "three bots subscribed", func() bool {
		return countBots(t, nc) == 3
	})

	const n = 90
	inbox := nats.NewInbox()
	var mu sync.Mutex
	replies := map[string]int{}
	sub, err := nc.Subscribe(inbox+".*", func(m *nats.Msg) {
		var r chat.BotReply
		if err := json.Unmarshal(m.Data, &r); err != nil || !r.OK {
			t.Errorf("reply %q to %s: want ok", m.Data, m.Subject)
		}
		mu.Lock()
		replies[m.Subject]++
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	for i := range n {
		data, _ := json.Marshal(chat.BotRequest{ID: fmt.Sprint(i), Room: "lobby", User: fmt.Sprintf("u%d", i), Text: "/now"})
		if err := nc.PublishRequest(chat.BotCmd, fmt.Sprintf("%s.%d", inbox, i), data); err != nil {
			t.Fatal(err)
		}
	}
	testkit.WaitFor(t, "a reply to every request", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(replies) == n
	})
	msgs := natstest.RoomMessages(t, js, "lobby")
	perUser := map[string]int{}
	for _, m := range msgs {
		user, _, _ := strings.Cut(m.Text, " ")
		perUser[user]++
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range n {
		if got := replies[fmt.Sprintf("%s.%d", inbox, i)]; got != 1 {
			t.Errorf("request %d: got %d replies, want 1", i, got)
		}
		if got := perUser[fmt.Sprintf("u%d", i)]; got != 1 {
			t.Errorf("request %d: got %d room messages, want 1", i, got)
		}
	}
	if len(msgs) != n {
		t.Errorf("got %d room messages, want %d", len(msgs), n)
	}
}

// countBots asks the micro discovery subject how many bot instances answer.
func countBots(t *testing.T, nc *nats.Conn) int {
	t.Helper()
	inbox := nats.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest("$SRV.PING.bot", inbox, nil); err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		if _, err := sub.NextMsg(200 * time.Millisecond); err != nil {
			return n
		}
		n++
	}
}

// TestUnavailable checks that a JetStream failure is an "unavailable" reply,
// not a silent ok: here the CHAT stream is gone, so /now cannot be stored.
func TestUnavailable(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	js := natstest.JetStream(t, nc)
	startBot(t, s)
	if reply := ask(t, nc, chat.BotRequest{Room: "lobby", User: "alice", Text: "/help"}); !reply.OK {
		t.Fatalf("got %+v, want ok", reply)
	}
	if err := js.DeleteStream(context.Background(), stream.Chat); err != nil {
		t.Fatal(err)
	}
	reply := ask(t, nc, chat.BotRequest{Room: "lobby", User: "alice", Text: "/now"})
	if reply.OK || reply.Code != "unavailable" || !strings.Contains(reply.Error, "try again") {
		t.Errorf("got %+v, want code unavailable", reply)
	}
}
