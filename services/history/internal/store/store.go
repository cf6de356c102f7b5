// Package store keeps chat messages, rooms and users in Postgres or SQLite
// through bun. One implementation serves both; the few spots where their SQL
// differs are in the shared sqldb package and the migration templates.
package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/uptrace/bun"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/sqldb"
)

// Store is the history database. It is safe for concurrent use.
type Store struct {
	db *sqldb.DB
}

type messageRow struct {
	bun.BaseModel `bun:"table:messages,alias:m"`

	Room      string    `bun:"room,pk"`
	Epoch     int64     `bun:"epoch,pk"`
	Seq       int64     `bun:"seq,pk"`
	User      string    `bun:"user,notnull"`
	Text      string    `bun:"text,notnull"`
	Kind      string    `bun:"kind,notnull"`
	ClientID  string    `bun:"client_id,notnull"`
	Auth      string    `bun:"auth,notnull"`
	CreatedAt time.Time `bun:"created_at,notnull"`
}

type roomRow struct {
	bun.BaseModel `bun:"table:rooms,alias:r"`

	Name          string    `bun:"name,pk"`
	CreatedAt     time.Time `bun:"created_at,notnull"`
	LastMessageAt time.Time `bun:"last_message_at,notnull"`
	MessageCount  int64     `bun:"message_count,notnull"`
}

type epochRow struct {
	bun.BaseModel `bun:"table:epochs,alias:e"`

	Epoch     int64     `bun:"epoch,pk"`
	FirstSeen time.Time `bun:"first_seen,notnull"`
}

type userRow struct {
	bun.BaseModel `bun:"table:users,alias:u"`

	Name      string    `bun:"name,pk"`
	FirstSeen time.Time `bun:"first_seen,notnull"`
	LastSeen  time.Time `bun:"last_seen,notnull"`
}

// Dialect reports "postgres" or "sqlite".
func (s *Store) Dialect() string { return string(s.db.Engine) }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.Ping(ctx) }

// Close closes the database; calling it again returns the first result.
func (s *Store) Close() error { return s.db.Close() }

// Save stores msgs (each with Room and Seq set), all of the stream epoch
// epoch, in one transaction and returns how many were new. A message
// already stored (same room, epoch and seq, i.e. a redelivery) is skipped
// and does not count for its room or user, so saving the same batch twice
// changes nothing. The epoch should have been recorded with AddEpoch.
func (s *Store) Save(ctx context.Context, epoch int64, msgs []chat.Message) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	rows := make([]messageRow, len(msgs))
	for i, m := range msgs {
		rows[i] = messageRow{
			Room: m.Room, Epoch: epoch, Seq: toInt64(m.Seq), User: m.User, Text: m.Text,
			Kind: m.Kind, ClientID: m.ClientID, Auth: m.Auth, CreatedAt: m.TS.UTC(),
		}
	}
	// Concurrent writers (two instances, a redelivery) touch rows in the same
	// order, which keeps Postgres from deadlocking them against each other.
	slices.SortFunc(rows, func(a, b messageRow) int {
		if c := strings.Compare(a.Room, b.Room); c != 0 {
			return c
		}
		return cmp.Compare(a.Seq, b.Seq)
	})

	var inserted int
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var keys []struct {
			Room string `bun:"room"`
			Seq  int64  `bun:"seq"`
		}
		if _, err := tx.NewInsert().Model(&rows).
			On("CONFLICT (room, epoch, seq) DO NOTHING").
			Returning("room, seq").
			Exec(ctx, &keys); err != nil {
			return fmt.Errorf("insert messages: %w", err)
		}
		inserted = len(keys)
		if inserted == 0 {
			return nil
		}
		type key struct {
			room string
			seq  int64
		}
		isNew := make(map[key]bool, len(keys))
		for _, k := range keys {
			isNew[key{k.Room, k.Seq}] = true
		}
		rooms := map[string]*roomRow{}
		users := map[string]*userRow{}
		for _, r := range rows {
			if !isNew[key{r.Room, r.Seq}] {
				continue
			}
			// A batch may hold a message twice (a redelivery fetched
			// beside the original): it is one row and counts once.
			delete(isNew, key{r.Room, r.Seq})
			if room := rooms[r.Room]; room == nil {
				rooms[r.Room] = &roomRow{Name: r.Room, CreatedAt: r.CreatedAt, LastMessageAt: r.CreatedAt, MessageCount: 1}
			} else {
				room.CreatedAt = minTime(room.CreatedAt, r.CreatedAt)
				room.LastMessageAt = maxTime(room.LastMessageAt, r.CreatedAt)
				room.MessageCount++
			}
			if user := users[r.User]; user == nil {
				users[r.User] = &userRow{Name: r.User, FirstSeen: r.CreatedAt, LastSeen: r.CreatedAt}
			} else {
				user.FirstSeen = minTime(user.FirstSeen, r.CreatedAt)
				user.LastSeen = maxTime(user.LastSeen, r.CreatedAt)
			}
		}
		roomRows := sortedValues(rooms)
		if _, err := tx.NewInsert().Model(&roomRows).
			On("CONFLICT (name) DO UPDATE").
			Set("message_count = ?TableAlias.message_count + EXCLUDED.message_count").
			Set("created_at = " + earlier("created_at")).
			Set("last_message_at = " + later("last_message_at")).
			Exec(ctx); err != nil {
			return fmt.Errorf("upsert rooms: %w", err)
		}
		userRows := sortedValues(users)
		if _, err := tx.NewInsert().Model(&userRows).
			On("CONFLICT (name) DO UPDATE").
			Set("first_seen = " + earlier("first_seen")).
			Set("last_seen = " + later("last_seen")).
			Exec(ctx); err != nil {
			return fmt.Errorf("upsert users: %w", err)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("save %d messages: %w", len(msgs), err)
	}
	return inserted, nil
}

