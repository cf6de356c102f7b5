package chat

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits of a chat message. MaxTextLen counts characters (runes), not bytes.
const (
	MaxTextLen     = 4000
	MaxClientIDLen = 128
	// MaxPayload bounds a message payload on chat.room.*: the longest valid
	// text is 4,000 four-byte characters plus small fields, far below this.
	MaxPayload = 64 << 10
)

// Message kinds.
const (
	KindUser   = "user"
	KindBot    = "bot"
	KindSystem = "system"
)

// DefaultUser is the author of a message published on NATS without a user.
const DefaultUser = "nats"

// How the author of a message was known (Message.Auth). Gateways set it on
// every message a browser sends; a message published on NATS by an operator
// or a service has none, NATS permissions being what vets those.
const (
	// AuthAccount: the author signed in to a registered account.
	AuthAccount = "account"
	// AuthGuest: an unregistered name, claimed by whoever typed it.
	AuthGuest = "guest"
	// AuthToken: an embedding application vouched for the name with a
	// signed token.
	AuthToken = "token"
)

// ErrBadMessage is wrapped by every error ParseMessage returns.
var ErrBadMessage = errors.New("bad message")

// Message is a chat message. On chat.room.<room> only Text is required; Room
// comes from the subject and Seq from the CHAT stream, so publishers leave
// both out. Stored and delivered messages carry all fields.
type Message struct {
	Room     string    `json:"room,omitempty"`
	Seq      uint64    `json:"seq,omitempty"`
	User     string    `json:"user"`
	Text     string    `json:"text"`
	Kind     string    `json:"kind"`
	ClientID string    `json:"client_id,omitempty"`
	TS       time.Time `json:"ts"`
	// Auth says how the gateway knew the author: AuthAccount, AuthGuest or
	// AuthToken; empty for messages published on NATS directly.
	Auth string `json:"auth,omitempty"`
}

// ParseMessage decodes and validates a payload published on
// chat.room.<room>, filling the defaults: user DefaultUser, kind KindUser, ts
// arrival. Every service that reads the CHAT stream decides with it what is
// garbage, so they all skip the same messages.
func ParseMessage(data []byte, arrival time.Time) (Message, error) {
	var m Message
	if len(data) > MaxPayload {
		return m, fmt.Errorf("%w: payload is %d bytes, the limit is %d", ErrBadMessage, len(data), MaxPayload)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return Message{}, fmt.Errorf("%w: %v", ErrBadMessage, err)
	}
	if err := ValidateText(m.Text); err != nil {
		return Message{}, err
	}
	if m.User == "" {
		m.User = DefaultUser
	}
	if err := ValidateName("user", m.User); err != nil {
		return Message{}, fmt.Errorf("%w: %v", ErrBadMessage, err)
	}
	switch m.Kind {
	case "":
		m.Kind = KindUser
	case KindUser, KindBot, KindSystem:
	default:
		return Message{}, fmt.Errorf("%w: unknown kind %q", ErrBadMessage, m.Kind)
	}
	switch m.Auth {
	case "", AuthAccount, AuthGuest, AuthToken:
	default:
		return Message{}, fmt.Errorf("%w: unknown auth %q", ErrBadMessage, m.Auth)
	}
	if len(m.ClientID) > MaxClientIDLen {
		return Message{}, fmt.Errorf("%w: client_id is longer than %d bytes", ErrBadMessage, MaxClientIDLen)
	}
	if m.TS.IsZero() {
		m.TS = arrival
	}
	m.TS = m.TS.UTC()
	return m, nil
}

// ErrEmptyText and ErrTextTooLong are the text validation failures; both wrap
// ErrBadMessage.
var (
	ErrEmptyText   = fmt.Errorf("%w: text is empty", ErrBadMessage)
	ErrTextTooLong = fmt.Errorf("%w: text is longer than %d characters", ErrBadMessage, MaxTextLen)
)

// ValidateText checks a message text: not blank, at most MaxTextLen characters.
func ValidateText(text string) error {
	if strings.TrimSpace(text) == "" {
		return ErrEmptyText
	}
	if utf8.RuneCountInString(text) > MaxTextLen {
		return ErrTextTooLong
	}
	return nil
}
