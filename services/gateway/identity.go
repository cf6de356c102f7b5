package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natschat/chat/shared/chat"
)

// Who may speak as a name. A WebSocket for /ws/chat/<room>/<user> is one of:
//
//   - a token connection: ?token= carries an embedding app's JWT for user;
//   - an account connection: the session cookie is a live session of the
//     account called user (in any letter case; the account's own spelling
//     is the author's name);
//   - a guest: user is not registered (in any letter case), guests are
//     allowed, and the name is not reserved.
//
// Anything else is refused with 403 and the reason, before the upgrade.
// Sessions, registered names and mutes come from the accounts service's
// buckets, watched (directory), so a check costs no round trip; a session
// that ends closes its sockets, and a name that gets registered closes the
// guests using it.

// sessionCookie holds the session token.
const sessionCookie = "chat_session"

// maxSessionToken bounds a cookie's value: tokens are 43 characters.
const maxSessionToken = 128

// endedMemory is how long a session that ended is remembered, to close a
// socket whose upgrade checked it just before the end arrived.
const endedMemory = time.Minute

// identity is how a client is known.
type identity struct {
	name string // the author's name
	auth string // chat.AuthAccount, chat.AuthGuest or chat.AuthToken
	// sessionKey and token are those of an account connection's session;
	// token is kept for the requests made on the user's behalf (auth.mute)
	// and never logged.
	sessionKey string
	token      string
}

// refusal is an HTTP answer refusing a request, with its reason.
type refusal struct {
	status     int
	reason     string
	retryAfter int // seconds; 0: no Retry-After
}

func refuse(status int, reason string) *refusal { return &refusal{status: status, reason: reason} }

func (f *refusal) write(w http.ResponseWriter) {
	if f.retryAfter > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(f.retryAfter))
	}
	writeText(w, f.status, f.reason)
}

// directory is the gateway's view of the accounts service: its three
// buckets, watched, and its auth.* requests.
type directory struct {
	nc       *nats.Conn
	timeout  time.Duration
	log      *slog.Logger
	now      func() time.Time
	sessions *watchedBucket[chat.Session]
	accounts *watchedBucket[chat.Account]
	mutes    *watchedBucket[chat.Mute]
	// admins are GATEWAY_ADMINS, lower-case.
	admins map[string]bool
	// lookups bounds the auth.session requests in flight (cache misses).
	lookups chan struct{}

	mu    sync.Mutex
	ended map[string]time.Time // session keys deleted lately, and when
	// bySession are the account connections by session key, guests the
	// guest connections by account key: whom a change closes.
	bySession map[string]map[*client]struct{}
	guests    map[string]map[*client]struct{}

	stop context.CancelFunc
	wg   sync.WaitGroup
}

func newDirectory(nc *nats.Conn, js jetstream.JetStream, cfg Config, log *slog.Logger) *directory {
	d := &directory{
		nc: nc, timeout: cfg.AuthTimeout, log: log, now: time.Now,
		sessions: newWatchedBucket[chat.Session](chat.SessionsBucket, js, log),
		accounts: newWatchedBucket[chat.Account](chat.AccountsBucket, js, log),
		mutes:    newWatchedBucket[chat.Mute](chat.MutesBucket, js, log),
		admins:   make(map[string]bool),
		lookups:  make(chan struct{}, 32),
		ended:    make(map[string]time.Time),

		bySession: make(map[string]map[*client]struct{}),
		guests:    make(map[string]map[*client]struct{}),
	}
	for _, a := range cfg.Admins {
		if a = strings.TrimSpace(a); a != "" {
			d.admins[chat.AccountKey(a)] = true
		}
	}
	return d
}

// start watches the buckets until close.
func (d *directory) start() {
	ctx, cancel := context.WithCancel(context.Background())
	d.stop = cancel
	d.wg.Add(3)
	go func() { defer d.wg.Done(); d.sessions.run(ctx) }()
	go func() { defer d.wg.Done(); d.accounts.run(ctx) }()
	go func() { defer d.wg.Done(); d.mutes.run(ctx) }()
}

