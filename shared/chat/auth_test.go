package chat

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// goldenAuth is one of every request and reply of the auth.* subjects and
// every bucket value, pinned in testdata/ by TestGolden: the gateway and
// the nats CLI depend on these shapes.
func goldenAuth() map[string]any {
	ts := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	account := Account{Name: "Alice", Admin: false, CreatedAt: ts}
	session := Session{Name: "Alice", CreatedAt: ts, ExpiresAt: ts.Add(30 * 24 * time.Hour)}
	withToken := session
	withToken.Token = "q0b1T5oGkFZ3d1Vv0bEw2S5oC8kX3uJm9n7Yh2rL4aQ"
	mute := Mute{Room: "lobby", User: "bob", By: "Alice", Until: ts.Add(10 * time.Minute)}
	return map[string]any{
		"auth_credentials.json":        Credentials{Name: "Alice", Password: "correct horse", Addr: "203.0.113.7"},
		"auth_token_request.json":      TokenRequest{Token: withToken.Token},
		"auth_password_change.json":    PasswordChange{Token: withToken.Token, Current: "correct horse", Password: "battery staple", Addr: "203.0.113.7"},
		"auth_mute_request.json":       MuteRequest{Token: withToken.Token, Room: "lobby", User: "bob", Duration: "10m"},
		"auth_reply_login.json":        AuthReply{OK: true, Account: &account, Session: &withToken},
		"auth_reply_session.json":      AuthReply{OK: true, Account: &account, Session: &session},
		"auth_reply_mute.json":         AuthReply{OK: true, Mute: &mute},
		"auth_reply_ok.json":           AuthReply{OK: true},
		"auth_reply_unauthorized.json": AuthReply{Code: CodeUnauthorized, Error: "wrong name or password"},
		"auth_reply_rate_limited.json": AuthReply{Code: CodeRateLimited, Error: "too many attempts for this name: try again in 42 seconds", RetryAfter: 42},
		"kv_account.json":              account,
		"kv_session.json":              session,
		"kv_mute.json":                 mute,
	}
}

func TestIsReserved(t *testing.T) {
	for _, name := range []string{"bot", "Bot", "BOT", "system", "sYstem", "nats", "NATS"} {
		if !IsReserved(name) {
			t.Errorf("IsReserved(%q) = false, want true", name)
		}
	}
	for _, name := range []string{"bots", "robot", "natsy", "alice", "systems", ""} {
		if IsReserved(name) {
			t.Errorf("IsReserved(%q) = true, want false", name)
		}
	}
}

func TestValidatePassword(t *testing.T) {
	for _, pw := range []string{"12345678", "éééééééé", strings.Repeat("x", MaxPasswordLen)} {
		if err := ValidatePassword(pw); err != nil {
			t.Errorf("ValidatePassword(%.20q) = %v, want nil", pw, err)
		}
	}
	for _, pw := range []string{"", "1234567", "ééééééé", strings.Repeat("x", MaxPasswordLen+1)} {
		if err := ValidatePassword(pw); !errors.Is(err, ErrBadPassword) {
			t.Errorf("ValidatePassword(%.20q) = %v, want ErrBadPassword", pw, err)
		}
	}
}

func TestKeys(t *testing.T) {
	// The SHA-256 of "abc", a published test vector: gateways in any
	// language must compute the same key.
	if got, want := SessionKey("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; got != want {
		t.Errorf("SessionKey(abc) = %s, want %s", got, want)
	}
	if got := AccountKey("Alice_B-2"); got != "alice_b-2" {
		t.Errorf("AccountKey = %q, want alice_b-2", got)
	}
	if got := MuteKey("Lobby", "BoB"); got != "Lobby.bob" {
		t.Errorf("MuteKey = %q, want Lobby.bob (rooms keep their case)", got)
	}
}
