package gateway

import (
	"log/slog"
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

// presenceCoalesce is how long presence changes gather before clients are
// told: a thousand people joining a room make a few presence frames, not a
// thousand frames to each of them.
const presenceCoalesce = 200 * time.Millisecond

// presence tracks who is online in one room and tells this gateway's
// clients. Everything it holds is owned by its goroutine (run): local
// joins and leaves arrive as messages, other gateways' events from NATS.
type presence struct {
	room    string
	gateway string // this gateway's id
	every   time.Duration
	now     func() time.Time
	nc      *nats.Conn
	metrics *metrics
	log     *slog.Logger

	events chan presenceEvent
	remote chan *nats.Msg
	sub    *nats.Subscription
	done   chan struct{}

	// Owned by run.
	clients map[*client]struct{} // the local clients told about presence
	local   map[string]int       // connections per user on this gateway
	// signedIn counts the connections per user that are not guests: a
	// user with none is a guest.
	signedIn map[string]int
	gateways map[string]*remoteGateway
	online   []string // the online list clients were last told
	guests   []string // and the guests among them
}

// presenceEvent is a client of this gateway joining or leaving the room.
type presenceEvent struct {
	c    *client
	join bool
}

// remoteGateway is what another gateway last said about a room: its users,
// each true if a guest there.
type remoteGateway struct {
	users map[string]bool
	seen  time.Time
}

func newPresence(h *hub, room string) *presence {
	return &presence{
		room: room, gateway: h.id, every: h.presenceEvery, now: h.now, nc: h.nc, metrics: h.metrics, log: h.log,
		events:   make(chan presenceEvent, 64),
		remote:   make(chan *nats.Msg, 4096),
		done:     make(chan struct{}),
		clients:  make(map[*client]struct{}),
		local:    make(map[string]int),
		signedIn: make(map[string]int),
		gateways: make(map[string]*remoteGateway),
		online:   []string{},
	}
}

// subscribe starts receiving the other gateways' events.
func (p *presence) subscribe() error {
	sub, err := p.nc.ChanSubscribe(chat.PresenceSubject(p.room), p.remote)
	if err != nil {
		return err
	}
	p.sub = sub
	return nil
}

// joined and left tell the presence goroutine about a local client. They
// never block for long: the goroutine only publishes and queues frames.
func (p *presence) joined(c *client) { p.send(presenceEvent{c: c, join: true}) }
func (p *presence) left(c *client)   { p.send(presenceEvent{c: c}) }

func (p *presence) send(e presenceEvent) {
	select {
	case p.events <- e:
	case <-p.done:
	}
}

func (p *presence) stop() {
	if p.sub != nil {
		_ = p.sub.Unsubscribe()
	}
	close(p.done)
}

func (p *presence) run() {
	// Ask the other gateways who is here rather than wait for their next
	// announcement.
	p.publish(chat.PresenceSync, "", nil, nil)
	tick := time.NewTicker(p.every)
	defer tick.Stop()
	var flush <-chan time.Time // set while a broadcast is scheduled
	changed := func() {
		if flush == nil {
			flush = time.After(presenceCoalesce)
		}
	}
	for {
		select {
		case e := <-p.events:
			if p.onLocal(e) {
				changed()
			}
		case m := <-p.remote:
			if p.onRemote(m) {
				changed()
			}
		case <-flush:
			flush = nil
			p.broadcast()
		case <-tick.C:
			p.announceHere()
			changed()
		case <-p.done:
			// The room stopped after its last client left: the leaves
			// still queued must reach the other gateways, or they would
			// show these users until this gateway's announcements expire.
			for {
				select {
				case e := <-p.events:
					p.onLocal(e)
				default:
					return
				}
			}
		}
	}
}

// onLocal registers a local join or leave and reports whether the online
// list may have changed.
func (p *presence) onLocal(e presenceEvent) bool {
	user := e.c.user
	guest := e.c.ident.auth == chat.AuthGuest
	wasGuest := p.localGuest(user)
	if e.join {
		p.clients[e.c] = struct{}{}
		p.local[user]++
		if !guest {
			p.signedIn[user]++
		}
		// What the others were last told, and the joiner: the next
		// broadcast then tells the joiner exactly what it has not seen.
		users, guests := p.online, p.guests
		if _, found := slices.BinarySearch(users, user); !found {
			users = insertSorted(users, user)
			if guest {
				guests = insertSorted(guests, user)
			}
		} else if i, found := slices.BinarySearch(guests, user); found && !guest {
			guests = slices.Delete(slices.Clone(guests), i, i+1)
		}
		e.c.push(mustJSON(chat.PresenceFrame{Type: chat.FramePresence, Users: users, Guests: guests}), 0)
		if p.local[user] == 1 || wasGuest != p.localGuest(user) {
			p.publishJoin(user)
		}
		return true
	}
	if _, ok := p.clients[e.c]; !ok {
		return false
	}
	delete(p.clients, e.c)
	p.local[user]--
	if !guest {
		if p.signedIn[user]--; p.signedIn[user] == 0 {
			delete(p.signedIn, user)
		}
	}
	switch {
	case p.local[user] == 0:
		delete(p.local, user)
		p.publish(chat.PresenceLeave, user, nil, nil)
	case wasGuest != p.localGuest(user):
		// Still here, known differently now: a join says how.
		p.publishJoin(user)
	}
	return true
}

// localGuest reports whether user is connected here as a guest only.
func (p *presence) localGuest(user string) bool {
	return p.local[user] > 0 && p.signedIn[user] == 0
}

func (p *presence) publishJoin(user string) {
	ev := chat.Presence{Room: p.room, Event: chat.PresenceJoin, Gateway: p.gateway, User: user, Guest: p.localGuest(user), TS: p.now().UTC()}
	p.emit(ev)
}

// insertSorted is a sorted copy of list with s added.
func insertSorted(list []string, s string) []string {
	out := append(slices.Clone(list), s)
	slices.Sort(out)
	return out
}

// onRemote merges another gateway's event and reports whether the online
// list may have changed.
func (p *presence) onRemote(m *nats.Msg) bool {
	ev, err := chat.ParsePresence(m.Data)
	if err != nil {
		p.metrics.badPresence.Inc()
		p.log.Debug("bad presence event dropped", "room", p.room, "err", err)
		return false
	}
	if ev.Gateway == p.gateway {
		return false
	}
	if ev.Event == chat.PresenceSync {
		p.announceHere()
		return false
	}
	gw := p.gateways[ev.Gateway]
	if gw == nil {
		gw = &remoteGateway{users: make(map[string]bool)}
		p.gateways[ev.Gateway] = gw
	}
	gw.seen = p.now()
	switch ev.Event {
	case chat.PresenceJoin:
		gw.users[ev.User] = ev.Guest
	case chat.PresenceLeave:
		delete(gw.users, ev.User)
	case chat.PresenceHere:
		clear(gw.users)
		for _, u := range ev.Users {
			gw.users[u] = false
		}
		for _, u := range ev.Guests {
			if _, ok := gw.users[u]; ok {
				gw.users[u] = true
			}
		}
	}
	return true
}

// announceHere publishes this gateway's users of the room and expires the
// gateways that went quiet.
func (p *presence) announceHere() {
	users := make([]string, 0, len(p.local))
	var guests []string
	for u := range p.local {
		users = append(users, u)
		if p.localGuest(u) {
			guests = append(guests, u)
		}
	}
	slices.Sort(users)
	slices.Sort(guests)
	cutoff := p.now().Add(-presenceExpiry * p.every)
	for id, gw := range p.gateways {
		if gw.seen.Before(cutoff) {
			delete(p.gateways, id)
		}
	}
	p.publish(chat.PresenceHere, "", users, guests)
}

func (p *presence) publish(event, user string, users, guests []string) {
	p.emit(chat.Presence{Room: p.room, Event: event, Gateway: p.gateway, User: user, Users: users, Guests: guests, TS: p.now().UTC()})
}

func (p *presence) emit(ev chat.Presence) {
	if err := p.nc.Publish(chat.PresenceSubject(p.room), mustJSON(ev)); err != nil {
		p.log.Warn("publish presence", "room", p.room, "event", ev.Event, "err", err)
	}
}

// onlineNow is everyone connected to the room on any live gateway, and
// the guests among them: those no gateway knows as signed in.
func (p *presence) onlineNow() (users, guests []string) {
	set := make(map[string]bool, len(p.local)) // user -> guest so far
	for u := range p.local {
		set[u] = p.localGuest(u)
	}
	for _, gw := range p.gateways {
		for u, guest := range gw.users {
			if was, ok := set[u]; ok {
				set[u] = was && guest
			} else {
				set[u] = guest
			}
		}
	}
	users = make([]string, 0, len(set))
	for u, guest := range set {
		users = append(users, u)
		if guest {
			guests = append(guests, u)
		}
	}
	slices.Sort(users)
	slices.Sort(guests)
	return users, guests
}

// broadcast tells every client how the online list changed since they
// were last told: a delta, so that a room of a thousand members does not
// send a thousand names to each of them for every join.
func (p *presence) broadcast() {
	now, guests := p.onlineNow()
	f := presenceDelta(p.online, p.guests, now, guests)
	if f.Joined == nil && f.Left == nil && f.Guests == nil && f.SignedIn == nil {
		return
	}
	p.online, p.guests = now, guests
	frame := mustJSON(f)
	for c := range p.clients {
		c.push(frame, 0)
	}
}

// presenceDelta is the presence frame that takes a client from the online
// list before (and its guests) to the one now. All lists are sorted.
func presenceDelta(before, guestsBefore, now, guestsNow []string) chat.PresenceFrame {
	f := chat.PresenceFrame{Type: chat.FramePresence, Delta: true}
	has := func(list []string, u string) bool {
		_, ok := slices.BinarySearch(list, u)
		return ok
	}
	for _, u := range now {
		switch {
		case !has(before, u):
			f.Joined = append(f.Joined, u)
			if has(guestsNow, u) {
				f.Guests = append(f.Guests, u)
			}
		case has(guestsNow, u) && !has(guestsBefore, u):
			f.Guests = append(f.Guests, u)
		case !has(guestsNow, u) && has(guestsBefore, u):
			f.SignedIn = append(f.SignedIn, u)
		}
	}
	for _, u := range before {
		if !has(now, u) {
			f.Left = append(f.Left, u)
		}
	}
	return f
}
