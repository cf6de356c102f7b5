package accounts

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/testkit"
	"github.com/natschat/chat/shared/testkit/natstest"
)

const (
	alicePassword = "correct horse battery"
	bobPassword   = "bob's long password"
)

// TestSignUpAndIn: register, login and session on both databases; the new
// name and sessions appear in the buckets the gateways watch, and only
// the hash of a token is stored anywhere.
func TestSignUpAndIn(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			s := natstest.Start(t)
			nc := natstest.Connect(t, s)
			cfg := testConfig(t, s)
			b.setup(t, &cfg)
			startAccounts(t, cfg, nc)
			accounts := watch(t, nc, chat.AccountsBucket)
			sessions := watch(t, nc, chat.SessionsBucket)

			before := time.Now()
			r := mustOK(t, "register", ask(t, nc, chat.AuthRegister, chat.Credentials{Name: "Alice", Password: alicePassword, Addr: "203.0.113.7"}))
			if r.Account == nil || r.Account.Name != "Alice" || r.Account.Admin || r.Account.CreatedAt.Before(before.Add(-time.Second)) {
				t.Errorf("account %+v, want Alice, not admin, created now", r.Account)
			}
			first := r.Session
			if first == nil || !validToken(first.Token) || first.Name != "Alice" {
				t.Fatalf("session %+v, want a 256-bit token for Alice", first)
			}
			if ttl := first.ExpiresAt.Sub(first.CreatedAt); ttl != cfg.SessionTTL {
				t.Errorf("session lasts %v, want %v", ttl, cfg.SessionTTL)
			}

			// Registering protects the name on every gateway: its key
			// appears in the accounts bucket.
			var acc chat.Account
			accounts.waitValue("alice", &acc)
			if acc != *r.Account {
				t.Errorf("accounts bucket has %+v, want %+v", acc, *r.Account)
			}
			var stored chat.Session
			sessions.waitValue(chat.SessionKey(first.Token), &stored)
			want := *first
			want.Token = ""
			if stored != want {
				t.Errorf("sessions bucket has %+v, want %+v", stored, want)
			}

			second := login(t, nc, "alice", alicePassword) // any letter case
			if second.Token == first.Token || second.Name != "Alice" {
				t.Errorf("second session %+v, want a new token for Alice", second)
			}
			sessions.waitValue(chat.SessionKey(second.Token), &stored)

			r = mustOK(t, "session", ask(t, nc, chat.AuthSession, chat.TokenRequest{Token: first.Token}))
			if r.Session == nil || r.Session.Token != "" || r.Session.Name != "Alice" || r.Account == nil || r.Account.Name != "Alice" || !r.Account.CreatedAt.Equal(acc.CreatedAt) {
				t.Errorf("session reply %+v (session %+v), want Alice's session without the token", r, r.Session)
			}

			// Neither bucket holds a token.
			for _, w := range []*watcher{accounts, sessions} {
				w.mu.Lock()
				for k, v := range w.values {
					for _, tok := range []string{first.Token, second.Token} {
						if strings.Contains(k, tok) || bytes.Contains(v, []byte(tok)) {
							t.Errorf("a bucket holds a session token: %s = %s", k, v)
						}
					}
				}
				w.mu.Unlock()
			}
		})
	}
}

