// Package store keeps accounts, sessions, mutes and rate-limit counters in
// Postgres or SQLite through bun. One implementation serves both; the few
// spots where their SQL differs are in the shared sqldb package and the
// migration template.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/sqldb"
)

// ErrNotFound is returned for a missing account, session or mute.
var ErrNotFound = errors.New("not found")

// ErrNameTaken is returned by CreateAccount when the name is registered,
// maybe in another letter case.
var ErrNameTaken = errors.New("name taken")

// Store is the accounts database. It is safe for concurrent use.
type Store struct {
	db *sqldb.DB
}

// Account is a registered name with its password hash.
type Account struct {
	bun.BaseModel `bun:"table:accounts,alias:a"`

	// Key is chat.AccountKey(Name); CreateAccount sets it.
	Key               string    `bun:"name_key,pk"`
	Name              string    `bun:"name,notnull"`
	PasswordHash      string    `bun:"password_hash,notnull"`
	Admin             bool      `bun:"admin,notnull"`
	CreatedAt         time.Time `bun:"created_at,notnull"`
	PasswordChangedAt time.Time `bun:"password_changed_at,notnull"`
}

// Session is a signed-in account. Name, Admin and AccountCreatedAt are the
// account's, filled by the reads; writes ignore them.
type Session struct {
	// Key is chat.SessionKey of the token.
	Key              string    `bun:"token_hash"`
	AccountKey       string    `bun:"account_key"`
	CreatedAt        time.Time `bun:"created_at"`
	ExpiresAt        time.Time `bun:"expires_at"`
	Name             string    `bun:"name"`
	Admin            bool      `bun:"admin"`
	AccountCreatedAt time.Time `bun:"account_created_at"`
}

type sessionRow struct {
	bun.BaseModel `bun:"table:sessions,alias:s"`

	Key        string    `bun:"token_hash,pk"`
	AccountKey string    `bun:"account_key,notnull"`
	CreatedAt  time.Time `bun:"created_at,notnull"`
	ExpiresAt  time.Time `bun:"expires_at,notnull"`
}

type muteRow struct {
	bun.BaseModel `bun:"table:mutes,alias:m"`

	Room      string    `bun:"room,pk"`
	UserKey   string    `bun:"user_key,pk"`
	User      string    `bun:"user,notnull"`
	By        string    `bun:"muted_by,notnull"`
	Until     time.Time `bun:"until,notnull"`
	CreatedAt time.Time `bun:"created_at,notnull"`
}

func (r muteRow) mute() chat.Mute {
	return chat.Mute{Room: r.Room, User: r.User, By: r.By, Until: r.Until.UTC()}
}

type limitRow struct {
	bun.BaseModel `bun:"table:rate_limits,alias:l"`

	Key         string    `bun:"limit_key,pk"`
	WindowStart time.Time `bun:"window_start,notnull"`
	Attempts    int       `bun:"attempts,notnull"`
}

// Dialect reports "postgres" or "sqlite".
func (s *Store) Dialect() string { return string(s.db.Engine) }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.Ping(ctx) }

// Close closes the database; calling it again returns the first result.
func (s *Store) Close() error { return s.db.Close() }

// ts is how every time is stored: UTC, to the microsecond, which both
// dialects keep exactly, so a value read back equals the one written.
func ts(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// CreateAccount stores a new account, or returns ErrNameTaken.
func (s *Store) CreateAccount(ctx context.Context, a Account) error {
	a.Key = chat.AccountKey(a.Name)
	a.CreatedAt, a.PasswordChangedAt = ts(a.CreatedAt), ts(a.PasswordChangedAt)
	res, err := s.db.NewInsert().Model(&a).On("CONFLICT (name_key) DO NOTHING").Exec(ctx)
	if err != nil {
		return fmt.Errorf("insert account %s: %w", a.Name, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("insert account %s: %w", a.Name, err)
	} else if n == 0 {
		return ErrNameTaken
	}
	return nil
}

// Account returns the account of name in any letter case, or ErrNotFound.
func (s *Store) Account(ctx context.Context, name string) (Account, error) {
	var a Account
	err := s.db.NewSelect().Model(&a).Where("name_key = ?", chat.AccountKey(name)).Scan(ctx)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return Account{}, ErrNotFound
	case err != nil:
		return Account{}, fmt.Errorf("select account %s: %w", name, err)
	}
	return normAccount(a), nil
}

// Accounts returns every account, without password hashes.
func (s *Store) Accounts(ctx context.Context) ([]Account, error) {
	var as []Account
	if err := s.db.NewSelect().Model(&as).ExcludeColumn("password_hash").Order("name_key").Scan(ctx); err != nil {
		return nil, fmt.Errorf("select accounts: %w", err)
	}
	for i := range as {
		as[i] = normAccount(as[i])
	}
	return as, nil
}

func normAccount(a Account) Account {
	a.CreatedAt, a.PasswordChangedAt = a.CreatedAt.UTC(), a.PasswordChangedAt.UTC()
	return a
}

// SetAdmins makes exactly the accounts named in names (any letter case)
// admins, and reports whether any account changed.
func (s *Store) SetAdmins(ctx context.Context, names []string) (bool, error) {
	keys := make([]string, len(names))
	for i, n := range names {
		keys[i] = chat.AccountKey(n)
	}
	var changed int64
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		demote := tx.NewUpdate().Model((*Account)(nil)).Set("admin = ?", false).Where("admin = ?", true)
		if len(keys) > 0 {
			demote = demote.Where("name_key NOT IN (?)", bun.In(keys))
			res, err := tx.NewUpdate().Model((*Account)(nil)).Set("admin = ?", true).
				Where("admin = ?", false).Where("name_key IN (?)", bun.In(keys)).Exec(ctx)
			if err != nil {
				return fmt.Errorf("promote admins: %w", err)
			}
			n, _ := res.RowsAffected()
			changed += n
		}
		res, err := demote.Exec(ctx)
		if err != nil {
			return fmt.Errorf("demote admins: %w", err)
		}
		n, _ := res.RowsAffected()
		changed += n
		return nil
	})
	return changed > 0, err
}

