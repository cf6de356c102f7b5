package accounts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natschat/chat/services/accounts/internal/store"
	"github.com/natschat/chat/shared/chat"
)

// The database is the truth; the KV buckets are its projection for the
// gateways, which watch them instead of asking on every WebSocket upgrade.
// Every change writes the database first, then syncs the keys it touched.
// sync reads the key's state from the database, writes it to the bucket and
// reads it again: if it changed meanwhile (a concurrent logout, another
// instance), it goes round once more. So the writer that finishes last
// always leaves the bucket as the database is, whatever the interleaving,
// and a lost write is repaired by the periodic reconcile.

// bucket is one KV bucket and how its values derive from the database.
type bucket struct {
	name string
	kv   jetstream.KeyValue
	// load is the encoded value key should have now, or nil for none.
	load func(ctx context.Context, key string) ([]byte, error)
	// all is every key's value now.
	all func(ctx context.Context) (map[string][]byte, error)
}

// projection keeps the sessions, accounts and mutes buckets equal to the
// database.
type projection struct {
	st                        *store.Store
	js                        jetstream.JetStream
	configs                   []jetstream.KeyValueConfig
	sessions, accounts, mutes *bucket
	now                       func() time.Time
	log                       *slog.Logger
	metrics                   *metrics
}

// sessionKeyMargin is how long a session's key may outlive the session
// before the bucket drops it by itself. The sweeper deletes expired keys
// first, which watchers see; the bucket's own expiry, which they do not
// see, only bounds the keys of a service that stopped sweeping. Gateways
// check ExpiresAt themselves anyway.
const sessionKeyMargin = time.Hour

// bucketConfigs are the buckets the service owns.
func bucketConfigs(replicas int, sessionTTL time.Duration) []jetstream.KeyValueConfig {
	return []jetstream.KeyValueConfig{
		{
			Bucket:      chat.SessionsBucket,
			Description: "live sessions by the SHA-256 of their token; written by the accounts service",
			TTL:         sessionTTL + sessionKeyMargin,
			Storage:     jetstream.FileStorage,
			Replicas:    replicas,
		},
		{
			Bucket:      chat.AccountsBucket,
			Description: "registered names by lower-case name; written by the accounts service",
			Storage:     jetstream.FileStorage,
			Replicas:    replicas,
		},
		{
			Bucket:      chat.MutesBucket,
			Description: "mutes in force by <room>.<lower-case user>; written by the accounts service",
			Storage:     jetstream.FileStorage,
			Replicas:    replicas,
		},
	}
}

// ensureBuckets creates or updates the buckets and returns them by name.
func ensureBuckets(ctx context.Context, js jetstream.JetStream, cfgs []jetstream.KeyValueConfig) (map[string]jetstream.KeyValue, error) {
	kvs := map[string]jetstream.KeyValue{}
	for _, c := range cfgs {
		kv, err := js.CreateOrUpdateKeyValue(ctx, c)
		if err != nil {
			return nil, fmt.Errorf("ensure bucket %s: %w", c.Bucket, err)
		}
		kvs[c.Bucket] = kv
	}
	return kvs, nil
}

// newProjection ensures the buckets of configs and returns their projection.
func newProjection(ctx context.Context, st *store.Store, js jetstream.JetStream, configs []jetstream.KeyValueConfig, now func() time.Time, log *slog.Logger, m *metrics) (*projection, error) {
	kvs, err := ensureBuckets(ctx, js, configs)
	if err != nil {
		return nil, err
	}
	p := &projection{st: st, js: js, configs: configs, now: now, log: log, metrics: m}
	p.sessions = &bucket{name: chat.SessionsBucket, kv: kvs[chat.SessionsBucket], load: p.loadSession, all: p.allSessions}
	p.accounts = &bucket{name: chat.AccountsBucket, kv: kvs[chat.AccountsBucket], load: p.loadAccount, all: p.allAccounts}
	p.mutes = &bucket{name: chat.MutesBucket, kv: kvs[chat.MutesBucket], load: p.loadMute, all: p.allMutes}
	return p, nil
}

func sessionValue(s store.Session) chat.Session {
	return chat.Session{Name: s.Name, Admin: s.Admin, CreatedAt: s.CreatedAt, ExpiresAt: s.ExpiresAt}
}

func accountValue(a store.Account) chat.Account {
	return chat.Account{Name: a.Name, Admin: a.Admin, CreatedAt: a.CreatedAt}
}

func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // structs of strings, bools and times always encode
	}
	return b
}

func (p *projection) loadSession(ctx context.Context, key string) ([]byte, error) {
	s, err := p.st.Session(ctx, key)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	case !s.ExpiresAt.After(p.now()):
		return nil, nil
	}
	return encode(sessionValue(s)), nil
}

