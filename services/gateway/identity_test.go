package gateway

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natschat/chat/services/accounts"
	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/testkit/natstest"
)

// TestRegisteredNameNeedsItsSession: the page of a registered name loads
// (it shows sign-in), but its WebSocket is refused with 403 and the reason
// unless it carries a session of that account, in any letter case.
func TestRegisteredNameNeedsItsSession(t *testing.T) {
	s := natstest.Start(t)
	startAccounts(t, s, "", nil)
	gw := startIDGateway(t, s, nil)
	alice := newPage(t).register(gw.base, "Alice", password)
	bob := newPage(t).register(gw.base, "bob", password)

	if a := newPage(t).get(gw.base, "/chat/lobby/alice"); a.StatusCode != http.StatusOK {
		t.Errorf("room page of a registered name: %v, want 200 (it shows sign-in)", a)
	}
	for _, tc := range []struct {
		name   string
		header http.Header
		want   string
	}{
		{"no session", nil, "Alice is a registered name: sign in as Alice"},
		{"a made-up session", cookieHeader("made-up-token-made-up-token-made-up-token-x"), "Alice is a registered name"},
		{"another account's session", cookieHeader(bob), "Alice is registered to someone else (you are signed in as bob)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/ws/chat/lobby/alice", "/ws/chat/lobby/ALICE"} {
				c, status, reason := tryConnect(t, gw.base, path, tc.header)
				if c != nil || status != http.StatusForbidden || !strings.Contains(reason, tc.want) {
					t.Errorf("%s: %d %q, want 403 saying %q", path, status, reason, tc.want)
				}
			}
			// The page asks the same URL without an upgrade to learn why.
			req, _ := http.NewRequest(http.MethodGet, gw.base+"/ws/chat/lobby/alice", nil)
			for k, v := range tc.header {
				req.Header[k] = v
			}
			if a := newPage(t).do(req); a.StatusCode != http.StatusForbidden || !strings.Contains(string(a.body), tc.want) {
				t.Errorf("plain GET: %v, want 403 saying %q", a, tc.want)
			}
		})
	}

	// With her session, any spelling of her name is her, written her way.
	for _, path := range []string{"/ws/chat/lobby/Alice", "/ws/chat/lobby/alice"} {
		c := connect(t, gw.base, path, cookieHeader(alice))
		c.next(chat.FrameHistory)
		c.say("hi from "+path, path)
		if f := c.ack(path); f.User != "Alice" || f.Auth != chat.AuthAccount {
			t.Errorf("%s: message by %q with auth %q, want Alice, account", path, f.User, f.Auth)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, gw.base+"/ws/chat/lobby/alice", nil)
	req.Header = cookieHeader(alice)
	if a := newPage(t).do(req); a.StatusCode != http.StatusUpgradeRequired {
		t.Errorf("plain GET with the session: %v, want 426 (may connect)", a)
	}
}

// TestGuests: an unregistered name is a guest, unless guests are off;
// registering the name closes its guest connections (in any letter case)
// and keeps them out.
func TestGuests(t *testing.T) {
	s := natstest.Start(t)
	startAccounts(t, s, "", nil)
	gw := startIDGateway(t, s, nil)
	dave := connect(t, gw.base, "/ws/chat/lobby/dave", nil)
	dave.next(chat.FrameHistory)
	dave.say("hello", "c1")
	if f := dave.ack("c1"); f.User != "dave" || f.Auth != chat.AuthGuest {
		t.Errorf("guest message by %q with auth %q, want dave, guest", f.User, f.Auth)
	}
	DAVE := connect(t, gw.base, "/ws/chat/other/DAVE", nil)
	DAVE.next(chat.FrameHistory)
	erin := connect(t, gw.base, "/ws/chat/lobby/erin", nil)
	erin.next(chat.FrameHistory)

	newPage(t).register(gw.base, "Dave", password)
	for _, c := range []*idConn{dave, DAVE} {
		if code, reason := c.closedWith(); code != statusNameRegistered || !strings.Contains(reason, "registered") {
			t.Errorf("guest closed with %d %q, want %d saying the name was registered", code, reason, statusNameRegistered)
		}
	}
	if _, status, reason := tryConnect(t, gw.base, "/ws/chat/lobby/dave", nil); status != http.StatusForbidden {
		t.Errorf("guest dave after the registration: %d %q, want 403", status, reason)
	}
	erin.say("still here", "c2")
	erin.ack("c2") // another guest is not touched

	closed := startIDGateway(t, s, func(c *Config) { c.Guests = false })
	if _, status, reason := tryConnect(t, closed.base, "/ws/chat/lobby/frank", nil); status != http.StatusForbidden || !strings.Contains(reason, "guests") {
		t.Errorf("guest with GATEWAY_GUESTS=false: %d %q, want 403 about guests", status, reason)
	}
	frank := newPage(t).register(closed.base, "frank", password)
	connect(t, closed.base, "/ws/chat/lobby/frank", cookieHeader(frank)).next(chat.FrameHistory)
}

