package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/testkit/pgtest"
)

// TestStore runs one suite against every dialect, so SQLite and Postgres
// cannot drift apart.
func TestStore(t *testing.T) {
	dialects := map[string]func(t *testing.T) *Store{
		"sqlite": func(t *testing.T) *Store {
			return open(t, Options{SQLitePath: filepath.Join(t.TempDir(), "sub", "accounts.db")})
		},
		"postgres": func(t *testing.T) *Store {
			return open(t, Options{URL: pgtest.Postgres(t).URL})
		},
	}
	for name, newStore := range dialects {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			t.Run("Accounts", func(t *testing.T) { testAccounts(t, newStore(t)) })
			t.Run("ConcurrentRegistrations", func(t *testing.T) { testConcurrentRegistrations(t, newStore(t)) })
			t.Run("Admins", func(t *testing.T) { testAdmins(t, newStore(t)) })
			t.Run("Sessions", func(t *testing.T) { testSessions(t, newStore(t)) })
			t.Run("PasswordEndsOtherSessions", func(t *testing.T) { testSetPassword(t, newStore(t)) })
			t.Run("Mutes", func(t *testing.T) { testMutes(t, newStore(t)) })
			t.Run("RateLimits", func(t *testing.T) { testHits(t, newStore(t)) })
			t.Run("ConcurrentHits", func(t *testing.T) { testConcurrentHits(t, newStore(t)) })
			t.Run("MigrateTwice", func(t *testing.T) {
				s := newStore(t)
				if err := s.Migrate(context.Background()); err != nil {
					t.Fatalf("second migrate: %v", err)
				}
			})
		})
	}
}

// TestSharedPostgres: the accounts and history services may share one
// Postgres database; accounts keeps its migration bookkeeping apart, so a
// table of bun's default name from another service changes nothing.
func TestSharedPostgres(t *testing.T) {
	db := pgtest.Postgres(t)
	s := open(t, Options{URL: db.URL})
	ctx := context.Background()
	var n int
	if err := s.db.NewSelect().TableExpr(migrationsTable).ColumnExpr("count(*)").Scan(ctx, &n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("%d migrations recorded in %s, want 1", n, migrationsTable)
	}
	var exists bool
	if err := s.db.NewRaw("SELECT EXISTS (SELECT 1 FROM information_schema.tables WHERE table_name = 'bun_migrations')").Scan(ctx, &exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Error("bun_migrations exists: accounts would mix its migrations with another service's")
	}
}

func open(t *testing.T, o Options) *Store {
	t.Helper()
	ctx := context.Background()
	s, err := Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// t0 has nanoseconds, which the store drops: what comes back is what a
// second read gives, in both dialects.
var t0 = time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC)

func account(name string) Account {
	return Account{Name: name, PasswordHash: "hash-of-" + name, CreatedAt: t0, PasswordChangedAt: t0}
}

func create(t *testing.T, s *Store, a Account) {
	t.Helper()
	if err := s.CreateAccount(context.Background(), a); err != nil {
		t.Fatalf("create %s: %v", a.Name, err)
	}
}

func testAccounts(t *testing.T, s *Store) {
	ctx := context.Background()
	create(t, s, account("Alice"))
	if err := s.CreateAccount(ctx, account("alice")); !errors.Is(err, ErrNameTaken) {
		t.Errorf("alice beside Alice: err %v, want ErrNameTaken", err)
	}
	if err := s.CreateAccount(ctx, account("ALICE")); !errors.Is(err, ErrNameTaken) {
		t.Errorf("ALICE beside Alice: err %v, want ErrNameTaken", err)
	}
	got, err := s.Account(ctx, "aLiCe")
	if err != nil {
		t.Fatal(err)
	}
	want := Account{Key: "alice", Name: "Alice", PasswordHash: "hash-of-Alice", CreatedAt: ts(t0), PasswordChangedAt: ts(t0)}
	if got != want {
		t.Errorf("got %+v,\nwant %+v", got, want)
	}
	if _, err := s.Account(ctx, "bob"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown name: err %v, want ErrNotFound", err)
	}
	create(t, s, account("bob"))
	all, err := s.Accounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range all {
		names = append(names, a.Name)
		if a.PasswordHash != "" {
			t.Errorf("Accounts returned the password hash of %s", a.Name)
		}
	}
	if fmt.Sprint(names) != "[Alice bob]" {
		t.Errorf("accounts %v, want [Alice bob]", names)
	}
}

