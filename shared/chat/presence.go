package chat

import (
	"encoding/json"
	"fmt"
)

// MaxPresenceUsers bounds the users one presence event may list.
const MaxPresenceUsers = 10_000

// ParsePresence decodes and validates an event published on
// chat.presence.<room>: a known event, a gateway id and users that follow
// the name rule. Presence reaches every member list, so anything else is
// refused (wrapping ErrBadMessage), never shown.
func ParsePresence(data []byte) (Presence, error) {
	var p Presence
	if len(data) > MaxPayload*4 {
		return p, fmt.Errorf("%w: presence event is %d bytes", ErrBadMessage, len(data))
	}
	if err := json.Unmarshal(data, &p); err != nil {
		return Presence{}, fmt.Errorf("%w: %v", ErrBadMessage, err)
	}
	if err := ValidateName("gateway", p.Gateway); err != nil {
		return Presence{}, fmt.Errorf("%w: %v", ErrBadMessage, err)
	}
	switch p.Event {
	case PresenceJoin, PresenceLeave:
		if err := ValidateName("user", p.User); err != nil {
			return Presence{}, fmt.Errorf("%w: %v", ErrBadMessage, err)
		}
	case PresenceHere:
		if len(p.Users) > MaxPresenceUsers {
			return Presence{}, fmt.Errorf("%w: %d users, the limit is %d", ErrBadMessage, len(p.Users), MaxPresenceUsers)
		}
		if len(p.Guests) > len(p.Users) {
			return Presence{}, fmt.Errorf("%w: more guests than users", ErrBadMessage)
		}
		for _, u := range append(p.Users, p.Guests...) {
			if err := ValidateName("user", u); err != nil {
				return Presence{}, fmt.Errorf("%w: %v", ErrBadMessage, err)
			}
		}
	case PresenceSync:
	default:
		return Presence{}, fmt.Errorf("%w: unknown presence event %q", ErrBadMessage, p.Event)
	}
	return p, nil
}