// TestReservedNamesRefused: bot, system and nats, in any case, are no
// browser's, guest or not.
func TestReservedNamesRefused(t *testing.T) {
	s := natstest.Start(t)
	startAccounts(t, s, "", nil)
	gw := startIDGateway(t, s, nil)
	for _, name := range []string{"bot", "Bot", "SYSTEM", "nats"} {
		if _, status, reason := tryConnect(t, gw.base, "/ws/chat/lobby/"+name, nil); status != http.StatusForbidden || !strings.Contains(reason, "reserved") {
			t.Errorf("%s: %d %q, want 403 reserved", name, status, reason)
		}
	}
}

// TestSessionOnEveryGateway: a session made through one gateway works on
// another; a logout on the first closes the second's socket within a
// second and keeps it out; a password change ends the other sessions
// everywhere.
func TestSessionOnEveryGateway(t *testing.T) {
	s := natstest.Start(t)
	startAccounts(t, s, "", nil)
	a := startIDGateway(t, s, nil)
	b := startIDGateway(t, s, nil)
	onA := newPage(t)
	token := onA.register(a.base, "alice", password)

	c := connect(t, b.base, "/ws/chat/lobby/alice", cookieHeader(token))
	c.next(chat.FrameHistory)
	req, _ := http.NewRequest(http.MethodGet, b.base+"/api/me", nil)
	req.Header = cookieHeader(token)
	if got := newPage(t).do(req); got.StatusCode != http.StatusOK {
		t.Errorf("GET /api/me on B with A's session: %v", got)
	}

	start := time.Now()
	onA.mustPost(a.base, "/api/logout", map[string]any{}, http.StatusOK)
	code, reason := c.closedWith()
	t.Logf("closed on B %v after the logout on A", time.Since(start))
	if code != statusSessionEnded {
		t.Errorf("B closed the socket with %d %q, want %d", code, reason, statusSessionEnded)
	}
	if _, status, reason := tryConnect(t, b.base, "/ws/chat/lobby/alice", cookieHeader(token)); status != http.StatusForbidden {
		t.Errorf("B after the logout: %d %q, want 403", status, reason)
	}

	// A password change on A ends the sessions of other devices on B.
	phone, laptop := newPage(t), newPage(t)
	phoneToken := func() string {
		phone.mustPost(a.base, "/api/login", map[string]string{"name": "alice", "password": password}, http.StatusOK)
		return phone.session(a.base)
	}()
	onPhone := connect(t, b.base, "/ws/chat/lobby/alice", cookieHeader(phoneToken))
	onPhone.next(chat.FrameHistory)
	laptop.mustPost(a.base, "/api/login", map[string]string{"name": "alice", "password": password}, http.StatusOK)
	laptop.mustPost(a.base, "/api/password", map[string]string{"current": password, "password": "a new password"}, http.StatusOK)
	if code, _ := onPhone.closedWith(); code != statusSessionEnded {
		t.Errorf("the phone's socket closed with %d, want %d", code, statusSessionEnded)
	}
	connect(t, b.base, "/ws/chat/lobby/alice", cookieHeader(laptop.session(a.base))).next(chat.FrameHistory)
}

