package bot_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/stream"
	"github.com/natschat/chat/shared/testkit"
	"github.com/natschat/chat/shared/testkit/natstest"
)

// TestBadInputCorpus sends garbage on every subject the bot reads (bot.cmd
// and the micro discovery subjects): not JSON, wrong types, huge, NUL,
// control and bidi characters, forged headers. Each request gets an error
// reply with a code, nothing is published, the bot keeps running, and a
// valid command afterwards works.
func TestBadInputCorpus(t *testing.T) {
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	js := natstest.JetStream(t, nc)
	startBot(t, s)
	// Make sure the bot serves before the garbage, so no reply is a miss.
	if r := ask(t, nc, chat.BotRequest{Room: "lobby", User: "alice", Text: "/help"}); !r.OK {
		t.Fatalf("/help: %+v", r)
	}
	cmd := func(text string) string {
		b, _ := json.Marshal(chat.BotRequest{ID: "x", Room: "lobby", User: "alice", Text: text})
		return string(b)
	}
	corpus := []struct {
		name, payload string
		code          chat.Code
	}{
		{"not JSON", `now please`, chat.CodeInvalid},
		{"truncated", `{"room":"lobby"`, chat.CodeInvalid},
		{"empty", ``, chat.CodeInvalid},
		{"null", `null`, chat.CodeInvalid},
		{"array", `["/now"]`, chat.CodeInvalid},
		{"binary", "\x00\xff\xfe\x01", chat.CodeInvalid},
		{"number id", `{"id":1,"room":"lobby","user":"alice","text":"/now"}`, chat.CodeInvalid},
		{"object text", `{"room":"lobby","user":"alice","text":{"cmd":"/now"}}`, chat.CodeInvalid},
		{"null text", `{"room":"lobby","user":"alice","text":null}`, chat.CodeInvalid},
		{"deep nesting", strings.Repeat(`{"a":`, 20000), chat.CodeInvalid},
		{"huge", cmd("/sms " + strings.Repeat("b", 900_000)), chat.CodeInvalid},
		{"huge command name", cmd("/" + strings.Repeat("n", 3000)), chat.CodeUnknownCommand},
		{"NUL in the command", cmd("/now\x00"), chat.CodeInvalid},
		{"NUL in the argument", cmd("/sms bob\x00"), chat.CodeInvalid},
		{"ANSI escape", cmd("/sms \x1b[31mbob"), chat.CodeInvalid},
		{"bidi override in the name", cmd("/sms \u202ebob"), chat.CodeInvalid},
		{"zero-width in the name", cmd("/sms b\u200bob"), chat.CodeInvalid},
		{"room wildcard", `{"room":"lobby.>","user":"alice","text":"/now"}`, chat.CodeInvalid},
		{"user wildcard", `{"room":"lobby","user":"*","text":"/now"}`, chat.CodeInvalid},
		{"recipient wildcard", cmd("/sms >"), chat.CodeInvalid},
		{"bidi user", `{"room":"lobby","user":"\u202eevil","text":"/now"}`, chat.CodeInvalid},
		{"reserved text only spaces", cmd("/ "), chat.CodeInvalid},
	}
	for _, tc := range corpus {
		t.Run(tc.name, func(t *testing.T) {
			reply := askRaw(t, nc, []byte(tc.payload))
			if reply.OK || reply.Code != tc.code || reply.Error == "" || len(reply.Error) > 300 {
				t.Errorf("got %+.200v, want code %s with a short message", reply, tc.code)
			}
		})
	}

	t.Run("forged headers", func(t *testing.T) {
		for _, h := range []map[string]string{
			{"Status": "503"},
			{"Status": "404", "Description": "No Messages"},
			{"Nats-Msg-Id": "forged", "Nats-Expected-Stream": "SMS"},
		} {
			m := nats.NewMsg(chat.BotCmd)
			for k, v := range h {
				m.Header.Set(k, v)
			}
			reply, err := nc.RequestMsg(m, 5*time.Second)
			if err != nil {
				t.Errorf("headers %v, no body: %v", h, err)
				continue
			}
			var r chat.BotReply
			if err := json.Unmarshal(reply.Data, &r); err != nil || r.OK || r.Code != chat.CodeInvalid {
				t.Errorf("headers %v: got %s, want an invalid reply", h, reply.Data)
			}
		}
	})

	t.Run("publishes without a reply subject", func(t *testing.T) {
		for _, tc := range corpus {
			if err := nc.Publish(chat.BotCmd, []byte(tc.payload)); err != nil {
				t.Fatal(err)
			}
		}
		if err := nc.Publish(chat.BotCmd, []byte(cmd("/now"))); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("micro discovery subjects", func(t *testing.T) {
		for _, subject := range []string{"$SRV.PING", "$SRV.INFO.bot", "$SRV.STATS.bot"} {
			for _, payload := range []string{"garbage", `{"x":`, strings.Repeat("z", 100_000)} {
				if _, err := nc.Request(subject, []byte(payload), 5*time.Second); err != nil {
					t.Errorf("%s %.20q: %v", subject, payload, err)
				}
			}
		}
	})

	// Still serving; only the one /now published without a reply subject
	// reached the room (commands need no reply to run), nothing else.
	if r := ask(t, nc, chat.BotRequest{ID: "after", Room: "lobby", User: "alice", Text: "/now"}); !r.OK {
		t.Fatalf("/now after the garbage: %+v", r)
	}
	testkit.WaitFor(t, "the two /now answers", func() bool { return natstest.StreamState(t, js, stream.Chat).Msgs >= 2 })
	if got := natstest.StreamState(t, js, stream.Chat).Msgs; got != 2 {
		t.Errorf("got %d room messages, want the 2 /now answers", got)
	}
	if got := natstest.StreamState(t, js, stream.SMS).Msgs; got != 0 {
		t.Errorf("got %d SMS tasks from garbage, want 0", got)
	}
}