// SetPassword replaces the password hash of the account and ends every
// session of it but keep, in one transaction. It returns the keys of the
// ended sessions.
func (s *Store) SetPassword(ctx context.Context, accountKey, hash string, now time.Time, keep string) ([]string, error) {
	var ended []string
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		res, err := tx.NewUpdate().Model((*Account)(nil)).
			Set("password_hash = ?", hash).Set("password_changed_at = ?", ts(now)).
			Where("name_key = ?", accountKey).Exec(ctx)
		if err != nil {
			return fmt.Errorf("update password: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		var rows []sessionRow
		if err := tx.NewDelete().Model(&rows).
			Where("account_key = ?", accountKey).Where("token_hash <> ?", keep).
			Returning("token_hash").Scan(ctx); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("end other sessions: %w", err)
		}
		for _, r := range rows {
			ended = append(ended, r.Key)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("set password of %s: %w", accountKey, err)
	}
	return ended, nil
}

// CreateSession stores a new session (Key, AccountKey, CreatedAt,
// ExpiresAt).
func (s *Store) CreateSession(ctx context.Context, sess Session) error {
	row := sessionRow{Key: sess.Key, AccountKey: sess.AccountKey, CreatedAt: ts(sess.CreatedAt), ExpiresAt: ts(sess.ExpiresAt)}
	if _, err := s.db.NewInsert().Model(&row).Exec(ctx); err != nil {
		return fmt.Errorf("insert session: %w", err)
	}
	return nil
}

// selectSessions selects sessions joined with their accounts.
func (s *Store) selectSessions() *bun.SelectQuery {
	return s.db.NewSelect().
		TableExpr("sessions AS s").
		Join("JOIN accounts AS a ON a.name_key = s.account_key").
		ColumnExpr("s.token_hash, s.account_key, s.created_at, s.expires_at, a.name, a.admin, a.created_at AS account_created_at")
}

// Session returns the session of key, expired or not, or ErrNotFound.
func (s *Store) Session(ctx context.Context, key string) (Session, error) {
	var sessions []Session
	if err := s.selectSessions().Where("s.token_hash = ?", key).Scan(ctx, &sessions); err != nil {
		return Session{}, fmt.Errorf("select session: %w", err)
	}
	if len(sessions) == 0 {
		return Session{}, ErrNotFound
	}
	return normSession(sessions[0]), nil
}

// Sessions returns every session that has not expired at now.
func (s *Store) Sessions(ctx context.Context, now time.Time) ([]Session, error) {
	var sessions []Session
	if err := s.selectSessions().Where("s.expires_at > ?", ts(now)).OrderExpr("s.token_hash").Scan(ctx, &sessions); err != nil {
		return nil, fmt.Errorf("select sessions: %w", err)
	}
	for i := range sessions {
		sessions[i] = normSession(sessions[i])
	}
	return sessions, nil
}

func normSession(sess Session) Session {
	sess.CreatedAt, sess.ExpiresAt, sess.AccountCreatedAt = sess.CreatedAt.UTC(), sess.ExpiresAt.UTC(), sess.AccountCreatedAt.UTC()
	return sess
}

// DeleteSession ends the session of key; a missing one is no error.
func (s *Store) DeleteSession(ctx context.Context, key string) error {
	if _, err := s.db.NewDelete().Model((*sessionRow)(nil)).Where("token_hash = ?", key).Exec(ctx); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// DeleteExpiredSessions deletes the sessions expired at now and returns
// their keys.
func (s *Store) DeleteExpiredSessions(ctx context.Context, now time.Time) ([]string, error) {
	var rows []sessionRow
	if err := s.db.NewDelete().Model(&rows).Where("expires_at <= ?", ts(now)).
		Returning("token_hash").Scan(ctx); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("delete expired sessions: %w", err)
	}
	keys := make([]string, len(rows))
	for i, r := range rows {
		keys[i] = r.Key
	}
	return keys, nil
}

// PutMute stores m, replacing an earlier mute of the same user in the room.
func (s *Store) PutMute(ctx context.Context, m chat.Mute, now time.Time) error {
	row := muteRow{Room: m.Room, UserKey: chat.AccountKey(m.User), User: m.User, By: m.By, Until: ts(m.Until), CreatedAt: ts(now)}
	if _, err := s.db.NewInsert().Model(&row).
		On("CONFLICT (room, user_key) DO UPDATE").
		Set(`"user" = EXCLUDED."user"`).
		Set("muted_by = EXCLUDED.muted_by").
		Set("until = EXCLUDED.until").
		Set("created_at = EXCLUDED.created_at").
		Exec(ctx); err != nil {
		return fmt.Errorf("upsert mute: %w", err)
	}
	return nil
}

// Mute returns the mute of user (any letter case) in room, expired or not,
// or ErrNotFound.
func (s *Store) Mute(ctx context.Context, room, user string) (chat.Mute, error) {
	var row muteRow
	err := s.db.NewSelect().Model(&row).Where("room = ?", room).Where("user_key = ?", chat.AccountKey(user)).Scan(ctx)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return chat.Mute{}, ErrNotFound
	case err != nil:
		return chat.Mute{}, fmt.Errorf("select mute: %w", err)
	}
	return row.mute(), nil
}