// TestSessionsSurviveRestarts: the nats-server, the accounts service and
// the gateway all stop and start again over their data; the session is
// still good, and a registered name still protected.
func TestSessionsSurviveRestarts(t *testing.T) {
	natsDir, accountsDir := t.TempDir(), t.TempDir()
	s := natstest.StartWith(t, natstest.Options{StoreDir: natsDir})
	acc := startAccounts(t, s, accountsDir, nil)
	gw := startIDGateway(t, s, nil)
	token := newPage(t).register(gw.base, "alice", password)
	connect(t, gw.base, "/ws/chat/lobby/alice", cookieHeader(token)).next(chat.FrameHistory)

	gw.stop()
	acc.stop()
	s.Shutdown()
	s.WaitForShutdown()

	s = natstest.StartWith(t, natstest.Options{StoreDir: natsDir})
	startAccounts(t, s, accountsDir, nil)
	gw = startIDGateway(t, s, nil)
	c := connect(t, gw.base, "/ws/chat/lobby/alice", cookieHeader(token))
	c.next(chat.FrameHistory)
	c.say("after the restart", "c1")
	if f := c.ack("c1"); f.Auth != chat.AuthAccount {
		t.Errorf("auth %q after the restart, want account", f.Auth)
	}
	if _, status, _ := tryConnect(t, gw.base, "/ws/chat/lobby/alice", nil); status != http.StatusForbidden {
		t.Errorf("alice without a session after the restart: %d, want 403", status)
	}
}

// TestStoredMessagesCarryAuth: whatever a browser puts in its frame, the
// stored message's author and auth are the gateway's; messages published
// on NATS by operators carry no auth.
func TestStoredMessagesCarryAuth(t *testing.T) {
	s := natstest.Start(t)
	startAccounts(t, s, "", nil)
	gw := startIDGateway(t, s, func(c *Config) { c.JWTSecret = testSecret })
	alice := newPage(t).register(gw.base, "Alice", password)

	account := connect(t, gw.base, "/ws/chat/lobby/alice", cookieHeader(alice))
	account.next(chat.FrameHistory)
	account.sendRaw(`{"type":"message","text":"from alice","client_id":"a1","user":"mallory","auth":"token","kind":"bot"}`)
	live := account.ack("a1")
	guest := connect(t, gw.base, "/ws/chat/lobby/bob", nil)
	guest.next(chat.FrameHistory)
	guest.sendRaw(`{"type":"message","text":"from bob","client_id":"b1","user":"Alice","auth":"account"}`)
	guest.ack("b1")
	embedded := connect(t, gw.base, "/ws/chat/lobby/carol?token="+signHS256(t, testSecret, tokenClaimsFor("carol", time.Hour)), nil)
	embedded.next(chat.FrameHistory)
	embedded.say("from carol", "c1")
	embedded.ack("c1")
	nc := natstest.Connect(t, s)
	js := jsOf(t, nc)
	if _, err := js.Publish(t.Context(), chat.RoomSubject("lobby"), []byte(`{"user":"ops","text":"from ops"}`)); err != nil {
		t.Fatal(err)
	}

	if live.User != "Alice" || live.Auth != chat.AuthAccount || live.Kind != chat.KindUser {
		t.Errorf("live frame %+v, want Alice, account, user", live.Message)
	}
	want := map[string][2]string{
		"from alice": {"Alice", chat.AuthAccount},
		"from bob":   {"bob", chat.AuthGuest},
		"from carol": {"carol", chat.AuthToken},
		"from ops":   {"ops", ""},
	}
	stored := streamMessages(t, nc, "lobby")
	if len(stored) != len(want) {
		t.Fatalf("stored %d messages, want %d: %+v", len(stored), len(want), stored)
	}
	for _, m := range stored {
		if w := want[m.Text]; m.User != w[0] || m.Auth != w[1] || m.Kind != chat.KindUser {
			t.Errorf("stored %q by %q auth %q kind %q, want by %q auth %q kind user", m.Text, m.User, m.Auth, m.Kind, w[0], w[1])
		}
	}
}