// TestWrongPasswordAndUnknownName: a wrong password and an unknown name get
// the very same reply.
func TestWrongPasswordAndUnknownName(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	startAccounts(t, testConfig(t, s), nc)
	register(t, nc, "alice", alicePassword)

	wrong, err := nc.Request(chat.AuthLogin, []byte(`{"name":"alice","password":"not her password"}`), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	unknown, err := nc.Request(chat.AuthLogin, []byte(`{"name":"nobody","password":"not her password"}`), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(wrong.Data, unknown.Data) {
		t.Errorf("wrong password: %s\nunknown name: %s\nwant the same reply", wrong.Data, unknown.Data)
	}
	var r chat.AuthReply
	if err := json.Unmarshal(wrong.Data, &r); err != nil {
		t.Fatal(err)
	}
	mustCode(t, "wrong password", r, chat.CodeUnauthorized)
	if r := ask(t, nc, chat.AuthLogin, chat.Credentials{Name: "alice", Password: strings.ToUpper(alicePassword)}); r.Code != chat.CodeUnauthorized {
		t.Errorf("password in another case: %+v, want unauthorized", r)
	}
}

// TestNames: names are unique ignoring case, reserved names are refused in
// any case, and bad names and short passwords are refused with reasons.
func TestNames(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	startAccounts(t, testConfig(t, s), nc)
	register(t, nc, "Alice", alicePassword)

	for _, name := range []string{"alice", "ALICE", "aLiCe"} {
		r := mustCode(t, "register "+name, ask(t, nc, chat.AuthRegister, chat.Credentials{Name: name, Password: bobPassword}), chat.CodeNameTaken)
		if r.Session != nil {
			t.Errorf("register %s: a session in a refusal", name)
		}
	}
	for _, name := range []string{"bot", "Bot", "SYSTEM", "system", "nats", "NaTs"} {
		mustCode(t, "register "+name, ask(t, nc, chat.AuthRegister, chat.Credentials{Name: name, Password: bobPassword}), chat.CodeReserved)
	}
	for name, password := range map[string]string{
		"a.b":                   bobPassword,
		"":                      bobPassword,
		"has space":             bobPassword,
		strings.Repeat("x", 65): bobPassword,
		"bob":                   "1234567", // 7 characters
		"carol":                 "",
	} {
		mustCode(t, fmt.Sprintf("register %.10q/%q", name, password), ask(t, nc, chat.AuthRegister, chat.Credentials{Name: name, Password: password}), chat.CodeInvalid)
	}
	register(t, nc, "bob", "12345678") // 8 is enough
	mustCode(t, "not json", ask(t, nc, chat.AuthRegister, []byte("nope")), chat.CodeInvalid)
	mustCode(t, "bad addr", ask(t, nc, chat.AuthRegister, chat.Credentials{Name: "dave", Password: bobPassword, Addr: "my laptop"}), chat.CodeInvalid)
	mustCode(t, "login to a reserved name", ask(t, nc, chat.AuthLogin, chat.Credentials{Name: "bot", Password: bobPassword}), chat.CodeUnauthorized)
}

// TestLoginRateLimits: failed sign-ins are limited per name and per client
// address, the refusal says when to retry, a success does not count, and
// the limits hold for known and unknown names alike.
func TestLoginRateLimits(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	cfg := testConfig(t, s)
	cfg.LoginNameLimit, cfg.LoginAddrLimit, cfg.RegisterAddrLimit = 3, 5, 4
	cfg.LimitWindow = time.Hour
	startAccounts(t, cfg, nc)
	register(t, nc, "alice", alicePassword)
	attempt := func(name, password, addr string) chat.AuthReply {
		t.Helper()
		return ask(t, nc, chat.AuthLogin, chat.Credentials{Name: name, Password: password, Addr: addr})
	}
	limited := func(what string, r chat.AuthReply) {
		t.Helper()
		mustCode(t, what, r, chat.CodeRateLimited)
		if r.RetryAfter < 1 || r.RetryAfter > 3600 || r.Session != nil {
			t.Errorf("%s: retry_after %d, want 1 to 3600 seconds (the window is 1h)", what, r.RetryAfter)
		}
	}

	t.Run("per name", func(t *testing.T) {
		// Each from its own address: only the name's limit applies.
		mustCode(t, "wrong 1", attempt("alice", "wrong password", "198.51.100.1"), chat.CodeUnauthorized)
		mustCode(t, "wrong 2", attempt("alice", "wrong password", "198.51.100.2"), chat.CodeUnauthorized)
		mustOK(t, "right", attempt("alice", alicePassword, "198.51.100.3")) // does not count
		mustCode(t, "wrong 3", attempt("ALICE", "wrong password", "198.51.100.4"), chat.CodeUnauthorized)
		limited("wrong 4", attempt("alice", "wrong password", "198.51.100.5"))
		limited("right password once limited", attempt("alice", alicePassword, "198.51.100.6"))
		// An unknown name is limited the same way, so the limit tells
		// nothing about which names exist.
		for i := range 3 {
			mustCode(t, "unknown", attempt("nobody", "wrong password", fmt.Sprintf("198.51.100.%d", 10+i)), chat.CodeUnauthorized)
		}
		limited("unknown name", attempt("nobody", "wrong password", "198.51.100.20"))
	})

	t.Run("per address", func(t *testing.T) {
		for i := range 5 {
			mustCode(t, "wrong", attempt(fmt.Sprintf("user%d", i), "wrong password", "192.0.2.1"), chat.CodeUnauthorized)
		}
		limited("sixth from the address", attempt("user9", "wrong password", "192.0.2.1:5555"))
		mustCode(t, "another address", attempt("user9", "wrong password", "192.0.2.2"), chat.CodeUnauthorized)
		// IPv6 is limited per /64: one host has a whole network.
		for i := range 5 {
			mustCode(t, "wrong", attempt(fmt.Sprintf("v6user%d", i), "wrong password", fmt.Sprintf("2001:db8:1:2::%x", i+1)), chat.CodeUnauthorized)
		}
		limited("the same /64", attempt("v6user9", "wrong password", "2001:db8:1:2:ffff::1"))
		mustCode(t, "another /64", attempt("v6user9", "wrong password", "2001:db8:1:3::1"), chat.CodeUnauthorized)
	})

	t.Run("sign-ups per address", func(t *testing.T) {
		for i := range 4 {
			r := ask(t, nc, chat.AuthRegister, chat.Credentials{Name: fmt.Sprintf("new%d", i), Password: bobPassword, Addr: "203.0.113.50"})
			mustOK(t, "sign-up", r)
		}
		limited("fifth sign-up", ask(t, nc, chat.AuthRegister, chat.Credentials{Name: "new9", Password: bobPassword, Addr: "203.0.113.50"}))
		mustOK(t, "from elsewhere", ask(t, nc, chat.AuthRegister, chat.Credentials{Name: "new9", Password: bobPassword, Addr: "203.0.113.51"}))
	})
}

// TestRateLimitWindowEnds: once the window is over, the right password
// works again.
func TestRateLimitWindowEnds(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	cfg := testConfig(t, s)
	cfg.LoginNameLimit = 1
	cfg.LimitWindow = 2 * time.Second
	startAccounts(t, cfg, nc)
	register(t, nc, "alice", alicePassword)
	mustCode(t, "wrong", ask(t, nc, chat.AuthLogin, chat.Credentials{Name: "alice", Password: "wrong password"}), chat.CodeUnauthorized)
	r := mustCode(t, "limited", ask(t, nc, chat.AuthLogin, chat.Credentials{Name: "alice", Password: alicePassword}), chat.CodeRateLimited)
	if r.RetryAfter < 1 || r.RetryAfter > 2 {
		t.Errorf("retry_after %d, want 1 or 2 seconds", r.RetryAfter)
	}
	testkit.WaitForState(t, 20*time.Second, "the window to end", func() (bool, string) {
		r := ask(t, nc, chat.AuthLogin, chat.Credentials{Name: "alice", Password: alicePassword})
		return r.OK, fmt.Sprintf("%+v", r)
	})
}

// TestLogout: a logout deletes the session's key, which every gateway's
// watcher sees, and the token no longer works; the account's other
// sessions go on.
func TestLogout(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	startAccounts(t, testConfig(t, s), nc)
	// A watcher started before the sessions exist, as a running gateway's.
	sessions := watch(t, nc, chat.SessionsBucket)
	one := register(t, nc, "alice", alicePassword)
	two := login(t, nc, "alice", alicePassword)
	var v chat.Session
	sessions.waitValue(chat.SessionKey(one.Token), &v)
	sessions.waitValue(chat.SessionKey(two.Token), &v)

	mustOK(t, "logout", ask(t, nc, chat.AuthLogout, chat.TokenRequest{Token: one.Token}))
	sessions.waitDeleted(chat.SessionKey(one.Token))
	mustCode(t, "ended session", ask(t, nc, chat.AuthSession, chat.TokenRequest{Token: one.Token}), chat.CodeUnauthorized)
	mustOK(t, "the other session", ask(t, nc, chat.AuthSession, chat.TokenRequest{Token: two.Token}))
	if !sessions.has(chat.SessionKey(two.Token)) {
		t.Error("the other session's key is gone")
	}
	mustOK(t, "logout again", ask(t, nc, chat.AuthLogout, chat.TokenRequest{Token: one.Token}))
	mustOK(t, "logout of garbage", ask(t, nc, chat.AuthLogout, chat.TokenRequest{Token: "garbage"}))
	mustCode(t, "session of garbage", ask(t, nc, chat.AuthSession, chat.TokenRequest{Token: "garbage"}), chat.CodeUnauthorized)
	mustCode(t, "a made-up token", ask(t, nc, chat.AuthSession, chat.TokenRequest{Token: newToken()}), chat.CodeUnauthorized)
}

// TestPasswordChange: a password change needs the current password, keeps
// the session it was made with and ends every other one of the account.
func TestPasswordChange(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			s := natstest.Start(t)
			nc := natstest.Connect(t, s)
			cfg := testConfig(t, s)
			b.setup(t, &cfg)
			startAccounts(t, cfg, nc)
			sessions := watch(t, nc, chat.SessionsBucket)
			phone := register(t, nc, "alice", alicePassword)
			laptop := login(t, nc, "alice", alicePassword)
			tablet := login(t, nc, "alice", alicePassword)
			bob := register(t, nc, "bob", bobPassword)
			var v chat.Session
			for _, sess := range []chat.Session{phone, laptop, tablet, bob} {
				sessions.waitValue(chat.SessionKey(sess.Token), &v)
			}
			const newPassword = "a brand new password"
			change := func(token, current, password string) chat.AuthReply {
				return ask(t, nc, chat.AuthPassword, chat.PasswordChange{Token: token, Current: current, Password: password})
			}
			mustCode(t, "wrong current password", change(laptop.Token, "wrong password", newPassword), chat.CodeWrongPassword)
			mustCode(t, "too short", change(laptop.Token, alicePassword, "short"), chat.CodeInvalid)
			mustCode(t, "no session", change(newToken(), alicePassword, newPassword), chat.CodeUnauthorized)
			r := mustOK(t, "change", change(laptop.Token, alicePassword, newPassword))
			if r.Account == nil || r.Account.Name != "alice" {
				t.Errorf("account %+v, want alice", r.Account)
			}

			sessions.waitDeleted(chat.SessionKey(phone.Token))
			sessions.waitDeleted(chat.SessionKey(tablet.Token))
			for _, sess := range []chat.Session{phone, tablet} {
				mustCode(t, "an other session", ask(t, nc, chat.AuthSession, chat.TokenRequest{Token: sess.Token}), chat.CodeUnauthorized)
			}
			mustOK(t, "the session that changed it", ask(t, nc, chat.AuthSession, chat.TokenRequest{Token: laptop.Token}))
			mustOK(t, "bob's session", ask(t, nc, chat.AuthSession, chat.TokenRequest{Token: bob.Token}))
			if !sessions.has(chat.SessionKey(laptop.Token)) || !sessions.has(chat.SessionKey(bob.Token)) {
				t.Error("a session that goes on lost its key")
			}
			mustCode(t, "old password", ask(t, nc, chat.AuthLogin, chat.Credentials{Name: "alice", Password: alicePassword}), chat.CodeUnauthorized)
			login(t, nc, "alice", newPassword)
		})
	}
}

