package accounts

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"time"

	"github.com/natschat/chat/services/accounts/internal/store"
	"github.com/natschat/chat/shared/chat"
)

// service answers the auth.* requests.
type service struct {
	cfg  Config
	st   *store.Store
	proj *projection
	log  *slog.Logger
	now  func() time.Time
	// admins holds the account keys of cfg.Admins.
	admins map[string]bool
	// dummyHash is checked against the password of a login for an unknown
	// name, so that it takes as long as one for a known name.
	dummyHash string
}

func newService(cfg Config, st *store.Store, proj *projection, log *slog.Logger) *service {
	s := &service{cfg: cfg, st: st, proj: proj, log: log, now: proj.now, admins: map[string]bool{}}
	for _, name := range cfg.Admins {
		s.admins[chat.AccountKey(name)] = true
	}
	s.dummyHash = hashPassword(newToken())
	return s
}

// refusal is an answer the caller is meant to see, with its code. Any other
// error is an outage, answered with chat.CodeUnavailable.
type refusal struct {
	code       chat.Code
	msg        string
	retryAfter int
}

func (r *refusal) Error() string { return r.msg }

func refuse(code chat.Code, format string, args ...any) error {
	return &refusal{code: code, msg: fmt.Sprintf(format, args...)}
}

// errWrongCredentials is the one answer to a wrong password and an unknown
// name alike.
var errWrongCredentials = refuse(chat.CodeUnauthorized, "wrong name or password")

var errNoSession = refuse(chat.CodeUnauthorized, "not signed in, or the session has ended: sign in again")

// handler answers the request of one auth.* subject.
type handler func(ctx context.Context, data []byte) (chat.AuthReply, error)

func (s *service) handlers() map[string]handler {
	return map[string]handler{
		chat.AuthRegister: s.register,
		chat.AuthLogin:    s.login,
		chat.AuthLogout:   s.logout,
		chat.AuthPassword: s.password,
		chat.AuthSession:  s.session,
		chat.AuthMute:     s.mute,
		chat.AuthUnmute:   s.unmute,
	}
}

func decode(data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return refuse(chat.CodeInvalid, "the request is not valid JSON: %v", err)
	}
	return nil
}

// tokenBytes is the size of a session token: 256 random bits.
const tokenBytes = 32

// newToken returns a fresh session token, URL-safe base64 (43 characters),
// so it fits a cookie as it is.
func newToken() string {
	b := make([]byte, tokenBytes)
	rand.Read(b) // never fails (crypto/rand panics rather)
	return base64.RawURLEncoding.EncodeToString(b)
}

// validToken reports whether token could be one newToken made, so that
// garbage is refused without a database read.
func validToken(token string) bool {
	b, err := base64.RawURLEncoding.DecodeString(token)
	return err == nil && len(b) == tokenBytes
}

// addrKey is the rate-limit key of a client address: an IPv4 address, or
// the /64 network of an IPv6 address (one host usually has a whole /64).
// An empty addr has no key; anything but an address (with or without a
// port) is refused.
func addrKey(addr string) (string, error) {
	if addr == "" {
		return "", nil
	}
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		ap, perr := netip.ParseAddrPort(addr)
		if perr != nil {
			return "", refuse(chat.CodeInvalid, "addr %.64q is not an IP address", addr)
		}
		ip = ap.Addr()
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is4() {
		return "addr:" + ip.String(), nil
	}
	return "addr:" + netip.PrefixFrom(ip, 64).Masked().String(), nil
}

// limit is one rate limit an attempt counts against.
type limit struct {
	key  string
	max  int
	what string // "for this name", for the refusal
}

// count counts an attempt against every limit and refuses it if one is
// exceeded, saying when to try again. It counts before the attempt is
// judged, so a burst of concurrent guesses cannot slip past the limit;
// uncount takes a successful attempt back.
func (s *service) count(ctx context.Context, limits ...limit) error {
	var worst *refusal
	for _, l := range limits {
		if l.key == "" {
			continue
		}
		now := s.now()
		n, start, err := s.st.Hit(ctx, l.key, now, s.cfg.LimitWindow)
		if err != nil {
			return err
		}
		if n <= l.max {
			continue
		}
		wait := max(1, int(math.Ceil(start.Add(s.cfg.LimitWindow).Sub(now).Seconds())))
		if worst == nil || wait > worst.retryAfter {
			worst = &refusal{code: chat.CodeRateLimited, retryAfter: wait,
				msg: fmt.Sprintf("too many attempts %s: try again in %d seconds", l.what, wait)}
		}
	}
	if worst != nil {
		return worst
	}
	return nil
}

