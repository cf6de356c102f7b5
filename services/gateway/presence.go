package gateway

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natschat/chat/shared/chat"
)

// Presence: each gateway announces the users connected to it (join, leave,
// and a periodic "here" with all of them) on chat.presence.<room>, and
// merges what the other gateways announce. A gateway that stops announcing
// (it crashed) has its users dropped after presenceExpiry periods.
const presenceExpiry = 3

// remoteGateway is what another gateway last said about a room.
type remoteGateway struct {
	users map[string]bool
	seen  time.Time
}

func (r *room) publishPresence(event, user string, users []string) {
	p := chat.Presence{Room: r.name, Event: event, Gateway: r.hub.id, User: user, Users: users, TS: time.Now().UTC()}
	if err := r.hub.nc.Publish(chat.PresenceSubject(r.name), mustJSON(p)); err != nil {
		r.hub.log.Warn("publish presence", "room", r.name, "event", event, "err", err)
	}
}

// onPresence merges another gateway's announcement. Runs on the room goroutine.
func (r *room) onPresence(m *nats.Msg) {
	var p chat.Presence
	if err := json.Unmarshal(m.Data, &p); err != nil || p.Gateway == "" {
		r.hub.log.Warn("bad presence event", "room", r.name, "err", err)
		return
	}
	if p.Gateway == r.hub.id {
		return
	}
	if p.Event == chat.PresenceSync {
		r.announceHere()
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	gw := r.remote[p.Gateway]
	if gw == nil {
		gw = &remoteGateway{users: make(map[string]bool)}
		r.remote[p.Gateway] = gw
	}
	gw.seen = r.hub.now()
	switch p.Event {
	case chat.PresenceJoin:
		gw.users[p.User] = true
	case chat.PresenceLeave:
		delete(gw.users, p.User)
	case chat.PresenceHere:
		clear(gw.users)
		for _, u := range p.Users {
			gw.users[u] = true
		}
	default:
		return
	}
	r.presenceChangedLocked()
}

// announceHere publishes this gateway's users of the room and expires the
// gateways that went quiet. Runs on the room goroutine.
func (r *room) announceHere() {
	r.mu.Lock()
	users := make([]string, 0, len(r.local))
	for u := range r.local {
		users = append(users, u)
	}
	cutoff := r.hub.now().Add(-presenceExpiry * r.hub.presenceEvery)
	for id, gw := range r.remote {
		if gw.seen.Before(cutoff) {
			delete(r.remote, id)
		}
	}
	r.presenceChangedLocked()
	r.mu.Unlock()
	slices.Sort(users)
	r.publishPresence(chat.PresenceHere, "", users)
}

// onlineLocked is everyone connected to the room on any live gateway.
func (r *room) onlineLocked() []string {
	set := make(map[string]bool, len(r.local))
	for u := range r.local {
		set[u] = true
	}
	for _, gw := range r.remote {
		for u := range gw.users {
			set[u] = true
		}
	}
	users := make([]string, 0, len(set))
	for u := range set {
		users = append(users, u)
	}
	slices.Sort(users)
	return users
}

// presenceCoalesce is how long presence changes gather before clients are
// told: a thousand people joining a room make a few presence frames, not a
// thousand frames to each of them.
const presenceCoalesce = 200 * time.Millisecond

// presenceChangedLocked schedules telling the clients about a change of the
// online list; the room goroutine does it after presenceCoalesce.
func (r *room) presenceChangedLocked() {
	select {
	case r.presenceDirty <- struct{}{}:
	default: // already scheduled
	}
}

// broadcastPresence tells every client how the online list changed since
// they were last told. Runs on the room goroutine.
func (r *room) broadcastPresence() {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.onlineLocked()
	if slices.Equal(now, r.online) {
		return
	}
	f := chat.PresenceFrame{Type: chat.FramePresence, Users: now}
	for _, u := range now {
		if _, ok := slices.BinarySearch(r.online, u); !ok {
			f.Joined = append(f.Joined, u)
		}
	}
	for _, u := range r.online {
		if _, ok := slices.BinarySearch(now, u); !ok {
			f.Left = append(f.Left, u)
		}
	}
	r.online = now
	frame := mustJSON(f)
	for c := range r.clients {
		c.push(frame, 0)
	}
}

// presenceFrameLocked is the online list for a client joining as user: what
// the others were last told, and the joiner. The next broadcast then tells
// the joiner exactly what it has not seen.
func (r *room) presenceFrameLocked(user string) []byte {
	users := r.online
	if _, found := slices.BinarySearch(users, user); !found {
		users = slices.Insert(slices.Clone(users), 0, user)
		slices.Sort(users)
	}
	return mustJSON(chat.PresenceFrame{Type: chat.FramePresence, Users: users})
}