// TestSessionsSurviveRestart: with the service and NATS stopped and started
// again on the same database and store, sessions, names and mutes are all
// still there, and a logout still reaches the bucket.
func TestSessionsSurviveRestart(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s := startNATS(t, dir)
			nc := natstest.Connect(t, s)
			cfg := testConfig(t, s)
			cfg.Admins = []string{"alice"}
			b.setup(t, &cfg)
			stop := startAccounts(t, cfg, nc)
			alice := register(t, nc, "alice", alicePassword)
			bob := register(t, nc, "bob", bobPassword)
			mustOK(t, "mute", ask(t, nc, chat.AuthMute, chat.MuteRequest{Token: alice.Token, Room: "lobby", User: "carol", Duration: "1h"}))

			stop()
			nc.Close()
			s.Shutdown()
			s.WaitForShutdown()

			s = startNATS(t, dir)
			nc = natstest.Connect(t, s)
			cfg.URL = s.ClientURL()
			startAccounts(t, cfg, nc)
			sessions := watch(t, nc, chat.SessionsBucket)
			var v chat.Session
			sessions.waitValue(chat.SessionKey(alice.Token), &v)
			if v.Name != "alice" || !v.Admin {
				t.Errorf("alice's session after the restart: %+v", v)
			}
			var acc chat.Account
			watch(t, nc, chat.AccountsBucket).waitValue("bob", &acc)
			var m chat.Mute
			watch(t, nc, chat.MutesBucket).waitValue(chat.MuteKey("lobby", "carol"), &m)
			mustOK(t, "alice's session", ask(t, nc, chat.AuthSession, chat.TokenRequest{Token: alice.Token}))
			mustOK(t, "bob's session", ask(t, nc, chat.AuthSession, chat.TokenRequest{Token: bob.Token}))
			mustOK(t, "logout", ask(t, nc, chat.AuthLogout, chat.TokenRequest{Token: bob.Token}))
			sessions.waitDeleted(chat.SessionKey(bob.Token))
		})
	}
}

