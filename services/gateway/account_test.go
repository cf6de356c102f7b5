package gateway

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/natschat/chat/services/accounts"
	"github.com/natschat/chat/shared/testkit/natstest"
)

const password = "correct horse battery"

// sessionSetCookie finds the session cookie a response sets.
func sessionSetCookie(t *testing.T, a answer) *http.Cookie {
	t.Helper()
	for _, c := range a.Cookies() {
		if c.Name == sessionCookie {
			return c
		}
	}
	t.Fatalf("%v: no %s cookie set", a, sessionCookie)
	return nil
}

// TestAccountAPI walks an account through the whole HTTP surface:
// sign-up, who-am-I, sign-in, password change (which ends the other
// sessions), sign-out.
func TestAccountAPI(t *testing.T) {
	s := natstest.Start(t)
	startAccounts(t, s, "", nil)
	gw := startIDGateway(t, s, nil)
	first := newPage(t)

	a := first.mustPost(gw.base, "/api/register", map[string]string{"name": "Alice", "password": password}, http.StatusCreated)
	if got := a.json(); got["name"] != "Alice" || got["auth"] != "account" || got["admin"] != false {
		t.Errorf("register answered %v", got)
	}
	c := sessionSetCookie(t, a)
	if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Secure || c.MaxAge < 3600 || len(c.Value) < 40 {
		t.Errorf("session cookie %+v: want HttpOnly, SameSite=Lax, Path=/, not Secure, a Max-Age and a long token", c)
	}
	if me := first.get(gw.base, "/api/me"); me.StatusCode != http.StatusOK || me.json()["name"] != "Alice" {
		t.Errorf("GET /api/me after sign-up: %v", me)
	}
	if a := newPage(t).post(gw.base, "/api/register", map[string]string{"name": "alice", "password": password}); a.StatusCode != http.StatusConflict || a.json()["code"] != "name_taken" {
		t.Errorf("alice beside Alice: %v, want 409 name_taken", a)
	}
	for _, tc := range []struct {
		name, password string
		code           string
	}{{"Bob", "short", "invalid"}, {"a.b", password, "invalid"}, {"System", password, "reserved"}} {
		if a := newPage(t).post(gw.base, "/api/register", map[string]string{"name": tc.name, "password": tc.password}); a.StatusCode != http.StatusBadRequest || a.json()["code"] != tc.code {
			t.Errorf("register %s/%s: %v, want 400 %s", tc.name, tc.password, a, tc.code)
		}
	}

	second := newPage(t)
	if a := second.get(gw.base, "/api/me"); a.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /api/me without a session: %v, want 401", a)
	}
	a = second.mustPost(gw.base, "/api/login", map[string]string{"name": "alice", "password": password}, http.StatusOK)
	if got := a.json(); got["name"] != "Alice" {
		t.Errorf("login as alice answered %v, want the account's own spelling", got)
	}
	sessionSetCookie(t, a)

	// A password change needs the current password, and ends every other
	// session: the first page is signed out, the second stays in.
	if a := second.post(gw.base, "/api/password", map[string]string{"current": "wrong password", "password": "new password 1"}); a.StatusCode != http.StatusForbidden || a.json()["code"] != "wrong_password" {
		t.Errorf("password change with a wrong current password: %v, want 403 wrong_password", a)
	}
	second.mustPost(gw.base, "/api/password", map[string]string{"current": password, "password": "new password 1"}, http.StatusOK)
	idWaitFor(t, "the other session ended", func() (bool, string) {
		a := first.get(gw.base, "/api/me")
		return a.StatusCode == http.StatusUnauthorized, a.String()
	})
	if a := second.get(gw.base, "/api/me"); a.StatusCode != http.StatusOK {
		t.Errorf("the session that changed the password: %v, want still signed in", a)
	}
	if a := newPage(t).post(gw.base, "/api/login", map[string]string{"name": "alice", "password": password}); a.StatusCode != http.StatusUnauthorized {
		t.Errorf("login with the old password: %v, want 401", a)
	}

	a = second.mustPost(gw.base, "/api/logout", map[string]any{}, http.StatusOK)
	if c := sessionSetCookie(t, a); c.MaxAge >= 0 || c.Value != "" {
		t.Errorf("logout left the cookie: %+v", c)
	}
	if a := second.get(gw.base, "/api/me"); a.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /api/me after logout: %v, want 401", a)
	}
	if a := second.post(gw.base, "/api/password", map[string]string{"current": "new password 1", "password": "new password 2"}); a.StatusCode != http.StatusUnauthorized {
		t.Errorf("password change signed out: %v, want 401", a)
	}
	// Logging out without a session is no error.
	newPage(t).mustPost(gw.base, "/api/logout", map[string]any{}, http.StatusOK)
}

// TestLoginSameAnswerForUnknownName: a wrong password and a name that does
// not exist get the same status and the same words.
func TestLoginSameAnswerForUnknownName(t *testing.T) {
	s := natstest.Start(t)
	startAccounts(t, s, "", nil)
	gw := startIDGateway(t, s, nil)
	newPage(t).register(gw.base, "alice", password)
	wrong := newPage(t).post(gw.base, "/api/login", map[string]string{"name": "alice", "password": "not the password"})
	unknown := newPage(t).post(gw.base, "/api/login", map[string]string{"name": "nobody", "password": "not the password"})
	if wrong.StatusCode != http.StatusUnauthorized || unknown.StatusCode != wrong.StatusCode || string(unknown.body) != string(wrong.body) {
		t.Errorf("wrong password: %v\nunknown name: %v\nwant the same 401", wrong, unknown)
	}
	for _, a := range []answer{wrong, unknown} {
		for _, c := range a.Cookies() {
			t.Errorf("a refused login set cookie %s", c.Name)
		}
	}
}

