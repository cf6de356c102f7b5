package chat

import (
	"maps"
	"slices"
)

// Roster is a client's view of who is online in a room, built from the
// presence frames it receives: the whole list first, then deltas.
type Roster struct {
	users map[string]bool // user -> guest
}

// Apply takes one presence frame; other frames are ignored.
func (r *Roster) Apply(f ServerFrame) {
	if f.Type != FramePresence {
		return
	}
	guests := make(map[string]bool, len(f.Guests))
	for _, u := range f.Guests {
		guests[u] = true
	}
	if !f.Delta || r.users == nil {
		r.users = make(map[string]bool, len(f.Users))
	}
	if !f.Delta {
		for _, u := range f.Users {
			r.users[u] = guests[u]
		}
		return
	}
	for _, u := range f.Joined {
		r.users[u] = guests[u]
	}
	for _, u := range f.Left {
		delete(r.users, u)
	}
	for _, u := range f.Guests {
		if _, ok := r.users[u]; ok {
			r.users[u] = true
		}
	}
	for _, u := range f.SignedIn {
		if _, ok := r.users[u]; ok {
			r.users[u] = false
		}
	}
}

// Users is everyone online, sorted.
func (r *Roster) Users() []string { return slices.Sorted(maps.Keys(r.users)) }

// Len is how many are online: len(Users()) without sorting them, for a
// client that watches a large room settle.
func (r *Roster) Len() int { return len(r.users) }

// Guests is those of Users connected as guests only, sorted.
func (r *Roster) Guests() []string {
	var out []string
	for u, guest := range r.users {
		if guest {
			out = append(out, u)
		}
	}
	slices.Sort(out)
	return out
}