// TestTwoInstances: two instances on one database share the queue group:
// every request is answered once, by one of them, and a name registered
// through both at once is one account.
func TestTwoInstances(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	cfg := testConfig(t, s)
	postgresBackend.setup(t, &cfg)
	one, two := cfg, cfg
	one.AdminAddr, two.AdminAddr = testkit.FreeAddr(t), testkit.FreeAddr(t)
	startAccounts(t, one, nc)
	startAccounts(t, two, nc)
	answered := func() float64 {
		return metric(t, one.AdminAddr, "chat_accounts_requests_total", "") + metric(t, two.AdminAddr, "chat_accounts_requests_total", "")
	}
	base := answered() // the readiness probes of startAccounts

	alice := register(t, nc, "alice", alicePassword)
	const n = 40
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			r := ask(t, nc, chat.AuthSession, chat.TokenRequest{Token: alice.Token})
			if !r.OK {
				t.Errorf("session: %+v", r)
			}
		})
	}
	wg.Wait()
	if got, want := answered()-base, float64(n+1); got != want {
		t.Errorf("the instances answered %v requests, want %v (each once)", got, want)
	}
	for _, addr := range []string{one.AdminAddr, two.AdminAddr} {
		if metric(t, addr, "chat_accounts_requests_total", `subject="auth.session"`) == 0 {
			t.Errorf("the instance at %s answered no auth.session: the queue group does not spread them", addr)
		}
	}

	// The same name, in different cases, registered through both at once.
	names := []string{"carol", "Carol", "CAROL", "cArol", "caRol", "carOl", "caroL", "CArol"}
	replies := make([]chat.AuthReply, len(names))
	for i, name := range names {
		wg.Go(func() {
			replies[i] = ask(t, nc, chat.AuthRegister, chat.Credentials{Name: name, Password: bobPassword})
		})
	}
	wg.Wait()
	won := 0
	for i, r := range replies {
		switch {
		case r.OK:
			won++
		case r.Code != chat.CodeNameTaken:
			t.Errorf("register %s: %+v, want ok or name_taken", names[i], r)
		}
	}
	if won != 1 {
		t.Errorf("%d registrations of carol succeeded, want 1", won)
	}
}

