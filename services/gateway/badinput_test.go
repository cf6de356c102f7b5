package gateway

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/testkit/natstest"
	"github.com/natschat/chat/shared/testkit/wstest"
)

// TestBadInputCorpus throws bad input at every surface the gateway reads,
// names, frames, texts and NATS payloads, and checks that each gets its
// clear error, nothing crashes, the socket stays usable, and no browser
// ever sees a frame that breaks the contract.
func TestBadInputCorpus(t *testing.T) {
	s := natstest.Start(t)
	base := startGateway(t, s, func(c *Config) { c.Rate, c.Burst = 1000, 1000 })

	// Names, refused with 400 and the reason before anything else.
	for _, path := range []string{
		"/ws/chat/a.b/alice", "/ws/chat/lobby/a*", "/ws/chat/lobby/%3E", "/ws/chat//alice",
		"/ws/chat/lobby/" + strings.Repeat("a", 65), "/ws/chat/lobby/a%20b", "/ws/chat/lobby/%E2%80%AEevil",
		"/ws/chat/lobby", "/ws/chat/lobby/alice/extra", "/chat/a.b/alice",
	} {
		res, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest || len(strings.TrimSpace(string(body))) == 0 {
			t.Errorf("%s: %s %q, want 400 with a reason", path, res.Status, body)
		}
	}

	alice := wstest.Dial(t, base+"/ws/chat/lobby/alice")
	alice.Next(chat.FrameHistory)
	watcher := wstest.Dial(t, base+"/ws/chat/lobby/watcher")
	watcher.Next(chat.FrameHistory)

	// Frames, each answered with an error frame of the right code.
	frames := []struct {
		frame string
		code  chat.Code
	}{
		{`not json`, chat.CodeInvalid},
		{`[1,2]`, chat.CodeInvalid},
		{`{"type":"dance"}`, chat.CodeInvalid},
		{`{"type":"message"}`, chat.CodeInvalid},
		{`{"type":"message","text":42}`, chat.CodeInvalid},
		{`{"type":"message","text":"\u0000"}`, chat.CodeInvalid},
		{`{"type":"message","text":"a\u0000b"}`, chat.CodeInvalid},
		{`{"type":"message","text":"\u200b\u200c\ufeff"}`, chat.CodeInvalid},
		{`{"type":"message","text":"\u202e\u2066"}`, chat.CodeInvalid},
		{`{"type":"message","text":"\u001b[31mred"}`, chat.CodeInvalid},
		{`{"type":"message","text":"   \n\t  "}`, chat.CodeInvalid},
		{`{"type":"message","text":"` + strings.Repeat("x", chat.MaxTextLen+1) + `"}`, chat.CodeTooLong},
		{`{"type":"message","text":"hi","client_id":"` + strings.Repeat("c", 200) + `"}`, chat.CodeInvalid},
		{`{"type":"history","limit":-5}`, chat.CodeInvalid},
		{`{"type":"history","limit":100000}`, chat.CodeInvalid},
	}
	for _, f := range frames {
		if err := alice.Conn.Write(context.Background(), websocket.MessageText, []byte(f.frame)); err != nil {
			t.Fatal(err)
		}
		got := alice.Next(chat.FrameError)
		if got.Code != f.code || got.Error == "" {
			t.Errorf("frame %.60s: got %v, want a %s error with a message", f.frame, got, f.code)
		}
	}
	// A binary frame.
	if err := alice.Conn.Write(context.Background(), websocket.MessageBinary, []byte{0, 1, 2}); err != nil {
		t.Fatal(err)
	}
	if got := alice.Next(chat.FrameError); got.Code != chat.CodeInvalid {
		t.Errorf("binary frame: got %v", got)
	}

	// NATS payloads on every subject the gateway reads.
	nc := natstest.Connect(t, s)
	for _, p := range [][]byte{
		[]byte("not json"), []byte(`{"user":"a.b","text":"x"}`), []byte(`{"text":"\u0000"}`),
		[]byte(`{"text":"x","kind":"admin"}`), []byte(`{"text":"\u202e"}`), []byte(`{"text":` + strings.Repeat("[", 1000) + `}`),
	} {
		if err := nc.Publish(chat.RoomSubject("lobby"), p); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range [][]byte{[]byte("no headers"), []byte(`{"text":"no sequence"}`)} {
		if err := nc.Publish(chat.FeedSubject("lobby"), p); err != nil {
			t.Fatal(err)
		}
	}
	m := nats.NewMsg(chat.FeedSubject("lobby"))
	m.Header.Set("Nats-Sequence", "banana")
	m.Data = []byte(`{"text":"bad seq"}`)
	nc.PublishMsg(m)
	for _, p := range []string{
		`not json`, `{"event":"join","gateway":"gw","user":"<img src=x onerror=alert(1)>"}`,
		`{"event":"here","gateway":"g w","users":["alice"]}`, `{"event":"here","gateway":"gw2","users":["ok","a.b"]}`,
	} {
		nc.Publish(chat.PresenceSubject("lobby"), []byte(p))
	}
	nc.Flush()

	// The room still works, for the sender and the watcher, and the
	// barrier message is the first message either of them receives.
	alice.Say("still fine", "barrier")
	for _, c := range []*wstest.Client{alice, watcher} {
		if got := c.Next(chat.FrameMessage); got.ClientID != "barrier" {
			t.Errorf("first message after the garbage: %v, want the barrier", got)
		}
	}
	// Presence carried none of the bad names: a good event after them is
	// the barrier, and no presence frame up to it lists a bad name.
	nc.Publish(chat.PresenceSubject("lobby"), []byte(`{"event":"here","gateway":"gw3","users":["carol"]}`))
	for _, c := range []*wstest.Client{alice, watcher} {
		for carol := false; !carol; {
			f := c.Next(chat.FramePresence)
			users, _ := c.Online()
			carol = slices.Contains(users, "carol")
			for _, u := range slices.Concat(f.Users, f.Joined, f.Left, f.Guests, f.SignedIn) {
				if chat.ValidateName("user", u) != nil {
					t.Errorf("presence listed %q", u)
				}
			}
		}
	}
	if got := metric(t, base, "chat_gateway_bad_presence_total"); got != 4 {
		t.Errorf("bad presence events counted: %v, want 4", got)
	}

	// A frame over the read limit closes the socket with 1009.
	big := `{"type":"message","text":"` + strings.Repeat("x", maxFrame) + `"}`
	alice.Conn.Write(context.Background(), websocket.MessageText, []byte(big))
	if err := alice.WaitClosed(); websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
		t.Errorf("oversized frame closed the socket with %v, want 1009", err)
	}
}