// earlier and later pick the smaller or larger of the stored and the new
// timestamp. CASE instead of LEAST/GREATEST (Postgres) or min/max (SQLite)
// keeps the statement the same in both dialects; SQLite compares bun's fixed
// UTC text format correctly.
func earlier(col string) string {
	return fmt.Sprintf("CASE WHEN EXCLUDED.%[1]s < ?TableAlias.%[1]s THEN EXCLUDED.%[1]s ELSE ?TableAlias.%[1]s END", col)
}

func later(col string) string {
	return fmt.Sprintf("CASE WHEN EXCLUDED.%[1]s > ?TableAlias.%[1]s THEN EXCLUDED.%[1]s ELSE ?TableAlias.%[1]s END", col)
}

// Query selects messages of a room in one stream epoch: with After set, the
// oldest Limit messages with After < seq < Before; otherwise the newest Limit
// messages with seq < Before. Zero Before or After means unbounded; zero
// Epoch means the newest epoch recorded (see NewestEpoch).
type Query struct {
	Epoch         int64
	Before, After uint64
	Limit         int
}

// Messages returns the messages q selects in ascending seq order, and
// whether more exist beyond them in the direction of the query (older ones
// for a Before-only query, newer ones below Before for an After query).
func (s *Store) Messages(ctx context.Context, room string, q Query) ([]chat.Message, bool, error) {
	if q.Limit <= 0 {
		return nil, false, errors.New("limit must be positive")
	}
	if q.Epoch == 0 {
		var err error
		if q.Epoch, err = s.NewestEpoch(ctx); err != nil {
			return nil, false, err
		}
	}
	var rows []messageRow
	sel := s.db.NewSelect().Model(&rows).Where("room = ?", room).Where("epoch = ?", q.Epoch).Limit(q.Limit + 1)
	if q.Before > 0 && q.Before <= math.MaxInt64 {
		sel = sel.Where("seq < ?", int64(q.Before))
	}
	if q.After > 0 {
		sel = sel.Where("seq > ?", toInt64(q.After)).Order("seq ASC")
	} else {
		sel = sel.Order("seq DESC")
	}
	if err := sel.Scan(ctx); err != nil {
		return nil, false, fmt.Errorf("select messages of %s: %w", room, err)
	}
	hasMore := len(rows) > q.Limit
	if hasMore {
		rows = rows[:q.Limit]
	}
	if q.After == 0 {
		slices.Reverse(rows)
	}
	msgs := make([]chat.Message, len(rows))
	for i, r := range rows {
		msgs[i] = chat.Message{
			Room: r.Room, Seq: uint64(r.Seq), User: r.User, Text: r.Text,
			Kind: r.Kind, ClientID: r.ClientID, Auth: r.Auth, TS: r.CreatedAt.UTC(),
		}
	}
	return msgs, hasMore, nil
}