// TestAdmins: ACCOUNTS_ADMINS makes accounts admins at sign-up and at
// start, and takes it from those no longer listed; sessions and the
// accounts bucket say so.
func TestAdmins(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	cfg := testConfig(t, s)
	cfg.Admins = []string{"Alice", " carol "}
	stop := startAccounts(t, cfg, nc)
	alice := register(t, nc, "alice", alicePassword)
	bob := register(t, nc, "bob", bobPassword)
	if !alice.Admin || bob.Admin {
		t.Errorf("alice admin %v, bob admin %v; want only alice", alice.Admin, bob.Admin)
	}
	stop()

	cfg.Admins = []string{"bob"}
	startAccounts(t, cfg, nc)
	sessions := watch(t, nc, chat.SessionsBucket)
	accounts := watch(t, nc, chat.AccountsBucket)
	var as, bs chat.Session
	sessions.waitValue(chat.SessionKey(alice.Token), &as)
	sessions.waitValue(chat.SessionKey(bob.Token), &bs)
	var aa, ba chat.Account
	accounts.waitValue("alice", &aa)
	accounts.waitValue("bob", &ba)
	if as.Admin || aa.Admin || !bs.Admin || !ba.Admin {
		t.Errorf("after the restart: alice admin %v/%v, bob admin %v/%v (session/account); want only bob", as.Admin, aa.Admin, bs.Admin, ba.Admin)
	}
	r := mustOK(t, "bob's session", ask(t, nc, chat.AuthSession, chat.TokenRequest{Token: bob.Token}))
	if !r.Session.Admin || !r.Account.Admin {
		t.Errorf("bob's session reply %+v, want admin", r)
	}
}

