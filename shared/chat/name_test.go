package chat

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	valid := []string{"a", "lobby", "a-b_c", "A-Z_09", strings.Repeat("x", 64)}
	for _, name := range valid {
		if err := ValidateName("room", name); err != nil {
			t.Errorf("ValidateName(%q) = %v, want nil", name, err)
		}
	}
	invalid := map[string]string{
		"":                      "empty",
		"a.b":                   "may only contain",
		">":                     "may only contain",
		"*":                     "may only contain",
		"a b":                   "may only contain",
		"chat.>":                "may only contain",
		"é":                     "may only contain",
		"a\nb":                  "may only contain",
		strings.Repeat("x", 65): "65 characters",
	}
	for name, want := range invalid {
		err := ValidateName("room", name)
		if !errors.Is(err, ErrInvalidName) {
			t.Errorf("ValidateName(%q) = %v, want ErrInvalidName", name, err)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateName(%q) = %q, want it to mention %q", name, err, want)
		}
	}
}

func TestRoomFromSubject(t *testing.T) {
	tests := []struct {
		subject string
		room    string
		ok      bool
	}{
		{RoomSubject("a-b_c"), "a-b_c", true},
		{FeedSubject("lobby"), "lobby", true},
		{HistorySubject("x"), "x", true},
		{"chat.room.a.b", "a.b", false},
		{"chat.other.x", "", false},
	}
	for _, tt := range tests {
		room, ok := RoomFromSubject(tt.subject)
		if room != tt.room || ok != tt.ok {
			t.Errorf("RoomFromSubject(%q) = %q, %v; want %q, %v", tt.subject, room, ok, tt.room, tt.ok)
		}
	}
}
