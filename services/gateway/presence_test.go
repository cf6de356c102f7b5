package gateway

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/testkit/natstest"
	"github.com/natschat/chat/shared/testkit/wstest"
)

// nextPresence waits for a presence frame after which the client's list
// of who is online is want.
func nextPresence(c *wstest.Client, want ...string) chat.ServerFrame {
	return c.NextMatch(fmt.Sprintf("presence frame with users %v", want), func(f chat.ServerFrame) bool {
		users, _ := c.Online()
		return f.Type == chat.FramePresence && slices.Equal(users, want)
	})
}

func TestPresenceAcrossGateways(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	gw1 := startGateway(t, s, nil)
	gw2 := startGateway(t, s, nil)
	alice := wstest.Dial(t, gw1+"/ws/chat/lobby/alice")
	nextPresence(alice, "alice")

	bob := wstest.Dial(t, gw2+"/ws/chat/lobby/bob")
	nextPresence(bob, "alice", "bob")
	f := nextPresence(alice, "alice", "bob")
	if !slices.Contains(f.Joined, "bob") {
		t.Errorf("joined = %v, want bob in it", f.Joined)
	}

	// A second tab of bob changes nothing; closing one of two neither.
	bob2 := wstest.Dial(t, gw2+"/ws/chat/lobby/bob")
	nextPresence(bob2, "alice", "bob")
	bob2.Conn.CloseNow()
	bob.Conn.CloseNow()
	f = nextPresence(alice, "alice")
	if !slices.Equal(f.Left, []string{"bob"}) {
		t.Errorf("left = %v, want [bob]", f.Left)
	}
}

// fakeClock is the presence clock of a gateway under test, moved by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestPresenceExpiresSilentGateway: a gateway that crashed sends no leave;
// its users disappear once it has been silent for three announcement
// intervals, and not before. The gateway's presence clock is the test's,
// and a "sync" from another gateway makes it check for silent ones at once.
func TestPresenceExpiresSilentGateway(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	cfg := testConfig(t)
	g, base := newGateway(t, s, cfg)
	clock := &fakeClock{now: time.Now()}
	g.hub.now = clock.Now

	alice := wstest.Dial(t, base+"/ws/chat/lobby/alice")
	nextPresence(alice, "alice")

	nc := natstest.Connect(t, s)
	announce := func(gateway, event, user string) {
		t.Helper()
		p, _ := json.Marshal(chat.Presence{Room: "lobby", Event: event, Gateway: gateway, User: user, TS: time.Now()})
		if err := nc.Publish(chat.PresenceSubject("lobby"), p); err != nil {
			t.Fatal(err)
		}
	}
	announce("crashed-gw", chat.PresenceJoin, "ghost")
	nextPresence(alice, "alice", "ghost")

	// Two intervals of silence: the check keeps the ghost. The live
	// gateway's join after it is the barrier: the frame that shows bob
	// shows the room after the check.
	clock.Advance(2 * cfg.PresenceInterval)
	announce("live-gw", chat.PresenceSync, "")
	announce("live-gw", chat.PresenceJoin, "bob")
	nextPresence(alice, "alice", "bob", "ghost")

	// Past three intervals: the next check drops the ghost, not bob, whom
	// live-gw announced one interval ago.
	clock.Advance(cfg.PresenceInterval + time.Second)
	announce("live-gw", chat.PresenceSync, "")
	f := nextPresence(alice, "alice", "bob")
	if !slices.Equal(f.Left, []string{"ghost"}) {
		t.Errorf("left = %v, want [ghost]", f.Left)
	}

	// Garbage on the presence subject is ignored, and what follows it is
	// not.
	if err := nc.Publish(chat.PresenceSubject("lobby"), []byte("not json")); err != nil {
		t.Fatal(err)
	}
	announce("live-gw", chat.PresenceLeave, "bob")
	nextPresence(alice, "alice")
}

