package accounts

import (
	"strings"
	"testing"
)

func TestPasswordHash(t *testing.T) {
	h := hashPassword("correct horse")
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Errorf("hash %s, want argon2id with its parameters in PHC format", h)
	}
	if strings.Contains(h, "correct horse") {
		t.Fatal("the hash contains the password")
	}
	if again := hashPassword("correct horse"); again == h {
		t.Error("two hashes of one password are equal: no random salt")
	}
	for pw, want := range map[string]bool{"correct horse": true, "correct hors": false, "Correct horse": false, "": false} {
		ok, err := checkPassword(h, pw)
		if err != nil || ok != want {
			t.Errorf("checkPassword(%q) = %v, %v; want %v", pw, ok, err, want)
		}
	}
	for _, bad := range []string{"", "plain", "$2a$10$bcrypt", "$argon2id$v=18$m=1,t=1,p=1$c2FsdA$a2V5", "$argon2id$v=19$m=0,t=1,p=1$c2FsdA$a2V5", "$argon2id$v=19$m=8,t=1,p=1$!!$a2V5"} {
		if _, err := checkPassword(bad, "x"); err == nil {
			t.Errorf("checkPassword accepted the hash %q", bad)
		}
	}
}

func TestTokens(t *testing.T) {
	a, b := newToken(), newToken()
	if a == b || len(a) != 43 || !validToken(a) {
		t.Errorf("tokens %q and %q: want two different 43-character tokens", a, b)
	}
	for _, bad := range []string{"", "short", a[:42], a + "A", strings.Repeat("!", 43)} {
		if validToken(bad) {
			t.Errorf("validToken(%q) = true", bad)
		}
	}
}

func TestAddrKey(t *testing.T) {
	for addr, want := range map[string]string{
		"":                        "",
		"203.0.113.7":             "addr:203.0.113.7",
		"203.0.113.7:4242":        "addr:203.0.113.7",
		"::ffff:203.0.113.7":      "addr:203.0.113.7",
		"2001:db8:1:2:3:4:5:6":    "addr:2001:db8:1:2::/64",
		"[2001:db8:1:2::9]:443":   "addr:2001:db8:1:2::/64",
		"fe80::1%eth0":            "addr:fe80::/64",
		"2001:db8:1:3:ffff::ffff": "addr:2001:db8:1:3::/64",
	} {
		got, err := addrKey(addr)
		if err != nil || got != want {
			t.Errorf("addrKey(%q) = %q, %v; want %q", addr, got, err, want)
		}
	}
	for _, bad := range []string{"localhost", "1.2.3", "203.0.113.7:http", "x"} {
		if _, err := addrKey(bad); err == nil {
			t.Errorf("addrKey(%q) accepted", bad)
		}
	}
}

func BenchmarkHashPassword(b *testing.B) {
	for b.Loop() {
		hashPassword("correct horse battery")
	}
}
