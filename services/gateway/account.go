package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/natschat/chat/shared/chat"
)

// The account API: sign-up, sign-in, sign-out, password change and "who am
// I", each a request to the accounts service over NATS. The session token
// lives in an HttpOnly cookie, so the page's scripts never see it.
//
// Requests that change something are accepted only as JSON (a form cannot
// send that cross-site without a CORS preflight, which is never granted)
// and only from this gateway's own origin or GATEWAY_ALLOWED_ORIGINS: the
// two defences against cross-site request forgery.

// maxAccountBody bounds a request body: a name and two passwords of at
// most chat.MaxPasswordLen bytes each fit with room to spare.
const maxAccountBody = 8 << 10

// copyWait bounds how long a change made through this gateway (a sign-in,
// a mute) waits for the gateway's watched copy to have it: the WebSocket
// that follows at once is let in without a round trip, the mute holds as
// soon as the admin is told.
const copyWait = time.Second

func (g *Gateway) accountRoutes() {
	g.mux.HandleFunc("POST /api/register", g.serveRegister)
	g.mux.HandleFunc("POST /api/login", g.serveLogin)
	g.mux.HandleFunc("POST /api/logout", g.serveLogout)
	g.mux.HandleFunc("POST /api/password", g.servePassword)
	g.mux.HandleFunc("GET /api/me", g.serveMe)
}

// me is the answer of GET /api/me, sign-up, sign-in and password change.
type me struct {
	Name      string    `json:"name"`
	Admin     bool      `json:"admin"`
	Auth      string    `json:"auth"`
	ExpiresAt time.Time `json:"expires_at"`
}

func (g *Gateway) serveRegister(w http.ResponseWriter, r *http.Request) {
	g.signIn(w, r, chat.AuthRegister, http.StatusCreated)
}

func (g *Gateway) serveLogin(w http.ResponseWriter, r *http.Request) {
	g.signIn(w, r, chat.AuthLogin, http.StatusOK)
}

func (g *Gateway) signIn(w http.ResponseWriter, r *http.Request, subject string, status int) {
	var req struct {
		Name     string `json:"name"`
		Password string `json:"password"`
	}
	if !g.readJSON(w, r, &req) {
		return
	}
	reply := g.dir.request(r.Context(), subject, chat.Credentials{Name: req.Name, Password: req.Password, Addr: g.addrString(r)})
	if !reply.OK || reply.Session == nil || reply.Session.Token == "" {
		writeAuthError(w, reply)
		return
	}
	s := reply.Session
	g.awaitCopy(r.Context(), chat.SessionKey(s.Token), chat.AccountKey(s.Name))
	g.setSessionCookie(w, s.Token, s.ExpiresAt)
	writeJSON(w, status, g.meOf(*s))
}

// awaitCopy waits a moment for the watched copies to have a session that
// was just created (and its account), so that this gateway knows it when
// the page's WebSocket comes.
func (g *Gateway) awaitCopy(ctx context.Context, sessionKey, accountKey string) {
	ctx, cancel := context.WithTimeout(ctx, copyWait)
	defer cancel()
	// A copy not synced yet is not used: lookups ask the bucket.
	g.dir.sessions.kick()
	g.dir.accounts.kick()
	if g.dir.sessions.synced() {
		g.dir.sessions.waitFor(ctx, func(v map[string]chat.Session) bool { _, ok := v[sessionKey]; return ok })
	}
	if g.dir.accounts.synced() {
		g.dir.accounts.waitFor(ctx, func(v map[string]chat.Account) bool { _, ok := v[accountKey]; return ok })
	}
}

func (g *Gateway) serveLogout(w http.ResponseWriter, r *http.Request) {
	var req struct{}
	if !g.readJSON(w, r, &req) {
		return
	}
	if token := sessionToken(r); token != "" {
		reply := g.dir.request(r.Context(), chat.AuthLogout, chat.TokenRequest{Token: token})
		if !reply.OK {
			// The session may live on: say so rather than forget the
			// cookie and pretend.
			writeAuthError(w, reply)
			return
		}
	}
	g.clearSessionCookie(w)
	writeJSON(w, http.StatusOK, struct {
		OK bool `json:"ok"`
	}{true})
}