// TestLoginRateLimited: failed sign-ins beyond the accounts service's
// limit get 429 with Retry-After, even with the right password.
func TestLoginRateLimited(t *testing.T) {
	s := natstest.Start(t)
	startAccounts(t, s, "", func(c *accounts.Config) { c.LoginNameLimit = 3 })
	gw := startIDGateway(t, s, nil)
	newPage(t).register(gw.base, "alice", password)
	for i := range 3 {
		if a := newPage(t).post(gw.base, "/api/login", map[string]string{"name": "alice", "password": "guess " + strconv.Itoa(i) + "xxxx"}); a.StatusCode != http.StatusUnauthorized {
			t.Fatalf("guess %d: %v, want 401", i, a)
		}
	}
	a := newPage(t).post(gw.base, "/api/login", map[string]string{"name": "alice", "password": password})
	retry, err := strconv.Atoi(a.Header.Get("Retry-After"))
	if a.StatusCode != http.StatusTooManyRequests || a.json()["code"] != "rate_limited" || err != nil || retry < 1 {
		t.Fatalf("sign-in after 3 failures: %v, Retry-After %q; want 429 rate_limited with Retry-After seconds", a, a.Header.Get("Retry-After"))
	}
}

// TestSecureCookie: behind HTTPS the cookie is Secure.
func TestSecureCookie(t *testing.T) {
	s := natstest.Start(t)
	startAccounts(t, s, "", nil)
	gw := startIDGateway(t, s, func(c *Config) { c.SecureCookies = true })
	a := newPage(t).mustPost(gw.base, "/api/register", map[string]string{"name": "alice", "password": password}, http.StatusCreated)
	if c := sessionSetCookie(t, a); !c.Secure || !c.HttpOnly {
		t.Errorf("cookie %+v, want Secure and HttpOnly", c)
	}
}

// TestAccountAPIRefusesForgery: state-changing requests come as JSON from
// the gateway's own origin (or an allowed one), within a size limit.
func TestAccountAPIRefusesForgery(t *testing.T) {
	s := natstest.Start(t)
	startAccounts(t, s, "", nil)
	gw := startIDGateway(t, s, func(c *Config) { c.AllowedOrigins = []string{"*.example.org"} })
	p := newPage(t)
	body := `{"name":"alice","password":"` + password + `"}`
	send := func(origin, contentType, body string, header ...string) answer {
		req, _ := http.NewRequest(http.MethodPost, gw.base+"/api/register", strings.NewReader(body))
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		return p.do(req)
	}
	for _, tc := range []struct {
		name, origin, contentType, body string
		header                          []string
		want                            int
	}{
		{"cross-origin", "https://evil.example.com", "application/json", body, nil, http.StatusForbidden},
		{"null origin", "null", "application/json", body, nil, http.StatusForbidden},
		{"cross-site fetch without origin", "", "application/json", body, []string{"Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		{"form", gw.base, "application/x-www-form-urlencoded", "name=alice&password=x", nil, http.StatusUnsupportedMediaType},
		{"text", gw.base, "text/plain", body, nil, http.StatusUnsupportedMediaType},
		{"no content type", gw.base, "", body, nil, http.StatusUnsupportedMediaType},
		{"too big", gw.base, "application/json", `{"name":"alice","password":"` + strings.Repeat("x", 10<<10) + `"}`, nil, http.StatusRequestEntityTooLarge},
		{"not JSON", gw.base, "application/json", `name=alice`, nil, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if a := send(tc.origin, tc.contentType, tc.body, tc.header...); a.StatusCode != tc.want {
				t.Errorf("%v, want %d", a, tc.want)
			}
		})
	}
	if p.session(gw.base) != "" {
		t.Fatal("a refused request signed in")
	}
	if a := send("https://chat.example.org", "application/json", body); a.StatusCode != http.StatusCreated {
		t.Errorf("from an allowed origin: %v, want 201", a)
	}
	if a := p.get(gw.base, "/api/login"); a.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /api/login: %v, want 405", a)
	}
}

// TestAccountAPIWithoutAccountsService: 503 with Retry-After, not a hang.
func TestAccountAPIWithoutAccountsService(t *testing.T) {
	s := natstest.Start(t)
	gw := startIDGateway(t, s, func(c *Config) { c.AuthTimeout = time.Second })
	a := newPage(t).post(gw.base, "/api/login", map[string]string{"name": "alice", "password": password})
	if a.StatusCode != http.StatusServiceUnavailable || a.Header.Get("Retry-After") == "" {
		t.Errorf("login with no accounts service: %v, Retry-After %q; want 503 with Retry-After", a, a.Header.Get("Retry-After"))
	}
	// Guests chat on: no name is registered while no accounts service ever ran.
	c := connect(t, gw.base, "/ws/chat/lobby/alice", nil)
	c.next("history")
}