// TestMuteEnforced: an admin's /mute keeps a user's messages and commands
// out of the room, with a private muted error saying until when, until
// /unmute; others may not mute.
func TestMuteEnforced(t *testing.T) {
	s := natstest.Start(t)
	startAccounts(t, s, "", func(c *accounts.Config) { c.Admins = []string{"boss"} })
	gw := startIDGateway(t, s, nil)
	bossToken := newPage(t).register(gw.base, "boss", password)
	boss := connect(t, gw.base, "/ws/chat/lobby/boss", cookieHeader(bossToken))
	boss.next(chat.FrameHistory)
	bob := connect(t, gw.base, "/ws/chat/lobby/bob", nil)
	bob.next(chat.FrameHistory)
	mutedElsewhere := connect(t, gw.base, "/ws/chat/other/bob", nil)
	mutedElsewhere.next(chat.FrameHistory)

	bob.say("/mute boss 1h", "m0")
	if f := bob.errorFor("m0"); f.Code != chat.CodeForbidden {
		t.Errorf("a guest's /mute: %s %q, want forbidden", f.Code, f.Error)
	}
	boss.say("/mute bob 1x", "m1")
	if f := boss.errorFor("m1"); f.Code != chat.CodeInvalid {
		t.Errorf("/mute with a bad duration: %s %q, want invalid", f.Code, f.Error)
	}
	boss.say("/MUTE Bob 10m", "m2")
	if f := boss.next(chat.FrameNotice); f.ClientID != "m2" || !strings.Contains(f.Text, "muted") {
		t.Errorf("/mute answered %+v", f)
	}
	// The boss's gateway has the mute once /mute is answered; bob's is
	// the same one here, but wait as if it were another.
	idWaitFor(t, "bob muted", func() (bool, string) {
		id := "try-" + time.Now().Format("150405.000000")
		bob.say("probe", id)
		for {
			select {
			case f := <-bob.frames:
				if f.ClientID != id {
					continue
				}
				if f.Type == chat.FrameError && f.Code == chat.CodeMuted {
					if f.Until.Before(time.Now().Add(9*time.Minute)) || !strings.Contains(f.Error, "muted") {
						t.Errorf("muted error %+v: want until in about 10 minutes", f)
					}
					return true, ""
				}
				return false, string(f.Type)
			case <-time.After(idWait):
				return false, "no answer"
			}
		}
	})
	bob.say("let me talk", "muted")
	bob.errorFor("muted")
	bob.say("/now", "cmd")
	if f := bob.errorFor("cmd"); f.Code != chat.CodeMuted {
		t.Errorf("a muted user's command: %s, want muted", f.Code)
	}
	mutedElsewhere.say("in another room", "o1")
	mutedElsewhere.ack("o1")

	boss.say("/unmute bob", "u1")
	if f := boss.next(chat.FrameNotice); f.ClientID != "u1" {
		t.Errorf("/unmute answered %+v", f)
	}
	idWaitFor(t, "bob unmuted", func() (bool, string) {
		id := "again-" + time.Now().Format("150405.000000")
		bob.say("may I?", id)
		for {
			select {
			case f := <-bob.frames:
				if f.ClientID == id {
					return f.Type == chat.FrameMessage, string(f.Type) + " " + string(f.Code)
				}
			case <-time.After(idWait):
				return false, "no answer"
			}
		}
	})
	for _, m := range streamMessages(t, natstest.Connect(t, s), "lobby") {
		if m.Text == "let me talk" {
			t.Errorf("a muted message was stored: %+v", m)
		}
	}
}