// TestPresenceStormCoalesced: many people joining a room at once make a
// few presence frames, not one per join to everyone (which would overflow
// every send queue in a large room).
func TestPresenceStormCoalesced(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	base := startGateway(t, s, func(c *Config) { c.SendQueue = 32 })
	const n = 200
	clients := make([]*wstest.Client, n)
	for i := range n {
		clients[i] = wstest.Dial(t, base+fmt.Sprintf("/ws/chat/big/u%03d", i))
	}
	frames := 0
	clients[0].NextMatch(fmt.Sprintf("presence frame with all %d users", n), func(f chat.ServerFrame) bool {
		if f.Type != chat.FramePresence {
			return false
		}
		frames++
		users, _ := clients[0].Online()
		return len(users) == n
	})
	if frames > 50 {
		t.Errorf("first client got %d presence frames for %d joins", frames, n)
	}
	if got := metric(t, base, "chat_gateway_slow_clients_total"); got != 0 {
		t.Errorf("%v clients dropped as slow during the joins", got)
	}
	t.Logf("%d presence frames for %d joins", frames, n)
}

func TestPresenceDelta(t *testing.T) {
	t.Parallel()
	l := func(s ...string) []string { return s }
	for _, tt := range []struct {
		name                           string
		before, guestsBefore           []string
		now, guestsNow                 []string
		joined, left, guests, signedIn []string
	}{
		{name: "nothing changed", before: l("a", "b"), now: l("a", "b")},
		{name: "a join", before: l("a"), now: l("a", "b"), joined: l("b")},
		{name: "a guest joins", before: l("a"), now: l("a", "b"), guestsNow: l("b"), joined: l("b"), guests: l("b")},
		{name: "a leave", before: l("a", "b"), guestsBefore: l("b"), now: l("a"), left: l("b")},
		{name: "a guest signs in", before: l("a", "b"), guestsBefore: l("b"), now: l("a", "b"), signedIn: l("b")},
		{name: "a user is a guest now", before: l("a", "b"), now: l("a", "b"), guestsNow: l("a"), guests: l("a")},
		{name: "everything at once", before: l("a", "b", "c"), guestsBefore: l("c"), now: l("b", "c", "d"), guestsNow: l("b", "d"),
			joined: l("d"), left: l("a"), guests: l("b", "d"), signedIn: l("c")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := presenceDelta(tt.before, tt.guestsBefore, tt.now, tt.guestsNow)
			if !f.Delta || f.Users != nil {
				t.Errorf("delta %v with users %v, want a delta without the list", f.Delta, f.Users)
			}
			for _, c := range []struct {
				field     string
				got, want []string
			}{{"joined", f.Joined, tt.joined}, {"left", f.Left, tt.left}, {"guests", f.Guests, tt.guests}, {"signed_in", f.SignedIn, tt.signedIn}} {
				if !slices.Equal(c.got, c.want) {
					t.Errorf("%s = %v, want %v", c.field, c.got, c.want)
				}
			}
		})
	}
}

// TestPresenceFramesFollowTheChange: in a full room a join is told to the
// others as a delta naming the newcomer, not the whole list again.
func TestPresenceFramesFollowTheChange(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	base := startGateway(t, s, nil)
	const n = 40
	var want []string
	var first *wstest.Client
	for i := range n {
		user := fmt.Sprintf("u%02d", i)
		want = append(want, user)
		c := wstest.Dial(t, base+"/ws/chat/full/"+user)
		if i == 0 {
			first = c
		}
	}
	nextPresence(first, want...)
	wstest.Dial(t, base+"/ws/chat/full/zoe")
	f := first.NextMatch("the presence frame of zoe's join", func(f chat.ServerFrame) bool {
		return f.Type == chat.FramePresence && slices.Contains(f.Joined, "zoe")
	})
	if !f.Delta || len(f.Users) != 0 || !slices.Equal(f.Joined, []string{"zoe"}) {
		t.Errorf("got %+v, want a delta with zoe only", f)
	}
	if users, _ := first.Online(); len(users) != n+1 {
		t.Errorf("after the delta, %d online, want %d", len(users), n+1)
	}
}
