package store

import (
	"context"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/testkit/pgtest"
)

// Two CHAT stream epochs: created at these times (microseconds).
const (
	epoch1 int64 = 1_795_000_000_000_000
	epoch2 int64 = 1_795_000_100_000_000
)

// TestEpochs: a stream that starts over numbers its messages from 1 again;
// in the new epoch they are new rows, not duplicates of the old ones.
func TestEpochs(t *testing.T) {
	dialects := map[string]func(t *testing.T) Options{
		"sqlite":   func(t *testing.T) Options { return Options{SQLitePath: filepath.Join(t.TempDir(), "chat.db")} },
		"postgres": func(t *testing.T) Options { return Options{URL: pgtest.Postgres(t).URL} },
	}
	for name, options := range dialects {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			t.Run("SameSeqsInTwoEpochs", func(t *testing.T) { testSameSeqsInTwoEpochs(t, open(t, options(t))) })
			t.Run("LegacyRowsJoinTheFirstEpoch", func(t *testing.T) { testLegacyRows(t, options(t)) })
		})
	}
}

func testSameSeqsInTwoEpochs(t *testing.T, s *Store) {
	ctx := context.Background()
	for _, e := range []int64{epoch1, epoch2} {
		if err := s.AddEpoch(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddEpoch(ctx, epoch1); err != nil {
		t.Fatalf("recording an epoch again: %v", err)
	}
	old := []chat.Message{msg("a", 1, "u"), msg("a", 2, "u"), msg("b", 3, "u")}
	if n, err := s.Save(ctx, epoch1, old); err != nil || n != 3 {
		t.Fatalf("save epoch 1: %d, %v", n, err)
	}
	// The new stream's first messages have the old ones' seqs.
	fresh := []chat.Message{msg("a", 1, "v"), msg("a", 2, "v")}
	for i := range fresh {
		fresh[i].Text = "new " + fresh[i].Text
	}
	if n, err := s.Save(ctx, epoch2, fresh); err != nil || n != 2 {
		t.Fatalf("save epoch 2: got %d new, %v; want 2 new", n, err)
	}
	if n, err := s.Save(ctx, epoch2, fresh); err != nil || n != 0 {
		t.Errorf("redelivery in epoch 2: got %d new, %v; want 0", n, err)
	}

	texts := func(q Query) []string {
		t.Helper()
		msgs, _, err := s.Messages(ctx, "a", q)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range msgs {
			out = append(out, m.Text)
		}
		return out
	}
	if got, want := texts(Query{Epoch: epoch1, Limit: 10}), []string{"text 1", "text 2"}; !slices.Equal(got, want) {
		t.Errorf("epoch 1: got %q, want %q", got, want)
	}
	if got, want := texts(Query{Epoch: epoch2, Limit: 10}), []string{"new text 1", "new text 2"}; !slices.Equal(got, want) {
		t.Errorf("epoch 2: got %q, want %q", got, want)
	}
	if got, want := texts(Query{Limit: 10}), []string{"new text 1", "new text 2"}; !slices.Equal(got, want) {
		t.Errorf("no epoch (the newest): got %q, want %q", got, want)
	}
	if got := texts(Query{Epoch: 12345, Limit: 10}); len(got) != 0 {
		t.Errorf("unknown epoch: got %q, want nothing", got)
	}

	rooms, err := s.Rooms(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rooms {
		if want := map[string]int64{"a": 4, "b": 1}[r.Name]; r.Messages != want {
			t.Errorf("room %s counts %d messages, want %d (every epoch)", r.Name, r.Messages, want)
		}
	}

	for _, tt := range []struct {
		epoch int64
		high  uint64
		prev  int64
	}{{epoch1, 3, 0}, {epoch2, 2, epoch1}, {epoch2 + 1, 0, epoch2}} {
		if got, err := s.HighWater(ctx, tt.epoch); err != nil || got != tt.high {
			t.Errorf("HighWater(%d) = %d, %v; want %d", tt.epoch, got, err, tt.high)
		}
		if got, err := s.PreviousEpoch(ctx, tt.epoch); err != nil || got != tt.prev {
			t.Errorf("PreviousEpoch(%d) = %d, %v; want %d", tt.epoch, got, err, tt.prev)
		}
	}
	if got, err := s.NewestEpoch(ctx); err != nil || got != epoch2 {
		t.Errorf("NewestEpoch = %d, %v; want %d", got, err, epoch2)
	}
	if err := s.AddEpoch(ctx, 0); err == nil {
		t.Error("epoch 0 recorded")
	}
}

// testLegacyRows upgrades a database of the first schema, with messages in
// it: they keep their rows and belong to the first epoch recorded after.
func testLegacyRows(t *testing.T, o Options) {
	ctx := context.Background()
	s, err := Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.migrate(ctx, firstMigration(t)); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO messages (room, seq, "user", text, kind, client_id, created_at) VALUES ('a', 1, 'u', 'old 1', 'user', '', ?), ('a', 2, 'u', 'old 2', 'user', '', ?)`,
		`INSERT INTO rooms (name, created_at, last_message_at, message_count) VALUES ('a', ?, ?, 2)`,
	} {
		if _, err := s.db.ExecContext(ctx, q, t0, t0); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	if got, err := s.HighWater(ctx, 0); err != nil || got != 2 {
		t.Fatalf("legacy rows after the upgrade: high water %d, %v; want 2 in epoch 0", got, err)
	}
	if err := s.AddEpoch(ctx, epoch1); err != nil {
		t.Fatal(err)
	}
	if err := s.AddEpoch(ctx, epoch2); err != nil {
		t.Fatal(err)
	}
	msgs, _, err := s.Messages(ctx, "a", Query{Epoch: epoch1, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 || msgs[0].Text != "old 1" || msgs[1].Text != "old 2" {
		t.Errorf("epoch 1 after the upgrade: got %+v, want the two old rows", msgs)
	}
	// A redelivery of an old message in its epoch is still a duplicate.
	if n, err := s.Save(ctx, epoch1, []chat.Message{{Room: "a", Seq: 2, User: "u", Text: "old 2", Kind: chat.KindUser, TS: t0}}); err != nil || n != 0 {
		t.Errorf("redelivered old message: got %d new, %v; want 0", n, err)
	}
	if got, err := s.HighWater(ctx, 0); err != nil || got != 0 {
		t.Errorf("epoch 0 after AddEpoch: high water %d, %v; want empty", got, err)
	}

	// Rolled back, the newest epoch's rows keep the old (room, seq) key.
	if _, err := s.Save(ctx, epoch2, []chat.Message{msg("a", 1, "v"), msg("a", 7, "v")}); err != nil {
		t.Fatal(err)
	}
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.migrator(sub)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Rollback(ctx); err != nil {
		t.Fatalf("roll back the epochs migration: %v", err)
	}
	var seqs []int64
	if err := s.db.NewSelect().Table("messages").Column("seq").Order("seq").Scan(ctx, &seqs); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seqs, []int64{1, 7}) {
		t.Errorf("after the rollback: seqs %v, want the newest epoch's 1, 7", seqs)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("migrate again after the rollback: %v", err)
	}
}

// firstMigration is the embedded migrations up to the first schema.
func firstMigration(t *testing.T) fs.FS {
	t.Helper()
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	first := fstest.MapFS{}
	entries, err := fs.ReadDir(sub, ".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "20260101000001_") {
			continue
		}
		b, err := fs.ReadFile(sub, e.Name())
		if err != nil {
			t.Fatal(err)
		}
		first[e.Name()] = &fstest.MapFile{Data: b}
	}
	if len(first) == 0 {
		t.Fatal("no first migration found")
	}
	return first
}