func (s *service) uncount(ctx context.Context, limits ...limit) {
	for _, l := range limits {
		if l.key == "" {
			continue
		}
		if err := s.st.Unhit(ctx, l.key); err != nil {
			s.log.Warn("uncount attempt", "key", l.key, "err", err)
		}
	}
}

func (s *service) loginLimits(name string, addr string) []limit {
	return []limit{
		{key: "name:" + chat.AccountKey(name), max: s.cfg.LoginNameLimit, what: "for this name"},
		{key: addr, max: s.cfg.LoginAddrLimit, what: "from your address"},
	}
}

func (s *service) register(ctx context.Context, data []byte) (chat.AuthReply, error) {
	var req chat.Credentials
	if err := decode(data, &req); err != nil {
		return chat.AuthReply{}, err
	}
	if err := chat.ValidateName("user", req.Name); err != nil {
		return chat.AuthReply{}, refuse(chat.CodeInvalid, "%v", err)
	}
	if chat.IsReserved(req.Name) {
		return chat.AuthReply{}, refuse(chat.CodeReserved, "the name %s is reserved", req.Name)
	}
	if err := chat.ValidatePassword(req.Password); err != nil {
		return chat.AuthReply{}, refuse(chat.CodeInvalid, "%v", err)
	}
	addr, err := addrKey(req.Addr)
	if err != nil {
		return chat.AuthReply{}, err
	}
	if addr != "" {
		// Every sign-up counts, taken or not: probing for names and
		// grabbing them in bulk are both what this limit is for.
		if err := s.count(ctx, limit{key: "register:" + addr, max: s.cfg.RegisterAddrLimit, what: "to sign up from your address"}); err != nil {
			return chat.AuthReply{}, err
		}
	}
	now := s.now()
	a := store.Account{
		Name: req.Name, PasswordHash: hashPassword(req.Password), Admin: s.admins[chat.AccountKey(req.Name)],
		CreatedAt: now, PasswordChangedAt: now,
	}
	if err := s.st.CreateAccount(ctx, a); errors.Is(err, store.ErrNameTaken) {
		return chat.AuthReply{}, refuse(chat.CodeNameTaken, "the name %s is taken", req.Name)
	} else if err != nil {
		return chat.AuthReply{}, err
	}
	// The gateways protect the name from the moment its key appears. If
	// this write fails the account still exists; the reconcile puts it.
	if err := s.proj.sync(ctx, s.proj.accounts, chat.AccountKey(a.Name)); err != nil {
		s.log.Error("publish new account", "user", a.Name, "err", err)
	}
	a, err = s.st.Account(ctx, a.Name) // as stored, with its times
	if err != nil {
		return chat.AuthReply{}, err
	}
	s.log.Info("account registered", "user", a.Name, "admin", a.Admin)
	return s.signIn(ctx, a)
}

func (s *service) login(ctx context.Context, data []byte) (chat.AuthReply, error) {
	var req chat.Credentials
	if err := decode(data, &req); err != nil {
		return chat.AuthReply{}, err
	}
	if err := chat.ValidateName("user", req.Name); err != nil {
		return chat.AuthReply{}, refuse(chat.CodeInvalid, "%v", err)
	}
	if req.Password == "" || len(req.Password) > chat.MaxPasswordLen {
		return chat.AuthReply{}, refuse(chat.CodeInvalid, "a password has 1 to %d bytes", chat.MaxPasswordLen)
	}
	addr, err := addrKey(req.Addr)
	if err != nil {
		return chat.AuthReply{}, err
	}
	// Known and unknown names go the same way from here: the same limits,
	// one password hash, the same refusal.
	limits := s.loginLimits(req.Name, addr)
	if err := s.count(ctx, limits...); err != nil {
		return chat.AuthReply{}, err
	}
	a, err := s.st.Account(ctx, req.Name)
	if errors.Is(err, store.ErrNotFound) {
		checkPassword(s.dummyHash, req.Password)
		return chat.AuthReply{}, errWrongCredentials
	} else if err != nil {
		return chat.AuthReply{}, err
	}
	ok, err := checkPassword(a.PasswordHash, req.Password)
	if err != nil {
		return chat.AuthReply{}, fmt.Errorf("account %s: %w", a.Name, err)
	}
	if !ok {
		return chat.AuthReply{}, errWrongCredentials
	}
	s.uncount(ctx, limits...)
	return s.signIn(ctx, a)
}

