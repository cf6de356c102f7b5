package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/testkit"
	"github.com/natschat/chat/shared/testkit/natstest"
	"github.com/natschat/chat/shared/testkit/wstest"
)

func TestTwoClientsOneRoom(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	base := startGateway(t, s, nil)
	alice := wstest.Dial(t, base+"/ws/chat/a-b_c/alice")
	bob := wstest.Dial(t, base+"/ws/chat/a-b_c/bob")
	other := wstest.Dial(t, base+"/ws/chat/other/carol")
	for _, c := range []*wstest.Client{alice, bob, other} {
		c.Next(chat.FrameHistory)
	}

	for i := range 5 {
		alice.Say(fmt.Sprintf("from alice %d", i), fmt.Sprintf("a%d", i))
		bob.Say(fmt.Sprintf("from bob %d", i), fmt.Sprintf("b%d", i))
	}
	var seen [2][]string
	for i, c := range []*wstest.Client{alice, bob} {
		var last uint64
		for range 10 {
			f := c.Next(chat.FrameMessage)
			if f.Seq <= last {
				t.Errorf("client %d: seq %d after %d", i, f.Seq, last)
			} else {
				last = f.Seq
			}
			if f.Room != "a-b_c" || f.Kind != chat.KindUser || f.TS.IsZero() {
				t.Errorf("bad message frame %+v", f)
			}
			seen[i] = append(seen[i], fmt.Sprintf("%d:%s:%s", f.Seq, f.User, f.Text))
		}
	}
	if strings.Join(seen[0], ",") != strings.Join(seen[1], ",") {
		t.Errorf("clients saw different orders:\n%v\n%v", seen[0], seen[1])
	}
	// The other room's first message is one said there after all of the
	// above was stored: nothing of a-b_c came before it.
	other.Say("barrier", "o1")
	if f := other.Next(chat.FrameMessage); f.Text != "barrier" {
		t.Errorf("the other room got %+v", f)
	}
}

func TestOwnMessageCarriesClientID(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	base := startGateway(t, s, nil)
	alice := wstest.Dial(t, base+"/ws/chat/lobby/alice")
	bob := wstest.Dial(t, base+"/ws/chat/lobby/bob")
	alice.Next(chat.FrameHistory)
	bob.Next(chat.FrameHistory)
	alice.Say("hello", "client-123")
	for _, c := range []*wstest.Client{alice, bob} {
		f := c.Next(chat.FrameMessage)
		if f.ClientID != "client-123" || f.User != "alice" || f.Text != "hello" {
			t.Errorf("got %+v", f)
		}
	}
}

func TestPlainNATSInterop(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	base := startGateway(t, s, nil)
	nc := natstest.Connect(t, s)
	c := wstest.Dial(t, base+"/ws/chat/lobby/alice")
	c.Next(chat.FrameHistory)

	// nats pub chat.room.lobby '{"user":"ops","text":"hello"}'
	if err := nc.Publish(chat.RoomSubject("lobby"), []byte(`{"user":"ops","text":"hello"}`)); err != nil {
		t.Fatal(err)
	}
	f := c.Next(chat.FrameMessage)
	if f.User != "ops" || f.Text != "hello" || f.Kind != chat.KindUser || f.Seq == 0 {
		t.Errorf("got %+v", f)
	}

	// nats sub 'chat.>' sees what browsers send.
	sub, err := nc.SubscribeSync(chat.RoomSubject("lobby"))
	if err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	c.Say("from the browser", "x1")
	m, err := sub.NextMsg(testkit.Deadline)
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
	t.Parallel()
	s := natstest.Start(t)
	base1 := startGateway(t, s, nil)
	base2 := startGateway(t, s, nil)
	alice := wstest.Dial(t, base1+"/ws/chat/lobby/alice")
	bob := wstest.Dial(t, base2+"/ws/chat/lobby/bob")
	alice.Next(chat.FrameHistory)
	bob.Next(chat.FrameHistory)
	alice.Say("hi bob", "a1")
	if f := bob.Next(chat.FrameMessage); f.Text != "hi bob" {
		t.Errorf("bob got %+v", f)
	}
	bob.Say("hi alice", "b1")
	alice.Next(chat.FrameMessage) // her own
	if f := alice.Next(chat.FrameMessage); f.Text != "hi alice" {
		t.Errorf("alice got %+v", f)
	}
}

func TestInvalidNamesRefused(t *testing.T) {
	t.Parallel()
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
	// The requests are answered, so whatever they sent is on the server
	// before this barrier: it must be the first message the spy sees.
	const barrier = "test.barrier"
	if err := nc.Publish(barrier, nil); err != nil {
		t.Fatal(err)
	}
	// The gateway's own background traffic (its look for the accounts
	// buckets, the stream watch), the answers to it and the server's audit
	// advisories of those API calls are not about these requests; anything
	// they caused would be a request of its own.
	for {
		m, err := spy.NextMsg(testkit.Deadline)
		if err != nil {
			t.Fatalf("no barrier: %v", err)
		}
		if strings.HasPrefix(m.Subject, "$JS.API.STREAM.INFO.") || strings.HasPrefix(m.Subject, "_INBOX.") ||
			m.Subject == "$JS.EVENT.ADVISORY.API" {
			continue
		}
		if m.Subject != barrier {
			t.Errorf("something reached NATS before the barrier: %s %q", m.Subject, m.Data)
		}
		break
	}
	if got := s.NumSubscriptions(); got != subsBefore {
		t.Errorf("subscriptions went from %d to %d", subsBefore, got)
	}
}

func TestRoomPageServed(t *testing.T) {
	t.Parallel()
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
