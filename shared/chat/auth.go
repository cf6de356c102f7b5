package chat

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Subjects of the accounts service: request/reply, served in queue group
// AuthQueue, so each request is answered by one instance. Every reply is an
// AuthReply.
const (
	AuthPrefix   = "auth."
	AuthWildcard = AuthPrefix + "*"

	// AuthRegister creates an account and signs it in: Credentials.
	AuthRegister = AuthPrefix + "register"
	// AuthLogin signs an account in: Credentials.
	AuthLogin = AuthPrefix + "login"
	// AuthLogout ends one session: TokenRequest. Ending an unknown or
	// expired session succeeds too.
	AuthLogout = AuthPrefix + "logout"
	// AuthPassword changes the password of a session's account and ends
	// every other session of it: PasswordChange.
	AuthPassword = AuthPrefix + "password"
	// AuthSession checks a session token against the database: TokenRequest.
	// Gateways ask it when their copy of SessionsBucket has no entry yet.
	AuthSession = AuthPrefix + "session"
	// AuthMute mutes a user in a room for a while, AuthUnmute lifts it:
	// MuteRequest with the token of an admin's session.
	AuthMute   = AuthPrefix + "mute"
	AuthUnmute = AuthPrefix + "unmute"

	AuthQueue = "accounts"
)

// JetStream KV buckets the accounts service writes and gateways read and
// watch. Only the accounts service may write them.
const (
	// SessionsBucket maps SessionKey(token) to a Session (without Token) for
	// every live session. A deleted key is a session that ended: logout,
	// password change, expiry.
	SessionsBucket = "sessions"
	// AccountsBucket maps AccountKey(name) to the Account of every
	// registered name. A new key is a name that just became protected.
	AccountsBucket = "accounts"
	// MutesBucket maps MuteKey(room, user) to the Mute in force. A mute is
	// over at its Until even before its key is deleted.
	MutesBucket = "mutes"
)

// SessionKey is the key of a session token in SessionsBucket and in the
// database: the hex SHA-256 of the token. The token itself is never stored.
func SessionKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// AccountKey is the key of a user name in AccountsBucket: names are unique
// ignoring letter case, so Alice and alice are the same account.
func AccountKey(name string) string { return strings.ToLower(name) }

// MuteKey is the key of user's mute in room in MutesBucket. The user part
// ignores letter case, like account names, so a mute cannot be dodged by
// changing case.
func MuteKey(room, user string) string { return room + "." + AccountKey(user) }

// Error codes of AuthReply (beside CodeInvalid, CodeRateLimited and
// CodeUnavailable).
const (
	// CodeUnauthorized: wrong name or password (the same for both), or an
	// unknown, ended or expired session.
	CodeUnauthorized Code = "unauthorized"
	// CodeNameTaken: the name is registered already, maybe in another case.
	CodeNameTaken Code = "name_taken"
	// CodeReserved: bot, system and nats cannot be registered or used.
	CodeReserved Code = "reserved"
	// CodeWrongPassword: the current password of a password change is
	// wrong (the caller is signed in, so this reveals nothing).
	CodeWrongPassword Code = "wrong_password"
	// CodeForbidden: signed in, but not allowed (a mute by a non-admin).
	CodeForbidden Code = "forbidden"
	// CodeMuted: the user is muted in the room.
	CodeMuted Code = "muted"
)

// Password limits. MinPasswordLen counts characters; MaxPasswordLen bytes
// (it only bounds the work of hashing).
const (
	MinPasswordLen = 8
	MaxPasswordLen = 1024
)

// reservedNames cannot be registered or used by a browser, in any letter
// case: they name the system's own authors.
var reservedNames = []string{"bot", "system", DefaultUser}

// IsReserved reports whether name is reserved, ignoring letter case.
func IsReserved(name string) bool {
	for _, r := range reservedNames {
		if strings.EqualFold(name, r) {
			return true
		}
	}
	return false
}

// ErrBadPassword is wrapped by every error ValidatePassword returns.
var ErrBadPassword = errors.New("bad password")

// ValidatePassword checks a new password's length.
func ValidatePassword(password string) error {
	switch {
	case utf8.RuneCountInString(password) < MinPasswordLen:
		return fmt.Errorf("%w: a password needs at least %d characters", ErrBadPassword, MinPasswordLen)
	case len(password) > MaxPasswordLen:
		return fmt.Errorf("%w: a password may have at most %d bytes", ErrBadPassword, MaxPasswordLen)
	}
	return nil
}

// Credentials is the request of AuthRegister and AuthLogin.
type Credentials struct {
	Name     string `json:"name"`
	Password string `json:"password"`
	// Addr is the client's address as the gateway knows it (the socket's, or
	// the hop a trusted proxy added), for the per-address limits. Empty: no
	// per-address limit applies (an operator on the nats CLI).
	Addr string `json:"addr,omitempty"`
}

// TokenRequest is the request of AuthLogout and AuthSession.
type TokenRequest struct {
	Token string `json:"token"`
}

// PasswordChange is the request of AuthPassword: the session's account gets
// Password if Current is its password now.
type PasswordChange struct {
	Token    string `json:"token"`
	Current  string `json:"current"`
	Password string `json:"password"`
	Addr     string `json:"addr,omitempty"`
}

// MuteRequest is the request of AuthMute (all fields) and AuthUnmute (no
// Duration). Token is the session of the admin who asks.
type MuteRequest struct {
	Token string `json:"token"`
	Room  string `json:"room"`
	User  string `json:"user"`
	// Duration is in Go's syntax: "90s", "10m", "2h30m".
	Duration string `json:"duration,omitempty"`
}

// Account is a registered name: the value in AccountsBucket, and part of
// the replies about it.
type Account struct {
	Name      string    `json:"name"`
	Admin     bool      `json:"admin"`
	CreatedAt time.Time `json:"created_at"`
}

// Session is a signed-in account: the value in SessionsBucket. Token is set
// only in the reply that created the session; it is never stored, only its
// SessionKey.
type Session struct {
	Token     string    `json:"token,omitempty"`
	Name      string    `json:"name"`
	Admin     bool      `json:"admin"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Mute silences User in Room until Until: the value in MutesBucket.
type Mute struct {
	Room  string    `json:"room"`
	User  string    `json:"user"`
	By    string    `json:"by"`
	Until time.Time `json:"until"`
}

// AuthReply answers every auth.* request. On failure OK is false and Code
// says why; Error is a sentence for people. RetryAfter (seconds) comes with
// CodeRateLimited and CodeUnavailable.
type AuthReply struct {
	OK         bool     `json:"ok"`
	Code       Code     `json:"code,omitempty"`
	Error      string   `json:"error,omitempty"`
	RetryAfter int      `json:"retry_after,omitempty"`
	Account    *Account `json:"account,omitempty"`
	Session    *Session `json:"session,omitempty"`
	Mute       *Mute    `json:"mute,omitempty"`
}