func (d *directory) close() {
	if d.stop != nil {
		d.stop()
	}
	d.wg.Wait()
}

// attach registers c to be closed when its session ends or, for a guest,
// when its name gets registered. It reports false if that happened
// already, while c's upgrade was being checked.
func (d *directory) attach(c *client) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch c.ident.auth {
	case chat.AuthAccount:
		if _, ended := d.ended[c.ident.sessionKey]; ended {
			return false
		}
		addTo(d.bySession, c.ident.sessionKey, c)
	case chat.AuthGuest:
		// Under d.mu, which onRegistered takes after the copy has the
		// name: either this sees the name or that sees c.
		ctx, cancel := context.WithTimeout(context.Background(), d.timeout)
		defer cancel()
		if _, registered, _ := d.account(ctx, c.user); registered {
			return false
		}
		addTo(d.guests, chat.AccountKey(c.user), c)
	}
	return true
}

// detach undoes attach.
func (d *directory) detach(c *client) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch c.ident.auth {
	case chat.AuthAccount:
		removeFrom(d.bySession, c.ident.sessionKey, c)
	case chat.AuthGuest:
		removeFrom(d.guests, chat.AccountKey(c.user), c)
	}
}

// sessionEnded closes the connections of a session that ended, and
// remembers the end for a while (see attach).
func (d *directory) sessionEnded(key string) {
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	for k, at := range d.ended {
		if now.Sub(at) > endedMemory {
			delete(d.ended, k)
		}
	}
	d.ended[key] = now
	for c := range d.bySession[key] {
		c.close(reasonSessionEnded)
	}
}

// registered closes the guests using a name (an account key) that was
// just registered.
func (d *directory) registered(key string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for c := range d.guests[key] {
		c.close(reasonNameRegistered)
	}
}

func addTo(m map[string]map[*client]struct{}, key string, c *client) {
	if m[key] == nil {
		m[key] = make(map[*client]struct{})
	}
	m[key][c] = struct{}{}
}

func removeFrom(m map[string]map[*client]struct{}, key string, c *client) {
	delete(m[key], c)
	if len(m[key]) == 0 {
		delete(m, key)
	}
}

// request asks the accounts service; a failure to reach it is an
// unavailable reply.
func (d *directory) request(ctx context.Context, subject string, req any) chat.AuthReply {
	data, err := json.Marshal(req)
	if err != nil {
		return chat.AuthReply{Code: chat.CodeInvalid, Error: "bad request"}
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	msg, err := d.nc.RequestWithContext(ctx, subject, data)
	var reply chat.AuthReply
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return chat.AuthReply{Code: chat.CodeUnavailable, Error: "the accounts service is not running: try again later", RetryAfter: 5}
	case err != nil:
		d.log.Warn("accounts request", "subject", subject, "err", err)
		return chat.AuthReply{Code: chat.CodeUnavailable, Error: "the accounts service did not answer: try again", RetryAfter: 2}
	case json.Unmarshal(msg.Data, &reply) != nil:
		return chat.AuthReply{Code: chat.CodeUnavailable, Error: "the accounts service sent a malformed reply", RetryAfter: 2}
	}
	if !reply.OK && reply.Code == "" {
		reply.Code = chat.CodeUnavailable
	}
	return reply
}

// session returns the live session of token, nil if there is none. The
// watched copy answers; only a token it does not know is checked with
// auth.session, since the watch may be a moment behind a sign-in on
// another gateway. err is set only when neither could answer.
func (d *directory) session(ctx context.Context, token string) (*chat.Session, error) {
	if token == "" || len(token) > maxSessionToken {
		return nil, nil
	}
	key := chat.SessionKey(token)
	s, found, err := d.sessions.lookup(ctx, key)
	if err == nil && found {
		if !d.now().Before(s.ExpiresAt) {
			return nil, nil
		}
		return &s, nil
	}
	select {
	case d.lookups <- struct{}{}:
		defer func() { <-d.lookups }()
	default:
		// A flood of unknown tokens: the copy's answer stands.
		if err != nil {
			return nil, err
		}
		return nil, nil
	}
	reply := d.request(ctx, chat.AuthSession, chat.TokenRequest{Token: token})
	switch {
	case reply.OK && reply.Session != nil && d.now().Before(reply.Session.ExpiresAt):
		return reply.Session, nil
	case reply.Code == chat.CodeUnavailable && err != nil:
		return nil, errors.New(reply.Error)
	}
	return nil, nil
}

