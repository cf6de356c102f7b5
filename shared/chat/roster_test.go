package chat

import (
	"slices"
	"testing"
)

// TestRosterAppliesDeltas: the whole list, then deltas, as a client gets
// them.
func TestRosterAppliesDeltas(t *testing.T) {
	var r Roster
	steps := []struct {
		frame         ServerFrame
		users, guests []string
	}{
		{ServerFrame{Type: FramePresence, Users: []string{"alice", "bob"}, Guests: []string{"bob"}}, []string{"alice", "bob"}, []string{"bob"}},
		{ServerFrame{Type: FrameMessage}, []string{"alice", "bob"}, []string{"bob"}},
		{ServerFrame{Type: FramePresence, Delta: true, Joined: []string{"carol", "dave"}, Guests: []string{"dave"}}, []string{"alice", "bob", "carol", "dave"}, []string{"bob", "dave"}},
		{ServerFrame{Type: FramePresence, Delta: true, Left: []string{"alice"}, SignedIn: []string{"bob"}, Guests: []string{"carol"}}, []string{"bob", "carol", "dave"}, []string{"carol", "dave"}},
		// A guest status of someone not online changes nothing.
		{ServerFrame{Type: FramePresence, Delta: true, Guests: []string{"zed"}, SignedIn: []string{"yan"}}, []string{"bob", "carol", "dave"}, []string{"carol", "dave"}},
		// The whole list again (a new connection) replaces everything.
		{ServerFrame{Type: FramePresence, Users: []string{"erin"}}, []string{"erin"}, nil},
	}
	for i, s := range steps {
		r.Apply(s.frame)
		if got := r.Users(); !slices.Equal(got, s.users) {
			t.Errorf("step %d: users %v, want %v", i, got, s.users)
		}
		if got := r.Len(); got != len(s.users) {
			t.Errorf("step %d: len %d, want %d", i, got, len(s.users))
		}
		if got := r.Guests(); !slices.Equal(got, s.guests) {
			t.Errorf("step %d: guests %v, want %v", i, got, s.guests)
		}
	}
}
