package store

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
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
			return open(t, Options{SQLitePath: filepath.Join(t.TempDir(), "sub", "chat.db")})
		},
		"postgres": func(t *testing.T) *Store {
			return open(t, Options{URL: pgtest.Postgres(t).URL})
		},
	}
	for name, newStore := range dialects {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			t.Run("SaveIsIdempotent", func(t *testing.T) { testSaveIsIdempotent(t, newStore(t)) })
			t.Run("Paging", func(t *testing.T) { testPaging(t, newStore(t)) })
			t.Run("Rooms", func(t *testing.T) { testRooms(t, newStore(t)) })
			t.Run("Users", func(t *testing.T) { testUsers(t, newStore(t)) })
			t.Run("ConcurrentOverlappingSaves", func(t *testing.T) { testConcurrentSaves(t, newStore(t)) })
			t.Run("MigrateTwice", func(t *testing.T) {
				s := newStore(t)
				if err := s.Migrate(context.Background()); err != nil {
					t.Fatalf("second migrate: %v", err)
				}
			})
		})
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

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC)

// msg is a message of user in room; odd seqs come from an account, even
// ones from NATS (no auth), so both round-trip.
func msg(room string, seq uint64, user string) chat.Message {
	m := chat.Message{
		Room: room, Seq: seq, User: user, Text: fmt.Sprintf("text %d", seq),
		Kind: chat.KindUser, ClientID: fmt.Sprintf("c%d", seq), TS: t0.Add(time.Duration(seq) * time.Second),
	}
	if seq%2 == 1 {
		m.Auth = chat.AuthAccount
	}
	return m
}