func (g *Gateway) servePassword(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Current  string `json:"current"`
		Password string `json:"password"`
	}
	if !g.readJSON(w, r, &req) {
		return
	}
	token := sessionToken(r)
	if token == "" {
		writeAuthError(w, chat.AuthReply{Code: chat.CodeUnauthorized, Error: "not signed in"})
		return
	}
	reply := g.dir.request(r.Context(), chat.AuthPassword, chat.PasswordChange{Token: token, Current: req.Current, Password: req.Password, Addr: g.addrString(r)})
	if !reply.OK {
		writeAuthError(w, reply)
		return
	}
	s, err := g.dir.session(r.Context(), token)
	if err != nil || s == nil {
		writeAuthError(w, chat.AuthReply{Code: chat.CodeUnauthorized, Error: "signed out meanwhile: sign in with the new password"})
		return
	}
	writeJSON(w, http.StatusOK, g.meOf(*s))
}

func (g *Gateway) serveMe(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	s, err := g.dir.session(r.Context(), sessionToken(r))
	switch {
	case err != nil:
		writeAuthError(w, chat.AuthReply{Code: chat.CodeUnavailable, Error: "accounts unavailable: try again", RetryAfter: 2})
	case s == nil:
		writeAuthError(w, chat.AuthReply{Code: chat.CodeUnauthorized, Error: "not signed in"})
	default:
		writeJSON(w, http.StatusOK, g.meOf(*s))
	}
}

func (g *Gateway) meOf(s chat.Session) me {
	id := identity{name: s.Name, auth: chat.AuthAccount}
	return me{Name: s.Name, Admin: s.Admin || g.dir.isAdmin(id), Auth: chat.AuthAccount, ExpiresAt: s.ExpiresAt.UTC()}
}

// readJSON admits a state-changing request (same origin, a JSON body of
// bounded size) and decodes its body into dst, or answers the refusal.
func (g *Gateway) readJSON(w http.ResponseWriter, r *http.Request, dst any) bool {
	w.Header().Set("Cache-Control", "no-store")
	if !g.sameOrigin(r) {
		writeJSONError(w, http.StatusForbidden, "cross-origin request refused")
		return false
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeJSONError(w, http.StatusUnsupportedMediaType, "send a JSON body with Content-Type: application/json")
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAccountBody))
	if err := dec.Decode(dst); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeJSONError(w, http.StatusRequestEntityTooLarge, "request body too large")
			return false
		}
		writeJSONError(w, http.StatusBadRequest, "malformed JSON body")
		return false
	}
	return true
}

// sameOrigin reports whether r comes from a page of this gateway (or of an
// allowed origin). Browsers send Origin with every POST; a request without
// one is not a browser's cross-site request, unless Sec-Fetch-Site says so.
func (g *Gateway) sameOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return r.Header.Get("Sec-Fetch-Site") != "cross-site"
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false // "null" from sandboxed frames and file pages
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	host := strings.ToLower(u.Host)
	for _, p := range g.cfg.AllowedOrigins {
		if ok, _ := path.Match(strings.ToLower(strings.TrimSpace(p)), host); ok {
			return true
		}
	}
	return false
}

// addrString is the client's address for the accounts service's
// per-address limits.
func (g *Gateway) addrString(r *http.Request) string {
	if a := g.clientAddr(r); a.IsValid() {
		return a.String()
	}
	return ""
}

func (g *Gateway) setSessionCookie(w http.ResponseWriter, token string, expires time.Time) {
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: token, Path: "/",
		MaxAge:   max(1, int(time.Until(expires).Seconds())),
		HttpOnly: true, Secure: g.cfg.SecureCookies, SameSite: http.SameSiteLaxMode,
	})
}

func (g *Gateway) clearSessionCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: g.cfg.SecureCookies, SameSite: http.SameSiteLaxMode,
	})
}

// authStatus is the HTTP status of a refusal of the accounts service.
func authStatus(code chat.Code) int {
	switch code {
	case chat.CodeInvalid, chat.CodeReserved:
		return http.StatusBadRequest
	case chat.CodeUnauthorized:
		return http.StatusUnauthorized
	case chat.CodeWrongPassword, chat.CodeForbidden:
		return http.StatusForbidden
	case chat.CodeNameTaken:
		return http.StatusConflict
	case chat.CodeRateLimited:
		return http.StatusTooManyRequests
	default:
		return http.StatusServiceUnavailable
	}
}

// writeAuthError answers a refusal: {"error","code"} with its status, and
// Retry-After when the reply says when to try again.
func writeAuthError(w http.ResponseWriter, reply chat.AuthReply) {
	if reply.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(reply.RetryAfter))
	}
	msg := reply.Error
	if msg == "" {
		msg = string(reply.Code)
	}
	writeJSON(w, authStatus(reply.Code), struct {
		Error string    `json:"error"`
		Code  chat.Code `json:"code"`
	}{msg, reply.Code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