// Two instances registering the same name (in different cases) at once:
// one wins, the others are told the name is taken.
func testConcurrentRegistrations(t *testing.T, s *Store) {
	names := []string{"carol", "Carol", "CAROL", "caRol", "carOL", "CaRoL"}
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() { errs[i] = s.CreateAccount(context.Background(), account(name)) })
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, ErrNameTaken):
			t.Errorf("%s: %v", names[i], err)
		}
	}
	if won != 1 {
		t.Errorf("%d registrations of carol succeeded, want 1", won)
	}
}

func testAdmins(t *testing.T, s *Store) {
	ctx := context.Background()
	for _, n := range []string{"alice", "bob", "carol"} {
		create(t, s, account(n))
	}
	admins := func() []string {
		t.Helper()
		all, err := s.Accounts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, a := range all {
			if a.Admin {
				out = append(out, a.Name)
			}
		}
		return out
	}
	changed, err := s.SetAdmins(ctx, []string{"Alice", "Carol", "nobody"})
	if err != nil || !changed {
		t.Fatalf("SetAdmins = %v, %v; want a change", changed, err)
	}
	if got := admins(); fmt.Sprint(got) != "[alice carol]" {
		t.Errorf("admins %v, want [alice carol]", got)
	}
	if changed, err := s.SetAdmins(ctx, []string{"alice", "carol"}); err != nil || changed {
		t.Errorf("the same admins again: SetAdmins = %v, %v; want no change", changed, err)
	}
	if _, err := s.SetAdmins(ctx, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	if got := admins(); fmt.Sprint(got) != "[bob]" {
		t.Errorf("admins %v, want [bob]", got)
	}
	if _, err := s.SetAdmins(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got := admins(); len(got) != 0 {
		t.Errorf("admins %v, want none", got)
	}
}

func session(key, account string, expires time.Time) Session {
	return Session{Key: key, AccountKey: account, CreatedAt: t0, ExpiresAt: expires}
}

func testSessions(t *testing.T, s *Store) {
	ctx := context.Background()
	a := account("Alice")
	a.Admin = true
	create(t, s, a)
	create(t, s, account("bob"))
	later := t0.Add(time.Hour)
	for _, sess := range []Session{
		session("k1", "alice", later),
		session("k2", "alice", t0.Add(time.Minute)),
		session("k3", "bob", later),
	} {
		if err := s.CreateSession(ctx, sess); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Session(ctx, "k1")
	if err != nil {
		t.Fatal(err)
	}
	want := Session{Key: "k1", AccountKey: "alice", CreatedAt: ts(t0), ExpiresAt: ts(later), Name: "Alice", Admin: true, AccountCreatedAt: ts(t0)}
	if got != want {
		t.Errorf("got %+v,\nwant %+v", got, want)
	}
	if _, err := s.Session(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown session: err %v, want ErrNotFound", err)
	}

	keys := func(sessions []Session) []string {
		var out []string
		for _, s := range sessions {
			out = append(out, s.Key)
		}
		return out
	}
	live, err := s.Sessions(ctx, t0.Add(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(live); fmt.Sprint(got) != "[k1 k3]" {
		t.Errorf("live sessions %v, want [k1 k3]", got)
	}
	expired, err := s.DeleteExpiredSessions(ctx, t0.Add(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(expired) != "[k2]" {
		t.Errorf("expired %v, want [k2]", expired)
	}
	if err := s.DeleteSession(ctx, "k1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSession(ctx, "k1"); err != nil {
		t.Errorf("deleting a deleted session: %v", err)
	}
	live, err = s.Sessions(ctx, t0)
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(live); fmt.Sprint(got) != "[k3]" {
		t.Errorf("sessions %v, want [k3]", got)
	}
}

func testSetPassword(t *testing.T, s *Store) {
	ctx := context.Background()
	create(t, s, account("alice"))
	create(t, s, account("bob"))
	for _, sess := range []Session{
		session("a1", "alice", t0.Add(time.Hour)),
		session("a2", "alice", t0.Add(time.Hour)),
		session("a3", "alice", t0.Add(time.Hour)),
		session("b1", "bob", t0.Add(time.Hour)),
	} {
		if err := s.CreateSession(ctx, sess); err != nil {
			t.Fatal(err)
		}
	}
	ended, err := s.SetPassword(ctx, "alice", "new-hash", t0.Add(time.Minute), "a2")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ended)
	if fmt.Sprint(ended) != "[a1 a3]" {
		t.Errorf("ended %v, want [a1 a3]", ended)
	}
	a, err := s.Account(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if a.PasswordHash != "new-hash" || !a.PasswordChangedAt.Equal(ts(t0.Add(time.Minute))) {
		t.Errorf("account after change: %+v", a)
	}
	for key, want := range map[string]bool{"a1": false, "a2": true, "a3": false, "b1": true} {
		_, err := s.Session(ctx, key)
		if got := err == nil; got != want {
			t.Errorf("session %s exists: %v, want %v (err %v)", key, got, want, err)
		}
	}
	if _, err := s.SetPassword(ctx, "nobody", "h", t0, ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown account: err %v, want ErrNotFound", err)
	}
}

func testMutes(t *testing.T, s *Store) {
	ctx := context.Background()
	m := chat.Mute{Room: "lobby", User: "Bob", By: "alice", Until: t0.Add(10 * time.Minute)}
	if err := s.PutMute(ctx, m, t0); err != nil {
		t.Fatal(err)
	}
	got, err := s.Mute(ctx, "lobby", "bob")
	if err != nil {
		t.Fatal(err)
	}
	want := m
	want.Until = ts(m.Until)
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	// A second mute replaces the first: one per user and room.
	m2 := chat.Mute{Room: "lobby", User: "bob", By: "carol", Until: t0.Add(time.Minute)}
	if err := s.PutMute(ctx, m2, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.PutMute(ctx, chat.Mute{Room: "Lobby", User: "bob", By: "carol", Until: t0.Add(time.Hour)}, t0); err != nil {
		t.Fatal(err)
	}
	live, err := s.Mutes(ctx, t0.Add(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(live) != 2 || live[0].Room != "Lobby" || live[1] != (chat.Mute{Room: "lobby", User: "bob", By: "carol", Until: ts(m2.Until)}) {
		t.Errorf("mutes %+v, want Lobby's and lobby's by carol", live)
	}
	expired, err := s.DeleteExpiredMutes(ctx, t0.Add(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(expired) != 1 || expired[0].Room != "lobby" || expired[0].User != "bob" {
		t.Errorf("expired %+v, want lobby's", expired)
	}
	if _, err := s.Mute(ctx, "lobby", "bob"); !errors.Is(err, ErrNotFound) {
		t.Errorf("expired mute: err %v, want ErrNotFound", err)
	}
	if err := s.DeleteMute(ctx, "Lobby", "BOB"); err != nil {
		t.Fatal(err)
	}
	if live, err := s.Mutes(ctx, t0); err != nil || len(live) != 0 {
		t.Errorf("mutes after unmute: %+v, %v", live, err)
	}
}

func testHits(t *testing.T, s *Store) {
	ctx := context.Background()
	hit := func(key string, at time.Time) (int, time.Time) {
		t.Helper()
		n, start, err := s.Hit(ctx, key, at, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return n, start
	}
	for i := 1; i <= 3; i++ {
		n, start := hit("name:alice", t0.Add(time.Duration(i)*time.Second))
		if n != i || !start.Equal(ts(t0.Add(time.Second))) {
			t.Errorf("hit %d: %d attempts in the window from %v, want %d from %v", i, n, start, i, ts(t0.Add(time.Second)))
		}
	}
	if n, _ := hit("name:bob", t0); n != 1 {
		t.Errorf("another key: %d attempts, want 1", n)
	}
	if err := s.Unhit(ctx, "name:alice"); err != nil {
		t.Fatal(err)
	}
	if n, _ := hit("name:alice", t0.Add(10*time.Second)); n != 3 {
		t.Errorf("after one success: %d attempts, want 3", n)
	}
	// The window is over a minute after it started: counting starts again.
	n, start := hit("name:alice", t0.Add(61*time.Second))
	if n != 1 || !start.Equal(ts(t0.Add(61*time.Second))) {
		t.Errorf("new window: %d attempts from %v, want 1 from now", n, start)
	}
	if err := s.DeleteStaleLimits(ctx, t0.Add(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if n, _ := hit("name:bob", t0.Add(40*time.Second)); n != 1 {
		t.Errorf("after deleting stale windows: %d attempts of bob, want 1", n)
	}
	if n, _ := hit("name:alice", t0.Add(62*time.Second)); n != 2 {
		t.Errorf("a current window survives: %d attempts, want 2", n)
	}
}

// Attempts from every instance at once all count, each exactly once.
func testConcurrentHits(t *testing.T, s *Store) {
	const n = 20
	counts := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c, _, err := s.Hit(context.Background(), "addr:x", t0, time.Minute)
			if err != nil {
				t.Error(err)
			}
			counts[i] = c
		})
	}
	wg.Wait()
	slices.Sort(counts)
	for i, c := range counts {
		if c != i+1 {
			t.Fatalf("counts %v, want 1 to %d, each once", counts, n)
		}
	}
}
