package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/testkit"
	"github.com/natschat/chat/shared/testkit/wstest"
)

// stack is a running all-in-one on free ports with its data in a temp dir.
type stack struct {
	http string // http://127.0.0.1:port
	nats string // nats://127.0.0.1:port
}

func startStack(t *testing.T) stack {
	t.Helper()
	natsPort := testkit.FreePort(t)
	httpAddr := testkit.FreeAddr(t)
	t.Setenv("CHAT_NATS_PORT", strconv.Itoa(natsPort))
	t.Setenv("CHAT_DATA_DIR", t.TempDir())
	t.Setenv("GATEWAY_ADDR", httpAddr)
	t.Setenv("LOG_FORMAT", "json")
	t.Setenv("LOG_LEVEL", "warn")
	var logs testkit.Buffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("allinone log:\n%s", logs.String())
		}
	})
	testkit.Start(t, "allinone", func(ctx context.Context) error { return run(ctx, nil, &logs, &logs) })
	s := stack{http: "http://" + httpAddr, nats: "nats://127.0.0.1:" + strconv.Itoa(natsPort)}
	testkit.WaitReady(t, s.http)
	nc, err := nats.Connect(s.nats)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	waitBot(t, nc)
	return s
}

// waitBot waits until a bot answers on bot.cmd.
func waitBot(t *testing.T, nc *nats.Conn) {
	t.Helper()
	testkit.WaitFor(t, "bot answering", func() bool {
		_, err := nc.Request(chat.BotCmd, []byte(`{"room":"x","user":"probe","text":"/help"}`), time.Second)
		return err == nil
	})
}

// isMessage matches a message frame by its text.
func isMessage(text string) func(chat.ServerFrame) bool {
	return func(f chat.ServerFrame) bool { return f.Type == chat.FrameMessage && f.Text == text }
}

func TestServesTheChat(t *testing.T) {
	s := startStack(t)
	for _, path := range []string{"/", "/chat/lobby/alice"} {
		res, err := http.Get(s.http + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d", path, res.StatusCode)
		}
	}
	ws := wstest.Dial(t, s.http+"/ws/chat/lobby/alice")
	ws.Next(chat.FrameHistory)
	ws.Say("hello from the test", "c1")
	if f := ws.NextMatch("the message back", isMessage("hello from the test")); f.ClientID != "c1" {
		t.Errorf("got %+v, want client_id c1", f)
	}
}

func TestBotAndWorker(t *testing.T) {
	s := startStack(t)
	alice := wstest.Dial(t, s.http+"/ws/chat/lobby/alice")
	bob := wstest.Dial(t, s.http+"/ws/chat/lobby/bob")
	alice.Next(chat.FrameHistory)
	bob.Next(chat.FrameHistory)
	alice.Say("/sms bob", "c1")
	alice.NextMatch("the private notice", func(f chat.ServerFrame) bool {
		return f.Type == chat.FrameNotice && f.Text == "SMS to bob queued"
	})
	bob.NextMatch("the SMS confirmation", func(f chat.ServerFrame) bool {
		return f.Type == chat.FrameMessage && f.Kind == chat.KindBot && strings.Contains(f.Text, "An SMS has been sent to bob")
	})
	alice.Say("/now", "c2")
	bob.NextMatch("the time", func(f chat.ServerFrame) bool {
		return f.Type == chat.FrameMessage && strings.Contains(f.Text, "alice asked for the time")
	})
}

// TestHistoryStored: a message is stored in SQLite and served by the API.
func TestHistoryStored(t *testing.T) {
	s := startStack(t)
	ws := wstest.Dial(t, s.http+"/ws/chat/lobby/alice")
	ws.Next(chat.FrameHistory)
	ws.Say("keep me", "k1")
	ws.NextMatch("the message back", isMessage("keep me"))
	testkit.WaitFor(t, "message in the API", func() bool {
		_, body, err := testkit.Get(s.http + "/api/rooms/lobby/messages?limit=10")
		var got chat.HistoryResponse
		if err != nil || json.Unmarshal([]byte(body), &got) != nil {
			return false
		}
		return len(got.Messages) == 1 && got.Messages[0].Text == "keep me"
	})
	res, err := http.Get(s.http + "/api/rooms")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var rooms struct {
		Rooms []struct {
			Name     string `json:"name"`
			Messages int    `json:"messages"`
		} `json:"rooms"`
	}
	if err := json.NewDecoder(res.Body).Decode(&rooms); err != nil || len(rooms.Rooms) != 1 || rooms.Rooms[0].Name != "lobby" {
		t.Errorf("rooms: %+v %v", rooms, err)
	}
}

// TestREADMENatsCommands runs the README's nats CLI examples against the
// all-in-one with the real CLI.
func TestREADMENatsCommands(t *testing.T) {
	natsCLI := requireNatsCLI(t)
	// No periodic presence announcement on chat.> while nats sub counts
	// its two messages.
	t.Setenv("GATEWAY_PRESENCE_INTERVAL", "1h")
	s := startStack(t)
	ws := wstest.Dial(t, s.http+"/ws/chat/lobby/alice")
	ws.Next(chat.FrameHistory)

	sub := testkit.StartCmd(t, "nats sub", exec.Command(natsCLI, "-s", s.nats, "sub", "chat.>", "--count", "2"))
	testkit.WaitFor(t, "nats sub to subscribe", func() bool { return strings.Contains(sub.Output(), "Subscribing on") })

	out, err := exec.Command(natsCLI, "-s", s.nats, "pub", "chat.room.lobby", `{"user":"ops","text":"hello"}`).CombinedOutput()
	if err != nil {
		t.Fatalf("nats pub: %v\n%s", err, out)
	}
	if f := ws.NextMatch("the published message", isMessage("hello")); f.User != "ops" || f.Seq == 0 {
		t.Errorf("got %+v, want ops's message with a seq", f)
	}

	// It exits after two messages: the one published and its republish.
	if err := sub.Wait(t); err != nil {
		t.Errorf("nats sub: %v", err)
	}
	for _, want := range []string{"chat.room.lobby", "chat.feed.lobby", `"text":"hello"`} {
		if !strings.Contains(sub.Output(), want) {
			t.Errorf("nats sub 'chat.>' output lacks %q:\n%s", want, sub.Output())
		}
	}

	out, err = exec.Command(natsCLI, "-s", s.nats, "stream", "info", "CHAT").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "chat.room.*") {
		t.Errorf("nats stream info CHAT: %v\n%s", err, out)
	}
}

func requireNatsCLI(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("nats")
	if err != nil {
		testkit.Missing(t, "the nats CLI", "go install github.com/nats-io/natscli/nats@v0.5.1")
	}
	return path
}
