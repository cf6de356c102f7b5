package chat

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits of a chat message. MaxTextLen counts characters (runes), not bytes.
const (
	MaxTextLen     = 4000
	MaxClientIDLen = 128
	// MaxPayload bounds a message payload on chat.room.*: the longest valid
	// text is 4,000 four-byte characters plus small fields, far below this.
	MaxPayload = 64 << 10
	// MaxClockSkew is how far ahead of its arrival a message's ts may be:
	// publishers' clocks drift, but a ts further ahead (say year 9999)
	// would pin its room at the top of the room list.
	MaxClockSkew = 5 * time.Minute
)

// minTS is the earliest ts ParseMessage keeps: the chat did not exist
// before, so an older one is a broken or hostile publisher.
var minTS = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

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
// arrival. Room and Seq are left empty for the caller to set from the
// subject and the stream, whatever the payload says. A ts before 2000 or
// more than MaxClockSkew after arrival is replaced by arrival, not refused:
// the message itself is fine. Every service that reads the CHAT stream
// decides with it what is garbage, so they all skip the same messages.
func ParseMessage(data []byte, arrival time.Time) (Message, error) {
	var m Message
	if len(data) > MaxPayload {
		return m, fmt.Errorf("%w: payload is %d bytes, the limit is %d", ErrBadMessage, len(data), MaxPayload)
	}
	// encoding/json would turn invalid bytes into U+FFFD: the text stored
	// would not be the text sent.
	if !utf8.Valid(data) {
		return m, fmt.Errorf("%w: payload is not valid UTF-8", ErrBadMessage)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return Message{}, fmt.Errorf("%w: %v", ErrBadMessage, err)
	}
	// The subject names the room and the stream numbers the message: a
	// publisher's own room or seq must not travel on as if they were true.
	m.Room, m.Seq = "", 0
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
	if m.TS.Before(minTS) || m.TS.After(arrival.Add(MaxClockSkew)) {
		m.TS = arrival
	}
	m.TS = m.TS.UTC()
	return m, nil
}

// Text validation failures; all wrap ErrBadMessage. ErrTextTooLong is the
// one to tell apart (the too_long error code); the others are invalid.
// ErrTextControl comes wrapped with the character and where it is.
var (
	ErrEmptyText     = fmt.Errorf("%w: text is empty", ErrBadMessage)
	ErrTextTooLong   = fmt.Errorf("%w: text is longer than %d characters", ErrBadMessage, MaxTextLen)
	ErrTextInvisible = fmt.Errorf("%w: text has no visible character (only spaces, zero-width or direction marks)", ErrBadMessage)
	ErrTextControl   = fmt.Errorf("%w: text contains a control character", ErrBadMessage)
	ErrTextEncoding  = fmt.Errorf("%w: text is not valid UTF-8", ErrBadMessage)
)

// ValidateText checks a message text against the text rule: 1 to
// MaxTextLen characters (code points), valid UTF-8, no C0 or C1 control
// character but newline and tab, and at least one character that is not
// white space, zero-width or a direction mark. A valid text is stored and
// delivered exactly as sent, so nothing downstream (the database drops
// NUL, terminals obey escape codes) changes or acts on it.
func ValidateText(text string) error {
	if text == "" {
		return ErrEmptyText
	}
	if !utf8.ValidString(text) {
		return ErrTextEncoding
	}
	n, visible := 0, false
	var bad error
	for _, r := range text {
		n++
		if n > MaxTextLen {
			return ErrTextTooLong
		}
		if bad != nil {
			continue // only the length can still change the answer
		}
		switch {
		case isControl(r):
			bad = fmt.Errorf("%w, %U at character %d; only newline and tab are allowed", ErrTextControl, r, n)
		case !visible && !isInvisible(r):
			visible = true
		}
	}
	switch {
	case bad != nil:
		return bad
	case !visible:
		return ErrTextInvisible
	}
	return nil
}

// isControl reports the C0 and C1 control characters and DEL, except
// newline and tab.
func isControl(r rune) bool {
	return (r < 0x20 && r != '\n' && r != '\t') || (r >= 0x7f && r <= 0x9f)
}

// isInvisible reports characters that show nothing on their own: white
// space, zero-width characters and the bidirectional controls. A text made
// only of them looks empty (or reorders what follows it) and is refused.
func isInvisible(r rune) bool {
	switch {
	case unicode.IsSpace(r):
		return true
	case r >= 0x200b && r <= 0x200f: // zero-width space, non-joiner, joiner; LRM, RLM
		return true
	case r >= 0x202a && r <= 0x202e: // bidi embeddings and overrides
		return true
	case r >= 0x2066 && r <= 0x2069: // bidi isolates
		return true
	case r == 0x2060 || r == 0xfeff || r == 0x061c: // word joiner, BOM, Arabic letter mark
		return true
	}
	return false
}