// AddEpoch records a stream epoch before messages of it are saved. The
// first epoch ever recorded also takes the rows stored before epochs
// existed (epoch 0): they came from the stream that was current when the
// service was upgraded, which is the one it meets first. Recording an
// epoch again changes nothing.
func (s *Store) AddEpoch(ctx context.Context, epoch int64) error {
	if epoch <= 0 {
		return fmt.Errorf("add epoch %d: epochs are positive", epoch)
	}
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		known, err := tx.NewSelect().Model((*epochRow)(nil)).Count(ctx)
		if err != nil {
			return err
		}
		res, err := tx.NewInsert().Model(&epochRow{Epoch: epoch, FirstSeen: time.Now().UTC()}).
			On("CONFLICT (epoch) DO NOTHING").Exec(ctx)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 || known > 0 {
			return nil
		}
		_, err = tx.NewUpdate().Model((*messageRow)(nil)).Set("epoch = ?", epoch).Where("epoch = 0").Exec(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("add epoch %d: %w", epoch, err)
	}
	return nil
}

// NewestEpoch is the highest epoch recorded, 0 if none is.
func (s *Store) NewestEpoch(ctx context.Context) (int64, error) {
	var epoch int64
	if err := s.db.NewSelect().Model((*epochRow)(nil)).ColumnExpr("COALESCE(MAX(epoch), 0)").Scan(ctx, &epoch); err != nil {
		return 0, fmt.Errorf("newest epoch: %w", err)
	}
	return epoch, nil
}

// PreviousEpoch is the highest epoch recorded below epoch, 0 if none is.
func (s *Store) PreviousEpoch(ctx context.Context, epoch int64) (int64, error) {
	var prev int64
	if err := s.db.NewSelect().Model((*epochRow)(nil)).ColumnExpr("COALESCE(MAX(epoch), 0)").
		Where("epoch < ?", epoch).Scan(ctx, &prev); err != nil {
		return 0, fmt.Errorf("epoch before %d: %w", epoch, err)
	}
	return prev, nil
}

// HighWater is the highest seq stored in epoch, 0 if none. It looks the
// maximum up room by room, on the primary key, instead of scanning every
// message.
func (s *Store) HighWater(ctx context.Context, epoch int64) (uint64, error) {
	var seq int64
	if err := s.db.NewRaw(
		"SELECT COALESCE(MAX((SELECT MAX(m.seq) FROM messages AS m WHERE m.room = r.name AND m.epoch = ?)), 0) FROM rooms AS r",
		epoch,
	).Scan(ctx, &seq); err != nil {
		return 0, fmt.Errorf("high water mark of epoch %d: %w", epoch, err)
	}
	return uint64(seq), nil
}

// Rooms returns up to limit rooms, most recently active first.
func (s *Store) Rooms(ctx context.Context, limit int) ([]chat.Room, error) {
	var rows []roomRow
	if err := s.db.NewSelect().Model(&rows).
		OrderExpr("last_message_at DESC, name ASC").
		Limit(limit).
		Scan(ctx); err != nil {
		return nil, fmt.Errorf("select rooms: %w", err)
	}
	rooms := make([]chat.Room, len(rows))
	for i, r := range rows {
		rooms[i] = chat.Room{
			Name: r.Name, Messages: r.MessageCount,
			CreatedAt: r.CreatedAt.UTC(), LastMessageAt: r.LastMessageAt.UTC(),
		}
	}
	return rooms, nil
}

func sortedValues[T any](m map[string]*T) []T {
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	slices.Sort(names)
	out := make([]T, len(names))
	for i, name := range names {
		out[i] = *m[name]
	}
	return out
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// toInt64 clamps a stream sequence to the database's signed BIGINT; real
// sequences never come near the limit.
func toInt64(seq uint64) int64 {
	if seq > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(seq)
}