func TestBadConfig(t *testing.T) {
	s := natstest.Start(t)
	if err := testConfig(t, s).Validate(); err != nil {
		t.Fatalf("the test configuration is refused: %v", err)
	}
	for name, tc := range map[string]struct {
		change func(*Config)
		names  string // the variable the error names
	}{
		"reserved admin": {func(c *Config) { c.Admins = []string{"alice", "Bot"} }, "ACCOUNTS_ADMINS"},
		"bad admin":      {func(c *Config) { c.Admins = []string{"a.b"} }, "ACCOUNTS_ADMINS"},
		"short session":  {func(c *Config) { c.SessionTTL = time.Millisecond }, "ACCOUNTS_SESSION_TTL"},
		"no limit":       {func(c *Config) { c.LoginNameLimit = 0 }, "ACCOUNTS_LOGIN_NAME_LIMIT"},
		"no workers":     {func(c *Config) { c.Workers = 0 }, "ACCOUNTS_WORKERS"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(t, s)
			tc.change(&cfg)
			if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.names) {
				t.Errorf("Validate() = %v, want an error naming %s", err, tc.names)
			}
		})
	}
	t.Run("unknown db kind", func(t *testing.T) {
		cfg := testConfig(t, s)
		cfg.DatabaseURL = "mysql://x"
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := Run(ctx, cfg, testkit.Logger(t)); err == nil {
			t.Error("Run accepted a mysql:// database")
		}
	})
}

// TestMute: an admin mutes a user in a room for a while; the mute is in the
// mutes bucket with its end until it is lifted or over. Others may not.
func TestMute(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	cfg := testConfig(t, s)
	cfg.Admins = []string{"alice"}
	cfg.SweepInterval = 100 * time.Millisecond
	cfg.MuteMax = 24 * time.Hour
	startAccounts(t, cfg, nc)
	mutes := watch(t, nc, chat.MutesBucket)
	alice := register(t, nc, "alice", alicePassword)
	bob := register(t, nc, "Bob", bobPassword)
	mute := func(token, room, user, d string) chat.AuthReply {
		return ask(t, nc, chat.AuthMute, chat.MuteRequest{Token: token, Room: room, User: user, Duration: d})
	}

	before := time.Now()
	r := mustOK(t, "mute", mute(alice.Token, "lobby", "bob", "10m"))
	want := chat.Mute{Room: "lobby", User: "Bob", By: "alice"} // the account's spelling
	if r.Mute == nil || r.Mute.Room != want.Room || r.Mute.User != want.User || r.Mute.By != want.By ||
		r.Mute.Until.Before(before.Add(10*time.Minute-time.Second)) || r.Mute.Until.After(time.Now().Add(10*time.Minute+time.Second)) {
		t.Fatalf("mute %+v, want Bob in lobby by alice for 10m", r.Mute)
	}
	var m chat.Mute
	mutes.waitValue("lobby.bob", &m)
	if m != *r.Mute {
		t.Errorf("mutes bucket has %+v, want %+v", m, *r.Mute)
	}

	mustCode(t, "mute by a non-admin", mute(bob.Token, "lobby", "alice", "10m"), chat.CodeForbidden)
	mustCode(t, "mute without a session", mute(newToken(), "lobby", "alice", "10m"), chat.CodeUnauthorized)
	for _, d := range []string{"", "ten minutes", "0s", "-5m", "500ms", "25h"} {
		mustCode(t, "mute for "+d, mute(alice.Token, "lobby", "dave", d), chat.CodeInvalid)
	}
	mustCode(t, "bad room", mute(alice.Token, "a.b", "dave", "1m"), chat.CodeInvalid)
	mustCode(t, "bad user", mute(alice.Token, "lobby", "*", "1m"), chat.CodeInvalid)
	if mutes.has("lobby.alice") || mutes.has("lobby.dave") {
		t.Error("a refused mute is in the bucket")
	}

	// A guest name can be muted too; the mute ends by itself.
	mustOK(t, "short mute", mute(alice.Token, "lobby", "Guest7", "1s"))
	mutes.waitValue("lobby.guest7", &m)
	mutes.waitDeleted("lobby.guest7")

	mustCode(t, "unmute by a non-admin", ask(t, nc, chat.AuthUnmute, chat.MuteRequest{Token: bob.Token, Room: "lobby", User: "bob"}), chat.CodeForbidden)
	mustOK(t, "unmute", ask(t, nc, chat.AuthUnmute, chat.MuteRequest{Token: alice.Token, Room: "lobby", User: "BOB"}))
	mutes.waitDeleted("lobby.bob")
	mustOK(t, "unmute again", ask(t, nc, chat.AuthUnmute, chat.MuteRequest{Token: alice.Token, Room: "lobby", User: "bob"}))
}