// TestPresenceListsGuests: presence frames list every user, and the guests
// among them, across gateways.
func TestPresenceListsGuests(t *testing.T) {
	s := natstest.Start(t)
	startAccounts(t, s, "", nil)
	a := startIDGateway(t, s, nil)
	b := startIDGateway(t, s, nil)
	alice := connect(t, a.base, "/ws/chat/lobby/alice", cookieHeader(newPage(t).register(a.base, "alice", password)))
	connect(t, b.base, "/ws/chat/lobby/bob", nil).next(chat.FrameHistory)
	var online chat.Roster
	idWaitFor(t, "presence of alice and the guest bob", func() (bool, string) {
		online.Apply(alice.next(chat.FramePresence))
		users, guests := online.Users(), online.Guests()
		return slices.Equal(users, []string{"alice", "bob"}) && slices.Equal(guests, []string{"bob"}), strings.Join(users, ",") + " guests " + strings.Join(guests, ",")
	})
}

// TestBotRequestsCarryAuth: the bot learns who asks and how they are known.
func TestBotRequestsCarryAuth(t *testing.T) {
	s := natstest.Start(t)
	startAccounts(t, s, "", nil)
	gw := startIDGateway(t, s, nil)
	nc := natstest.Connect(t, s)
	reqs := make(chan chat.BotRequest, 10)
	if _, err := nc.Subscribe(chat.BotCmd, func(m *nats.Msg) {
		var r chat.BotRequest
		json.Unmarshal(m.Data, &r)
		reqs <- r
		m.Respond([]byte(`{"ok":true}`))
	}); err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	alice := connect(t, gw.base, "/ws/chat/lobby/ALICE", cookieHeader(newPage(t).register(gw.base, "Alice", password)))
	alice.next(chat.FrameHistory)
	alice.say("/now", "c1")
	guest := connect(t, gw.base, "/ws/chat/lobby/bob", nil)
	guest.next(chat.FrameHistory)
	guest.say("/now", "c2")
	// Each command goes to the bot on a goroutine of its own: the two
	// requests may come in either order.
	want := map[string]string{"Alice": chat.AuthAccount, "bob": chat.AuthGuest}
	for range len(want) {
		select {
		case r := <-reqs:
			if auth, ok := want[r.User]; !ok || r.Auth != auth {
				t.Errorf("bot request from %q auth %q, want one of %v", r.User, r.Auth, want)
			}
			delete(want, r.User)
		case <-time.After(idWait):
			t.Fatal("no bot request")
		}
	}
}

// TestSignedInUserSharesOneRateLimit: a signed-in user's connections share
// one frame budget; two guests of the same name do not.
func TestSignedInUserSharesOneRateLimit(t *testing.T) {
	s := natstest.Start(t)
	startAccounts(t, s, "", nil)
	gw := startIDGateway(t, s, func(c *Config) { c.Rate, c.Burst = 0.01, 3 })
	token := newPage(t).register(gw.base, "alice", password)
	tab1 := connect(t, gw.base, "/ws/chat/lobby/alice", cookieHeader(token))
	tab2 := connect(t, gw.base, "/ws/chat/lobby/alice", cookieHeader(token))
	for _, c := range []*idConn{tab1, tab2} {
		c.next(chat.FrameHistory)
	}
	for i := range 3 {
		tab1.say("hi", "t1-"+string(rune('a'+i)))
		tab1.ack("t1-" + string(rune('a'+i)))
	}
	tab2.say("one more", "t2")
	if f := tab2.next(chat.FrameError); f.Code != chat.CodeRateLimited {
		t.Errorf("the second tab after the first used the budget: %s, want rate_limited", f.Code)
	}
	g1 := connect(t, gw.base, "/ws/chat/lobby/gus", nil)
	g2 := connect(t, gw.base, "/ws/chat/lobby/gus", nil)
	for _, c := range []*idConn{g1, g2} {
		c.next(chat.FrameHistory)
	}
	for i := range 3 {
		g1.say("hi", "g1-"+string(rune('a'+i)))
		g1.ack("g1-" + string(rune('a'+i)))
	}
	g2.say("mine", "g2")
	g2.ack("g2")
}
