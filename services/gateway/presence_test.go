package gateway

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/natstest"
)

func users(f map[string]any) []string {
	var out []string
	for _, u := range f["users"].([]any) {
		out = append(out, u.(string))
	}
	return out
}

// nextPresence waits for a presence frame whose users list is want.
func (c *wsClient) nextPresence(want ...string) map[string]any {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		f := c.next("presence")
		if slices.Equal(users(f), want) {
			return f
		}
	}
	c.t.Fatalf("no presence frame with users %v", want)
	return nil
}

func TestPresenceAcrossGateways(t *testing.T) {
	s := natstest.Start(t)
	gw1 := startGateway(t, s, nil)
	gw2 := startGateway(t, s, nil)
	alice := dial(t, gw1, "/ws/chat/lobby/alice")
	alice.nextPresence("alice")

	bob := dial(t, gw2, "/ws/chat/lobby/bob")
	bob.nextPresence("alice", "bob")
	f := alice.nextPresence("alice", "bob")
	if joined := fmt.Sprint(f["joined"]); !strings.Contains(joined, "bob") {
		t.Errorf("joined = %v, want bob in it", f["joined"])
	}

	// A second tab of bob changes nothing; closing one of two neither.
	bob2 := dial(t, gw2, "/ws/chat/lobby/bob")
	bob2.nextPresence("alice", "bob")
	bob2.conn.CloseNow()
	bob.conn.CloseNow()
	f = alice.nextPresence("alice")
	if fmt.Sprint(f["left"]) != "[bob]" {
		t.Errorf("left = %v, want [bob]", f["left"])
	}
}

// TestPresenceExpiresSilentGateway: a gateway that crashed sends no leave;
// its users disappear once it has missed three announcements.
func TestPresenceExpiresSilentGateway(t *testing.T) {
	s := natstest.Start(t)
	// Expiry (3 intervals) well beyond the 200 ms a presence change waits
	// to be broadcast, so the ghost is seen before it goes.
	base := startGateway(t, s, func(c *Config) { c.PresenceInterval = 300 * time.Millisecond })
	alice := dial(t, base, "/ws/chat/lobby/alice")
	alice.nextPresence("alice")

	nc := natstest.Connect(t, s)
	ghost, _ := json.Marshal(chat.Presence{Room: "lobby", Event: chat.PresenceJoin, Gateway: "crashed-gw", User: "ghost", TS: time.Now()})
	if err := nc.Publish(chat.PresenceSubject("lobby"), ghost); err != nil {
		t.Fatal(err)
	}
	alice.nextPresence("alice", "ghost")
	start := time.Now()
	f := alice.nextPresence("alice")
	if fmt.Sprint(f["left"]) != "[ghost]" {
		t.Errorf("left = %v", f["left"])
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("ghost dropped after %v, want about 3 intervals", d)
	}
	// Garbage on the presence subject is ignored.
	nc.Publish(chat.PresenceSubject("lobby"), []byte("not json"))
	alice.say("still fine", "c1")
	alice.next("message")
}

// TestPresenceStormCoalesced: many people joining a room at once make a
// few presence frames, not one per join to everyone (which would overflow
// every send queue in a large room).
func TestPresenceStormCoalesced(t *testing.T) {
	s := natstest.Start(t)
	base := startGateway(t, s, func(c *Config) { c.SendQueue = 32 })
	const n = 200
	clients := make([]*wsClient, n)
	for i := range n {
		clients[i] = dial(t, base, fmt.Sprintf("/ws/chat/big/u%03d", i))
	}
	first := clients[0]
	want := make([]string, n)
	for i := range n {
		want[i] = fmt.Sprintf("u%03d", i)
	}
	frames := 0
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		f := first.next("presence")
		frames++
		if len(users(f)) == n {
			break
		}
	}
	if frames > 50 {
		t.Errorf("first client got %d presence frames for %d joins", frames, n)
	}
	if got := metric(t, base, "chat_gateway_slow_clients_total"); got != 0 {
		t.Errorf("%v clients dropped as slow during the joins", got)
	}
	t.Logf("%d presence frames for %d joins", frames, n)
}