// DeleteMute lifts the mute of user in room; a missing one is no error.
func (s *Store) DeleteMute(ctx context.Context, room, user string) error {
	if _, err := s.db.NewDelete().Model((*muteRow)(nil)).
		Where("room = ?", room).Where("user_key = ?", chat.AccountKey(user)).Exec(ctx); err != nil {
		return fmt.Errorf("delete mute: %w", err)
	}
	return nil
}

// Mutes returns every mute still in force at now.
func (s *Store) Mutes(ctx context.Context, now time.Time) ([]chat.Mute, error) {
	var rows []muteRow
	if err := s.db.NewSelect().Model(&rows).Where("until > ?", ts(now)).Order("room", "user_key").Scan(ctx); err != nil {
		return nil, fmt.Errorf("select mutes: %w", err)
	}
	mutes := make([]chat.Mute, len(rows))
	for i, r := range rows {
		mutes[i] = r.mute()
	}
	return mutes, nil
}

// DeleteExpiredMutes deletes the mutes over at now and returns them.
func (s *Store) DeleteExpiredMutes(ctx context.Context, now time.Time) ([]chat.Mute, error) {
	var rows []muteRow
	if err := s.db.NewDelete().Model(&rows).Where("until <= ?", ts(now)).
		Returning("*").Scan(ctx); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("delete expired mutes: %w", err)
	}
	mutes := make([]chat.Mute, len(rows))
	for i, r := range rows {
		mutes[i] = r.mute()
	}
	return mutes, nil
}

// Hit counts an attempt against key in fixed windows of length window, and
// returns the attempts in the current window, this one included, and when
// the window started. Concurrent hits, from any instance, each count: the
// count is one atomic upsert.
func (s *Store) Hit(ctx context.Context, key string, now time.Time, window time.Duration) (int, time.Time, error) {
	now = ts(now)
	cutoff := now.Add(-window)
	row := limitRow{Key: key, WindowStart: now, Attempts: 1}
	var out []limitRow
	if _, err := s.db.NewInsert().Model(&row).
		On("CONFLICT (limit_key) DO UPDATE").
		// Both expressions read the row as it was before this update.
		Set("attempts = CASE WHEN ?TableAlias.window_start <= ? THEN 1 ELSE ?TableAlias.attempts + 1 END", cutoff).
		Set("window_start = CASE WHEN ?TableAlias.window_start <= ? THEN EXCLUDED.window_start ELSE ?TableAlias.window_start END", cutoff).
		Returning("attempts, window_start").
		Exec(ctx, &out); err != nil {
		return 0, time.Time{}, fmt.Errorf("count attempt: %w", err)
	}
	if len(out) != 1 {
		return 0, time.Time{}, fmt.Errorf("count attempt: %d rows returned", len(out))
	}
	return out[0].Attempts, out[0].WindowStart.UTC(), nil
}

// Unhit takes back one attempt of key's current window: the attempt
// succeeded, and only failures are limited.
func (s *Store) Unhit(ctx context.Context, key string) error {
	if _, err := s.db.NewUpdate().Model((*limitRow)(nil)).
		Set("attempts = attempts - 1").Where("limit_key = ?", key).Where("attempts > 0").Exec(ctx); err != nil {
		return fmt.Errorf("uncount attempt: %w", err)
	}
	return nil
}

// DeleteStaleLimits forgets the windows that started before before.
func (s *Store) DeleteStaleLimits(ctx context.Context, before time.Time) error {
	if _, err := s.db.NewDelete().Model((*limitRow)(nil)).Where("window_start < ?", ts(before)).Exec(ctx); err != nil {
		return fmt.Errorf("delete stale limits: %w", err)
	}
	return nil
}