// signIn creates a session for a and answers with its token: the only time
// the token leaves the service.
func (s *service) signIn(ctx context.Context, a store.Account) (chat.AuthReply, error) {
	token := newToken()
	now := s.now()
	sess := store.Session{Key: chat.SessionKey(token), AccountKey: a.Key, CreatedAt: now, ExpiresAt: now.Add(s.cfg.SessionTTL)}
	if err := s.st.CreateSession(ctx, sess); err != nil {
		return chat.AuthReply{}, err
	}
	if err := s.proj.sync(ctx, s.proj.sessions, sess.Key); err != nil {
		// The session is valid all the same: a gateway that misses it in
		// the bucket asks auth.session, which puts it there.
		s.log.Warn("publish new session", "user", a.Name, "err", err)
	}
	stored, err := s.st.Session(ctx, sess.Key)
	if errors.Is(err, store.ErrNotFound) {
		// Ended already: a password change of the account raced with
		// this sign-in with the old password.
		return chat.AuthReply{}, errNoSession
	} else if err != nil {
		return chat.AuthReply{}, err
	}
	v := sessionValue(stored)
	v.Token = token
	acc := accountValue(a)
	return chat.AuthReply{OK: true, Account: &acc, Session: &v}, nil
}

// liveSession returns the session of token if it exists and has not
// expired, or errNoSession.
func (s *service) liveSession(ctx context.Context, token string) (store.Session, error) {
	if !validToken(token) {
		return store.Session{}, errNoSession
	}
	sess, err := s.st.Session(ctx, chat.SessionKey(token))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.Session{}, errNoSession
	case err != nil:
		return store.Session{}, err
	case !sess.ExpiresAt.After(s.now()):
		return store.Session{}, refuse(chat.CodeUnauthorized, "the session has expired: sign in again")
	}
	return sess, nil
}

func (s *service) logout(ctx context.Context, data []byte) (chat.AuthReply, error) {
	var req chat.TokenRequest
	if err := decode(data, &req); err != nil {
		return chat.AuthReply{}, err
	}
	if !validToken(req.Token) {
		return chat.AuthReply{OK: true}, nil // no such session: it is ended
	}
	key := chat.SessionKey(req.Token)
	if err := s.st.DeleteSession(ctx, key); err != nil {
		return chat.AuthReply{}, err
	}
	// Until the key is deleted the session still works on the gateways, so
	// a failure here is the caller's to retry.
	if err := s.proj.sync(ctx, s.proj.sessions, key); err != nil {
		return chat.AuthReply{}, err
	}
	return chat.AuthReply{OK: true}, nil
}

func (s *service) session(ctx context.Context, data []byte) (chat.AuthReply, error) {
	var req chat.TokenRequest
	if err := decode(data, &req); err != nil {
		return chat.AuthReply{}, err
	}
	sess, err := s.liveSession(ctx, req.Token)
	if err != nil {
		return chat.AuthReply{}, err
	}
	// The gateway asked because its copy of the bucket lacks the session:
	// maybe the bucket does too (a lost write, a re-created bucket).
	if err := s.proj.sync(ctx, s.proj.sessions, sess.Key); err != nil {
		s.log.Warn("republish session", "user", sess.Name, "err", err)
	}
	v := sessionValue(sess)
	acc := chat.Account{Name: sess.Name, Admin: sess.Admin, CreatedAt: sess.AccountCreatedAt}
	return chat.AuthReply{OK: true, Account: &acc, Session: &v}, nil
}

func (s *service) password(ctx context.Context, data []byte) (chat.AuthReply, error) {
	var req chat.PasswordChange
	if err := decode(data, &req); err != nil {
		return chat.AuthReply{}, err
	}
	sess, err := s.liveSession(ctx, req.Token)
	if err != nil {
		return chat.AuthReply{}, err
	}
	if err := chat.ValidatePassword(req.Password); err != nil {
		return chat.AuthReply{}, refuse(chat.CodeInvalid, "%v", err)
	}
	addr, err := addrKey(req.Addr)
	if err != nil {
		return chat.AuthReply{}, err
	}
	// A stolen session must not become a way to guess the password.
	limits := s.loginLimits(sess.Name, addr)
	if err := s.count(ctx, limits...); err != nil {
		return chat.AuthReply{}, err
	}
	a, err := s.st.Account(ctx, sess.AccountKey)
	if err != nil {
		return chat.AuthReply{}, err
	}
	ok, err := checkPassword(a.PasswordHash, req.Current)
	if err != nil {
		return chat.AuthReply{}, fmt.Errorf("account %s: %w", a.Name, err)
	}
	if !ok {
		return chat.AuthReply{}, refuse(chat.CodeWrongPassword, "the current password is wrong")
	}
	s.uncount(ctx, limits...)
	ended, err := s.st.SetPassword(ctx, a.Key, hashPassword(req.Password), s.now(), sess.Key)
	if err != nil {
		return chat.AuthReply{}, err
	}
	var failed error
	for _, key := range ended {
		if err := s.proj.sync(ctx, s.proj.sessions, key); err != nil {
			failed = err
		}
	}
	s.log.Info("password changed", "user", a.Name, "sessions_ended", len(ended))
	if failed != nil {
		// The password is changed; the other sessions end on the
		// gateways at the next reconcile, or when the caller retries.
		return chat.AuthReply{}, fmt.Errorf("end other sessions: %w", failed)
	}
	acc := accountValue(a)
	return chat.AuthReply{OK: true, Account: &acc}, nil
}

