package gateway

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/testkit/natstest"
)

const testSecret = "a secret of thirty-two bytes at least, for HS256"

func tokenClaimsFor(sub string, ttl time.Duration, rooms ...string) jwt.Claims {
	return tokenClaims{Rooms: rooms, RegisteredClaims: jwt.RegisteredClaims{Subject: sub, ExpiresAt: jwt.NewNumericDate(time.Now().Add(ttl))}}
}

func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func signHS256(t *testing.T, secret string, claims jwt.Claims) string {
	return sign(t, jwt.SigningMethodHS256, []byte(secret), claims)
}

// unsigned is a token with "alg":"none" and no signature.
func unsigned(t *testing.T, claims jwt.Claims) string {
	return sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims)
}

func jsOf(t *testing.T, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func pemOf(t *testing.T, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// TestTokens: a token for the path's user, signed with the gateway's HS256
// secret and not expired, lets them in, with auth "token"; every other
// token is refused with a reason that says what is wrong.
func TestTokens(t *testing.T) {
	s := natstest.Start(t)
	gw := startIDGateway(t, s, func(c *Config) { c.JWTSecret = testSecret })
	noTokens := startIDGateway(t, s, nil)

	good := signHS256(t, testSecret, tokenClaimsFor("carol", time.Minute))
	c := connect(t, gw.base, "/ws/chat/lobby/carol?token="+good, nil)
	c.next(chat.FrameHistory)
	c.say("hi", "c1")
	if f := c.ack("c1"); f.User != "carol" || f.Auth != chat.AuthToken {
		t.Errorf("message by %q auth %q, want carol, token", f.User, f.Auth)
	}
	connect(t, gw.base, "/ws/chat/team/carol?token="+signHS256(t, testSecret, tokenClaimsFor("carol", time.Minute, "team", "ops")), nil).next(chat.FrameHistory)

	noExp := signHS256(t, testSecret, jwt.RegisteredClaims{Subject: "carol"})
	// A public key or a random string used as the HMAC secret, and header
	// and claims tampered with after signing.
	other := signHS256(t, "another secret of thirty-two bytes or more", tokenClaimsFor("carol", time.Minute))
	parts := strings.Split(good, ".")
	forged := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"dave","exp":4102444800}`)) + "." + parts[2]
	for _, tc := range []struct {
		name, base, path string
		status           int
		reason           string
	}{
		{"expired", gw.base, "/ws/chat/lobby/carol?token=" + signHS256(t, testSecret, tokenClaimsFor("carol", -time.Minute)), 401, "expired"},
		{"no exp", gw.base, "/ws/chat/lobby/carol?token=" + noExp, 401, "no exp"},
		{"bad signature", gw.base, "/ws/chat/lobby/carol?token=" + other, 401, "bad signature"},
		{"claims changed", gw.base, "/ws/chat/lobby/dave?token=" + forged, 401, "bad signature"},
		{"alg none", gw.base, "/ws/chat/lobby/carol?token=" + unsigned(t, tokenClaimsFor("carol", time.Minute)), 401, "bad signature"},
		{"garbage", gw.base, "/ws/chat/lobby/carol?token=not.a.token", 401, "malformed"},
		{"another user", gw.base, "/ws/chat/lobby/dave?token=" + good, 403, `issued for "carol", not for dave`},
		{"wrong room", gw.base, "/ws/chat/lobby/carol?token=" + signHS256(t, testSecret, tokenClaimsFor("carol", time.Minute, "team")), 403, "not valid for room lobby"},
		{"reserved name", gw.base, "/ws/chat/lobby/bot?token=" + signHS256(t, testSecret, tokenClaimsFor("bot", time.Minute)), 403, "reserved"},
		{"no key configured", noTokens.base, "/ws/chat/lobby/carol?token=" + good, 401, "accepts no tokens"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, status, reason := tryConnect(t, tc.base, tc.path, nil)
			if c != nil || status != tc.status || !strings.Contains(reason, tc.reason) {
				t.Errorf("%d %q, want %d saying %q", status, reason, tc.status, tc.reason)
			}
		})
	}
}

// TestTokensWithPublicKey: ES256 and RS256 tokens against the configured
// public key; a token signed with HMAC using the public key as its secret
// (the algorithm swap) is refused, and so is a key of another type.
func TestTokensWithPublicKey(t *testing.T) {
	s := natstest.Start(t)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecPEM := pemOf(t, &ec.PublicKey)
	keyFile := filepath.Join(t.TempDir(), "embedder.pem")
	if err := os.WriteFile(keyFile, []byte(pemOf(t, &rs.PublicKey)), 0o600); err != nil {
		t.Fatal(err)
	}
	es := startIDGateway(t, s, func(c *Config) { c.JWTPublicKey = ecPEM })
	rsGW := startIDGateway(t, s, func(c *Config) { c.JWTPublicKey = keyFile }) // a file name works too

	claims := tokenClaimsFor("carol", time.Minute)
	connect(t, es.base, "/ws/chat/lobby/carol?token="+sign(t, jwt.SigningMethodES256, ec, claims), nil).next(chat.FrameHistory)
	connect(t, rsGW.base, "/ws/chat/lobby/carol?token="+sign(t, jwt.SigningMethodRS256, rs, claims), nil).next(chat.FrameHistory)
	for _, tc := range []struct {
		name, base, token string
	}{
		{"HS256 with the public key as secret", es.base, signHS256(t, ecPEM, claims)},
		{"RS256 at the ES256 gateway", es.base, sign(t, jwt.SigningMethodRS256, rs, claims)},
		{"ES256 at the RS256 gateway", rsGW.base, sign(t, jwt.SigningMethodES256, ec, claims)},
		{"PS256 with the right RSA key", rsGW.base, sign(t, jwt.SigningMethodPS256, rs, claims)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, status, reason := tryConnect(t, tc.base, "/ws/chat/lobby/carol?token="+tc.token, nil); status != http.StatusUnauthorized || !strings.Contains(reason, "bad signature") {
				t.Errorf("%d %q, want 401 bad signature", status, reason)
			}
		})
	}
}

func TestTokenVerifierConfig(t *testing.T) {
	ec384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for name, cfg := range map[string][2]string{
		"both":         {testSecret, "-----BEGIN PUBLIC KEY-----"},
		"short secret": {"too short", ""},
		"no PEM":       {"", "-----BEGIN nothing"},
		"missing file": {"", filepath.Join(t.TempDir(), "none.pem")},
		"P-384":        {"", pemOf(t, &ec384.PublicKey)},
	} {
		if _, err := newTokenVerifier(cfg[0], cfg[1]); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if v, err := newTokenVerifier("", ""); v != nil || err != nil {
		t.Errorf("no key: %v %v, want no verifier and no error", v, err)
	}
}