func save(t *testing.T, s *Store, msgs ...chat.Message) int {
	t.Helper()
	n, err := s.Save(context.Background(), 0, msgs)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func testSaveIsIdempotent(t *testing.T, s *Store) {
	batch := []chat.Message{msg("a", 1, "u"), msg("b", 2, "u"), msg("a", 3, "v")}
	if got := save(t, s, batch...); got != 3 {
		t.Errorf("first save: got %d new, want 3", got)
	}
	// A redelivered batch, partly overlapping a new one.
	if got := save(t, s, append(batch, msg("a", 4, "u"))...); got != 1 {
		t.Errorf("second save: got %d new, want 1", got)
	}
	msgs, _, err := s.Messages(context.Background(), "a", Query{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 3 {
		t.Fatalf("got %d messages in a, want 3", len(msgs))
	}
	if got, want := msgs[0], msg("a", 1, "u"); got != want {
		t.Errorf("stored message changed:\ngot  %+v\nwant %+v", got, want)
	}
	rooms, err := s.Rooms(context.Background(), 10)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int64{}
	for _, r := range rooms {
		counts[r.Name] = r.Messages
	}
	if counts["a"] != 3 || counts["b"] != 1 {
		t.Errorf("got room counts %v, want a=3 b=1 (redeliveries must not count)", counts)
	}

	// The same message twice in one batch (a redelivery fetched beside
	// the original) is one row and counts once.
	if got := save(t, s, msg("c", 5, "u"), msg("c", 5, "u")); got != 1 {
		t.Errorf("batch with a duplicate: got %d new, want 1", got)
	}
	rooms, err = s.Rooms(context.Background(), 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rooms {
		if r.Name == "c" && r.Messages != 1 {
			t.Errorf("room c counts %d messages, want 1", r.Messages)
		}
	}
}

func seqs(msgs []chat.Message) []uint64 {
	out := make([]uint64, len(msgs))
	for i, m := range msgs {
		out[i] = m.Seq
	}
	return out
}

func testPaging(t *testing.T, s *Store) {
	// Seqs are stream-wide, so a room's are increasing but not contiguous:
	// room a has 2, 4, ..., 20; room b the odd ones.
	var batch []chat.Message
	for seq := uint64(1); seq <= 20; seq++ {
		room := "a"
		if seq%2 == 1 {
			room = "b"
		}
		batch = append(batch, msg(room, seq, "u"))
	}
	save(t, s, batch...)

	tests := []struct {
		name    string
		q       Query
		want    []uint64
		hasMore bool
	}{
		{"newest", Query{Limit: 3}, []uint64{16, 18, 20}, true},
		{"all", Query{Limit: 10}, []uint64{2, 4, 6, 8, 10, 12, 14, 16, 18, 20}, false},
		{"before", Query{Before: 16, Limit: 3}, []uint64{10, 12, 14}, true},
		{"before start", Query{Before: 7, Limit: 3}, []uint64{2, 4, 6}, false},
		{"after", Query{After: 4, Limit: 3}, []uint64{6, 8, 10}, true},
		{"after to end", Query{After: 14, Limit: 3}, []uint64{16, 18, 20}, false},
		{"after and before", Query{After: 4, Before: 12, Limit: 3}, []uint64{6, 8, 10}, false},
		{"after and before more", Query{After: 4, Before: 13, Limit: 3}, []uint64{6, 8, 10}, true},
		{"empty", Query{After: 20, Limit: 3}, []uint64{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msgs, hasMore, err := s.Messages(context.Background(), "a", tt.q)
			if err != nil {
				t.Fatal(err)
			}
			if got := seqs(msgs); fmt.Sprint(got) != fmt.Sprint(tt.want) || hasMore != tt.hasMore {
				t.Errorf("got %v has_more=%v, want %v has_more=%v", got, hasMore, tt.want, tt.hasMore)
			}
			for _, m := range msgs {
				if m.Room != "a" {
					t.Errorf("message %d of room %q in room a", m.Seq, m.Room)
				}
			}
		})
	}
}

func testRooms(t *testing.T, s *Store) {
	save(t, s, msg("old", 1, "u"), msg("new", 2, "u"), msg("old", 3, "u"), msg("mid", 4, "u"))
	// Activity moves "new" back to the top; an older ts must not move
	// last_message_at back.
	late := msg("new", 10, "u")
	early := msg("new", 11, "u")
	early.TS = t0
	save(t, s, late, early)

	rooms, err := s.Rooms(context.Background(), 10)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range rooms {
		names = append(names, r.Name)
	}
	if fmt.Sprint(names) != "[new mid old]" {
		t.Fatalf("got rooms %v, want [new mid old]", names)
	}
	want := chat.Room{Name: "new", Messages: 3, CreatedAt: t0, LastMessageAt: late.TS}
	if rooms[0] != want {
		t.Errorf("got %+v, want %+v", rooms[0], want)
	}
	limited, err := s.Rooms(context.Background(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(limited) != 2 {
		t.Errorf("limit 2: got %d rooms", len(limited))
	}
}

func testUsers(t *testing.T, s *Store) {
	save(t, s, msg("a", 5, "alice"), msg("a", 6, "bob"))
	save(t, s, msg("b", 9, "alice"), msg("b", 2, "alice"))
	var rows []userRow
	if err := s.db.NewSelect().Model(&rows).Order("name").Scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []userRow{
		{Name: "alice", FirstSeen: msg("", 2, "").TS, LastSeen: msg("", 9, "").TS},
		{Name: "bob", FirstSeen: msg("", 6, "").TS, LastSeen: msg("", 6, "").TS},
	}
	if len(rows) != len(want) {
		t.Fatalf("got %d users, want %d", len(rows), len(want))
	}
	for i := range want {
		got := rows[i]
		if got.Name != want[i].Name || !got.FirstSeen.Equal(want[i].FirstSeen) || !got.LastSeen.Equal(want[i].LastSeen) {
			t.Errorf("got %s %v..%v, want %s %v..%v", got.Name, got.FirstSeen, got.LastSeen, want[i].Name, want[i].FirstSeen, want[i].LastSeen)
		}
	}
}

// testConcurrentSaves is what two instances do after a redelivery: save
// overlapping batches at the same time. Every message must be one row and
// every room count exact.
func testConcurrentSaves(t *testing.T, s *Store) {
	const n = 400
	var all []chat.Message
	for seq := uint64(1); seq <= n; seq++ {
		all = append(all, msg(fmt.Sprintf("r%d", seq%4), seq, fmt.Sprintf("u%d", seq%7)))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 4 {
		wg.Go(func() {
			// Each writer covers half the messages, overlapping its neighbours.
			for start := w * n / 4; start < w*n/4+n/2; start += 50 {
				var batch []chat.Message
				for i := start; i < start+50; i++ {
					batch = append(batch, all[i%n])
				}
				for {
					_, err := s.Save(context.Background(), 0, batch)
					if err == nil {
						break
					}
					// A deadlock or busy error is a retry for the caller,
					// as in the consumer; anything else fails the test.
					if !retryable(err) {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	count, err := s.db.NewSelect().Model((*messageRow)(nil)).Count(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if count != n {
		t.Errorf("got %d rows, want %d", count, n)
	}
	rooms, err := s.Rooms(context.Background(), 10)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, r := range rooms {
		total += r.Messages
	}
	if total != n {
		t.Errorf("room counts add up to %d, want %d", total, n)
	}
}

func retryable(err error) bool {
	s := err.Error()
	return strings.Contains(s, "deadlock") || strings.Contains(s, "SQLITE_BUSY") || strings.Contains(s, "database is locked")
}