func (p *projection) allSessions(ctx context.Context) (map[string][]byte, error) {
	sessions, err := p.st.Sessions(ctx, p.now())
	if err != nil {
		return nil, err
	}
	m := make(map[string][]byte, len(sessions))
	for _, s := range sessions {
		m[s.Key] = encode(sessionValue(s))
	}
	return m, nil
}

func (p *projection) loadAccount(ctx context.Context, key string) ([]byte, error) {
	a, err := p.st.Account(ctx, key)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	}
	return encode(accountValue(a)), nil
}

func (p *projection) allAccounts(ctx context.Context) (map[string][]byte, error) {
	accounts, err := p.st.Accounts(ctx)
	if err != nil {
		return nil, err
	}
	m := make(map[string][]byte, len(accounts))
	for _, a := range accounts {
		m[a.Key] = encode(accountValue(a))
	}
	return m, nil
}

func (p *projection) loadMute(ctx context.Context, key string) ([]byte, error) {
	room, user, ok := strings.Cut(key, ".")
	if !ok {
		return nil, nil // not a key this service writes
	}
	m, err := p.st.Mute(ctx, room, user)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	case !m.Until.After(p.now()):
		return nil, nil
	}
	return encode(m), nil
}

func (p *projection) allMutes(ctx context.Context) (map[string][]byte, error) {
	mutes, err := p.st.Mutes(ctx, p.now())
	if err != nil {
		return nil, err
	}
	m := make(map[string][]byte, len(mutes))
	for _, mu := range mutes {
		m[chat.MuteKey(mu.Room, mu.User)] = encode(mu)
	}
	return m, nil
}

// syncRounds bounds how often sync goes round while the key keeps
// changing under it; the reconcile catches what is left.
const syncRounds = 5

// sync makes key in b what the database says, as described above.
func (p *projection) sync(ctx context.Context, b *bucket, key string) error {
	for range syncRounds {
		want, err := b.load(ctx, key)
		if err != nil {
			return fmt.Errorf("sync %s %s: %w", b.name, key, err)
		}
		if err := p.write(ctx, b, key, want); err != nil {
			p.metrics.syncErrors.Inc()
			return fmt.Errorf("sync %s %s: %w", b.name, key, err)
		}
		again, err := b.load(ctx, key)
		if err != nil {
			return fmt.Errorf("sync %s %s: %w", b.name, key, err)
		}
		if bytes.Equal(want, again) {
			return nil
		}
	}
	p.metrics.syncErrors.Inc()
	return fmt.Errorf("sync %s %s: it kept changing", b.name, key)
}

// write puts value under key, or deletes key when value is nil. A key that
// is not there is not deleted again: every delete is an event that the
// gateways' watchers act on.
func (p *projection) write(ctx context.Context, b *bucket, key string, value []byte) error {
	if value != nil {
		if _, err := b.kv.Put(ctx, key, value); err != nil {
			return fmt.Errorf("put: %w", err)
		}
		return nil
	}
	if _, err := b.kv.Get(ctx, key); errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	} else if err != nil {
		return fmt.Errorf("get: %w", err)
	}
	if err := b.kv.Delete(ctx, key); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	return nil
}

// reconcile compares the whole bucket with the database and syncs every
// key that differs: it repairs writes lost to an outage, a bucket deleted
// and re-created, admins changed in the configuration. It returns how many
// keys it repaired.
func (p *projection) reconcile(ctx context.Context, b *bucket) (int, error) {
	have, err := readAll(ctx, b.kv)
	if err != nil {
		return 0, fmt.Errorf("reconcile %s: read bucket: %w", b.name, err)
	}
	want, err := b.all(ctx)
	if err != nil {
		return 0, fmt.Errorf("reconcile %s: %w", b.name, err)
	}
	var keys []string
	for k, v := range want {
		if !bytes.Equal(have[k], v) {
			keys = append(keys, k)
		}
	}
	for k := range have {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		if err := p.sync(ctx, b, k); err != nil {
			return 0, fmt.Errorf("reconcile: %w", err)
		}
	}
	p.metrics.repairs.Add(float64(len(keys)))
	return len(keys), nil
}

// reconcileAll re-creates a deleted bucket (its handle goes on working: KV
// operations address the bucket by name) and reconciles every bucket.
func (p *projection) reconcileAll(ctx context.Context) error {
	if _, err := ensureBuckets(ctx, p.js, p.configs); err != nil {
		return err
	}
	for _, b := range []*bucket{p.accounts, p.sessions, p.mutes} {
		n, err := p.reconcile(ctx, b)
		if err != nil {
			return err
		}
		if n > 0 {
			p.log.Info("bucket repaired", "bucket", b.name, "keys", n)
		}
	}
	return nil
}

// readAll returns every live key of kv with its value.
func readAll(ctx context.Context, kv jetstream.KeyValue) (map[string][]byte, error) {
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	m := map[string][]byte{}
	for {
		select {
		case e := <-w.Updates():
			if e == nil {
				return m, nil // the initial values are all in
			}
			m[e.Key()] = e.Value()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