// adminSession returns the session of token if it is an admin's.
func (s *service) adminSession(ctx context.Context, token string) (store.Session, error) {
	sess, err := s.liveSession(ctx, token)
	if err != nil {
		return store.Session{}, err
	}
	if !sess.Admin {
		return store.Session{}, refuse(chat.CodeForbidden, "only admins may mute or unmute")
	}
	return sess, nil
}

func parseMuteTarget(req chat.MuteRequest) error {
	if err := chat.ValidateName("room", req.Room); err != nil {
		return refuse(chat.CodeInvalid, "%v", err)
	}
	if err := chat.ValidateName("user", req.User); err != nil {
		return refuse(chat.CodeInvalid, "%v", err)
	}
	return nil
}

func (s *service) mute(ctx context.Context, data []byte) (chat.AuthReply, error) {
	var req chat.MuteRequest
	if err := decode(data, &req); err != nil {
		return chat.AuthReply{}, err
	}
	by, err := s.adminSession(ctx, req.Token)
	if err != nil {
		return chat.AuthReply{}, err
	}
	if err := parseMuteTarget(req); err != nil {
		return chat.AuthReply{}, err
	}
	d, err := time.ParseDuration(req.Duration)
	if err != nil || d < time.Second || d > s.cfg.MuteMax {
		return chat.AuthReply{}, refuse(chat.CodeInvalid, "duration %.32q: want 1s to %v, e.g. 90s, 10m or 2h", req.Duration, s.cfg.MuteMax)
	}
	user := req.User
	if a, err := s.st.Account(ctx, user); err == nil {
		user = a.Name // the account's own spelling
	} else if !errors.Is(err, store.ErrNotFound) {
		return chat.AuthReply{}, err
	}
	now := s.now()
	m := chat.Mute{Room: req.Room, User: user, By: by.Name, Until: now.Add(d)}
	if err := s.st.PutMute(ctx, m, now); err != nil {
		return chat.AuthReply{}, err
	}
	// Gateways enforce only what is in the bucket, so a mute that did not
	// get there is not in force yet: the admin must hear of it.
	if err := s.proj.sync(ctx, s.proj.mutes, chat.MuteKey(m.Room, m.User)); err != nil {
		return chat.AuthReply{}, err
	}
	stored, err := s.st.Mute(ctx, m.Room, m.User)
	if err != nil {
		return chat.AuthReply{}, err
	}
	s.log.Info("user muted", "room", m.Room, "user", m.User, "by", m.By, "until", stored.Until)
	return chat.AuthReply{OK: true, Mute: &stored}, nil
}

func (s *service) unmute(ctx context.Context, data []byte) (chat.AuthReply, error) {
	var req chat.MuteRequest
	if err := decode(data, &req); err != nil {
		return chat.AuthReply{}, err
	}
	by, err := s.adminSession(ctx, req.Token)
	if err != nil {
		return chat.AuthReply{}, err
	}
	if err := parseMuteTarget(req); err != nil {
		return chat.AuthReply{}, err
	}
	if err := s.st.DeleteMute(ctx, req.Room, req.User); err != nil {
		return chat.AuthReply{}, err
	}
	if err := s.proj.sync(ctx, s.proj.mutes, chat.MuteKey(req.Room, req.User)); err != nil {
		return chat.AuthReply{}, err
	}
	s.log.Info("user unmuted", "room", req.Room, "user", req.User, "by", by.Name)
	return chat.AuthReply{OK: true}, nil
}

// sweep deletes expired sessions and mutes, and the bucket keys of those,
// and forgets rate-limit windows that are over.
func (s *service) sweep(ctx context.Context) error {
	now := s.now()
	keys, err := s.st.DeleteExpiredSessions(ctx, now)
	if err != nil {
		return err
	}
	for _, key := range keys {
		if err := s.proj.sync(ctx, s.proj.sessions, key); err != nil {
			return err
		}
	}
	mutes, err := s.st.DeleteExpiredMutes(ctx, now)
	if err != nil {
		return err
	}
	for _, m := range mutes {
		if err := s.proj.sync(ctx, s.proj.mutes, chat.MuteKey(m.Room, m.User)); err != nil {
			return err
		}
	}
	if len(keys)+len(mutes) > 0 {
		s.log.Debug("swept", "sessions", len(keys), "mutes", len(mutes))
	}
	return s.st.DeleteStaleLimits(ctx, now.Add(-s.cfg.LimitWindow))
}