// account returns the registered account called name (in any case).
func (d *directory) account(ctx context.Context, name string) (chat.Account, bool, error) {
	return d.accounts.lookup(ctx, chat.AccountKey(name))
}

// mutedUntil reports until when user is muted in room, from the watched
// copy only: it is asked on every message. (A mute set while the copy
// loads applies once it has.)
func (d *directory) mutedUntil(room, user string) (time.Time, bool) {
	m, found := d.mutes.peek(chat.MuteKey(room, user))
	if !found || !d.now().Before(m.Until) {
		return time.Time{}, false
	}
	return m.Until, true
}

// isAdmin: a signed-in account that the accounts service made an admin,
// or an account or token user listed in GATEWAY_ADMINS. Guests never are,
// whatever their name.
func (d *directory) isAdmin(id identity) bool {
	switch id.auth {
	case chat.AuthAccount:
		if d.admins[chat.AccountKey(id.name)] {
			return true
		}
		a, found := d.accounts.peek(chat.AccountKey(id.name))
		return found && a.Admin
	case chat.AuthToken:
		return d.admins[chat.AccountKey(id.name)]
	}
	return false
}

// sessionToken reads the session cookie.
func sessionToken(r *http.Request) string {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return ""
	}
	return c.Value
}

// identify decides who the WebSocket request r for user in room is, or
// refuses it.
func (g *Gateway) identify(r *http.Request, room, user string) (identity, *refusal) {
	if chat.IsReserved(user) {
		return identity{}, refuse(http.StatusForbidden, fmt.Sprintf("%s is a reserved name: pick another", user))
	}
	if raw := r.URL.Query().Get("token"); raw != "" {
		if f := g.tokens.verify(raw, room, user); f != nil {
			return identity{}, f
		}
		return identity{name: user, auth: chat.AuthToken}, nil
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.AuthTimeout)
	defer cancel()
	unavailable := &refusal{status: http.StatusServiceUnavailable, reason: "accounts unavailable: try again", retryAfter: 2}
	token := sessionToken(r)
	s, err := g.dir.session(ctx, token)
	if err != nil {
		return identity{}, unavailable
	}
	if s != nil && strings.EqualFold(s.Name, user) {
		return identity{name: s.Name, auth: chat.AuthAccount, sessionKey: chat.SessionKey(token), token: token}, nil
	}
	a, registered, err := g.dir.account(ctx, user)
	switch {
	case err != nil:
		return identity{}, unavailable
	case registered && s != nil:
		return identity{}, refuse(http.StatusForbidden, fmt.Sprintf("%s is registered to someone else (you are signed in as %s)", a.Name, s.Name))
	case registered:
		return identity{}, refuse(http.StatusForbidden, fmt.Sprintf("%s is a registered name: sign in as %s to use it", a.Name, a.Name))
	case !g.cfg.Guests:
		return identity{}, refuse(http.StatusForbidden, "guests may not chat here: sign in or sign up")
	}
	return identity{name: user, auth: chat.AuthGuest}, nil
}

// startIdentity sets up tokens and the watched buckets.
func (g *Gateway) startIdentity() error {
	var err error
	if g.tokens, err = newTokenVerifier(g.cfg.JWTSecret, g.cfg.JWTPublicKey); err != nil {
		return err
	}
	g.dir = newDirectory(g.nc, g.js, g.cfg, g.log)
	g.dir.sessions.onDelete = g.dir.sessionEnded
	g.dir.accounts.onPut = func(key string, _ chat.Account, fresh bool) {
		if fresh {
			g.dir.registered(key)
		}
	}
	g.dir.start()
	return nil
}