// TestExpiredSessionsEnd: an expired session is refused, then swept from
// the bucket, which the gateways' watchers see.
func TestExpiredSessionsEnd(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	cfg := testConfig(t, s)
	cfg.SessionTTL = 2 * time.Second
	cfg.SweepInterval = 100 * time.Millisecond
	startAccounts(t, cfg, nc)
	sessions := watch(t, nc, chat.SessionsBucket)
	sess := register(t, nc, "alice", alicePassword)
	var v chat.Session
	sessions.waitValue(chat.SessionKey(sess.Token), &v)
	sessions.waitDeleted(chat.SessionKey(sess.Token))
	if time.Now().Before(v.ExpiresAt) {
		t.Errorf("the session was deleted before it expired at %v", v.ExpiresAt)
	}
	mustCode(t, "expired session", ask(t, nc, chat.AuthSession, chat.TokenRequest{Token: sess.Token}), chat.CodeUnauthorized)
}

// TestReconcileRepairsBuckets: keys lost from the buckets, a key written
// by someone else, and a deleted bucket are repaired from the database.
func TestReconcileRepairsBuckets(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	cfg := testConfig(t, s)
	cfg.SyncInterval = 100 * time.Millisecond
	startAccounts(t, cfg, nc)
	alice := register(t, nc, "alice", alicePassword)
	key := chat.SessionKey(alice.Token)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sessions, err := js.KeyValue(ctx, chat.SessionsBucket)
	if err != nil {
		t.Fatal(err)
	}
	w := watch(t, nc, chat.SessionsBucket)

	if err := sessions.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, err := sessions.Put(ctx, chat.SessionKey("forged"), []byte(`{"name":"mallory","admin":true}`)); err != nil {
		t.Fatal(err)
	}
	var v chat.Session
	w.waitValue(key, &v)
	w.waitDeleted(chat.SessionKey("forged"))

	if err := js.DeleteKeyValue(ctx, chat.AccountsBucket); err != nil {
		t.Fatal(err)
	}
	testkit.WaitForState(t, 20*time.Second, "the accounts bucket back with alice", func() (bool, string) {
		kv, err := js.KeyValue(ctx, chat.AccountsBucket)
		if err != nil {
			return false, err.Error()
		}
		_, err = kv.Get(ctx, "alice")
		return err == nil, fmt.Sprint(err)
	})
}

// TestRequestsWithoutReply are publishes, not requests: ignored, and the
// service goes on.
func TestRequestsWithoutReply(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	startAccounts(t, testConfig(t, s), nc)
	for _, subject := range []string{chat.AuthRegister, chat.AuthLogin, chat.AuthMute} {
		if err := nc.Publish(subject, []byte(`{"name":"alice","password":"whatever it is"}`)); err != nil {
			t.Fatal(err)
		}
	}
	mustCode(t, "login", ask(t, nc, chat.AuthLogin, chat.Credentials{Name: "alice", Password: "whatever it is"}), chat.CodeUnauthorized)
}
