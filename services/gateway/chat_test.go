package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/natstest"
)

func TestTwoClientsOneRoom(t *testing.T) {
	s := natstest.Start(t)
	base := startGateway(t, s, nil)
	alice := dial(t, base, "/ws/chat/a-b_c/alice")
	bob := dial(t, base, "/ws/chat/a-b_c/bob")
	other := dial(t, base, "/ws/chat/other/carol")
	for _, c := range []*wsClient{alice, bob, other} {
		c.next("history")
	}

	for i := range 5 {
		alice.say(fmt.Sprintf("from alice %d", i), fmt.Sprintf("a%d", i))
		bob.say(fmt.Sprintf("from bob %d", i), fmt.Sprintf("b%d", i))
	}
	var seen [2][]string
	for i, c := range []*wsClient{alice, bob} {
		var last uint64
		for range 10 {
			f := c.next("message")
			if seq := seqOf(f); seq <= last {
				t.Errorf("client %d: seq %d after %d", i, seq, last)
			} else {
				last = seq
			}
			if f["room"] != "a-b_c" || f["kind"] != "user" || f["ts"] == "" {
				t.Errorf("bad message frame %v", f)
			}
			seen[i] = append(seen[i], fmt.Sprintf("%v:%v:%v", f["seq"], f["user"], f["text"]))
		}
	}
	if strings.Join(seen[0], ",") != strings.Join(seen[1], ",") {
		t.Errorf("clients saw different orders:\n%v\n%v", seen[0], seen[1])
	}
	other.none("message", 300*time.Millisecond)
}

func TestOwnMessageCarriesClientID(t *testing.T) {
	s := natstest.Start(t)
	base := startGateway(t, s, nil)
	alice := dial(t, base, "/ws/chat/lobby/alice")
	bob := dial(t, base, "/ws/chat/lobby/bob")
	alice.next("history")
	bob.next("history")
	alice.say("hello", "client-123")
	for _, c := range []*wsClient{alice, bob} {
		f := c.next("message")
		if f["client_id"] != "client-123" || f["user"] != "alice" || f["text"] != "hello" {
			t.Errorf("got %v", f)
		}
	}
}

func TestPlainNATSInterop(t *testing.T) {
	s := natstest.Start(t)
	base := startGateway(t, s, nil)
	nc := natstest.Connect(t, s)
	c := dial(t, base, "/ws/chat/lobby/alice")
	c.next("history")

	// nats pub chat.room.lobby '{"user":"ops","text":"hello"}'
	if err := nc.Publish(chat.RoomSubject("lobby"), []byte(`{"user":"ops","text":"hello"}`)); err != nil {
		t.Fatal(err)
	}
	f := c.next("message")
	if f["user"] != "ops" || f["text"] != "hello" || f["kind"] != "user" || seqOf(f) == 0 {
		t.Errorf("got %v", f)
	}

	// nats sub 'chat.>' sees what browsers send.
	sub, err := nc.SubscribeSync(chat.RoomSubject("lobby"))
	if err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	c.say("from the browser", "x1")
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var got chat.Message
	if err := json.Unmarshal(m.Data, &got); err != nil {
		t.Fatal(err)
	}
	if got.User != "alice" || got.Text != "from the browser" || got.ClientID != "x1" {
		t.Errorf("on NATS: %+v", got)
	}
}

func TestTwoGateways(t *testing.T) {
	s := natstest.Start(t)
	base1 := startGateway(t, s, nil)
	base2 := startGateway(t, s, nil)
	alice := dial(t, base1, "/ws/chat/lobby/alice")
	bob := dial(t, base2, "/ws/chat/lobby/bob")
	alice.next("history")
	bob.next("history")
	alice.say("hi bob", "a1")
	if f := bob.next("message"); f["text"] != "hi bob" {
		t.Errorf("bob got %v", f)
	}
	bob.say("hi alice", "b1")
	alice.next("message") // her own
	if f := alice.next("message"); f["text"] != "hi alice" {
		t.Errorf("alice got %v", f)
	}
}

func TestInvalidNamesRefused(t *testing.T) {
	s := natstest.Start(t)
	base := startGateway(t, s, nil)
	nc := natstest.Connect(t, s)
	spy, err := nc.SubscribeSync(">")
	if err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	subsBefore := s.NumSubscriptions()

	bad := map[string]string{
		"dot":      "a.b",
		"gt":       "%3E",
		"star":     "*",
		"space":    "a%20b",
		"empty":    "",
		"too long": strings.Repeat("x", 65),
		"slash":    "a%2Fb",
	}
	for name, room := range bad {
		t.Run(name, func(t *testing.T) {
			for _, prefix := range []string{"/chat/", "/ws/chat/"} {
				for _, path := range []string{prefix + room + "/bob", prefix + "lobby/" + room} {
					res, err := http.Get(base + path)
					if err != nil {
						t.Fatal(err)
					}
					var body [200]byte
					n, _ := res.Body.Read(body[:])
					res.Body.Close()
					if res.StatusCode != http.StatusBadRequest {
						t.Errorf("GET %s: status %d, want 400", path, res.StatusCode)
					}
					if !strings.Contains(string(body[:n]), "name") && !strings.Contains(string(body[:n]), "path") {
						t.Errorf("GET %s: body %q gives no reason", path, body[:n])
					}
				}
			}
		})
	}
	if _, err := spy.NextMsg(200 * time.Millisecond); err != nats.ErrTimeout {
		t.Errorf("something reached NATS: %v", err)
	}
	if got := s.NumSubscriptions(); got != subsBefore {
		t.Errorf("subscriptions went from %d to %d", subsBefore, got)
	}
}

func TestRoomPageServed(t *testing.T) {
	s := natstest.Start(t)
	base := startGateway(t, s, nil)
	for _, path := range []string{"/", "/chat/lobby/alice", "/static/room.js", "/healthz"} {
		res, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d", path, res.StatusCode)
		}
		if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("GET %s: CSP %q", path, csp)
		}
	}
}
