package history

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/natschat/chat/services/history/internal/store"
	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/config"
	"github.com/natschat/chat/shared/testkit"
	"github.com/natschat/chat/shared/testkit/pgtest"
)

// backend is a database a test runs the service against.
type backend struct {
	name string
	// setup points cfg at a fresh database and returns it as store options.
	setup func(t *testing.T, cfg *Config) store.Options
}

var (
	sqliteBackend = backend{"sqlite", func(t *testing.T, cfg *Config) store.Options {
		cfg.SQLitePath = filepath.Join(t.TempDir(), "data", "chat.db")
		cfg.SQLiteBusyTimeout = 100 * time.Millisecond
		return store.Options{SQLitePath: cfg.SQLitePath, SQLiteBusyTimeout: time.Second}
	}}
	postgresBackend = backend{"postgres", func(t *testing.T, cfg *Config) store.Options {
		cfg.DatabaseURL = pgtest.Postgres(t).URL
		return store.Options{URL: cfg.DatabaseURL}
	}}
	backends = []backend{sqliteBackend, postgresBackend}
)

// testConfig is the default configuration pointed at s, with a short fetch
// wait so that instances stop quickly.
func testConfig(t *testing.T, s *server.Server) Config {
	t.Helper()
	var cfg Config
	// An unused prefix gives the defaults of the struct tags.
	if err := config.Load("HISTORYTEST", &cfg, nil, nil); err != nil {
		t.Fatal(err)
	}
	cfg.URL = s.ClientURL()
	cfg.DatabaseURL = ""
	cfg.FetchWait = 250 * time.Millisecond
	return cfg
}

// startHistory runs the service until the returned stop is called (at the
// latest when the test ends), and waits until it answers queries.
func startHistory(t *testing.T, cfg Config, nc *nats.Conn) (stop func()) {
	t.Helper()
	log := testkit.Logger(t) // before Start: printed after the service stopped
	stop = testkit.Start(t, "history", func(ctx context.Context) error { return Run(ctx, cfg, log) })
	testkit.WaitForState(t, testkit.Deadline, "history answers queries", func() (bool, string) {
		var resp chat.RoomsResponse
		if err := request(nc, chat.HistoryRooms, nil, &resp); err != nil {
			return false, err.Error()
		}
		return resp.Error == "", resp.Error
	})
	return stop
}

func request(nc *nats.Conn, subject string, req any, resp any) error {
	var data []byte
	switch r := req.(type) {
	case nil:
	case []byte:
		data = r
	default:
		var err error
		if data, err = json.Marshal(r); err != nil {
			return err
		}
	}
	m, err := nc.Request(subject, data, testkit.Deadline)
	if err != nil {
		return fmt.Errorf("request %s: %w", subject, err)
	}
	return json.Unmarshal(m.Data, resp)
}

// publish sends n messages with plain core NATS, message i to room
// rooms[i%len(rooms)] with text "m-<first+i>", and flushes.
func publish(t *testing.T, nc *nats.Conn, rooms []string, first, n int) {
	t.Helper()
	for i := first; i < first+n; i++ {
		data := fmt.Sprintf(`{"user":"u%d","text":"m-%d","client_id":"c-%d"}`, i%7, i, i)
		if err := nc.Publish(chat.RoomSubject(rooms[i%len(rooms)]), []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

func roomNames(n int) []string {
	rooms := make([]string, n)
	for i := range rooms {
		rooms[i] = fmt.Sprintf("room-%d", i)
	}
	return rooms
}

// contents is what the database holds, read directly, independently of the
// service under test.
type contents struct {
	rows   map[string][]chat.Message // per room, ascending seq
	counts map[string]int64          // rooms.message_count
	total  int
}

func openStore(t *testing.T, o store.Options) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func readContents(st *store.Store) (contents, error) {
	ctx := context.Background()
	c := contents{rows: map[string][]chat.Message{}, counts: map[string]int64{}}
	rooms, err := st.Rooms(ctx, 1000)
	if err != nil {
		return c, err
	}
	for _, r := range rooms {
		c.counts[r.Name] = r.Messages
		// Page backwards: After 0 means unbounded, not "from the start".
		var before uint64
		for {
			msgs, more, err := st.Messages(ctx, r.Name, store.Query{Before: before, Limit: 500})
			if err != nil {
				return c, err
			}
			c.rows[r.Name] = append(msgs, c.rows[r.Name]...)
			c.total += len(msgs)
			if !more || len(msgs) == 0 {
				break
			}
			before = msgs[0].Seq
		}
	}
	return c, nil
}

// waitStored waits until the database holds want messages in total and the
// room counters agree with the rows. The reads are not one snapshot, so
// while batches are still being committed the two can differ for a moment;
// a double-counted redelivery makes them differ for good.
func waitStored(t *testing.T, st *store.Store, want int, timeout time.Duration) contents {
	t.Helper()
	var c contents
	testkit.WaitForState(t, timeout, fmt.Sprintf("%d stored messages", want), func() (bool, string) {
		var err error
		c, err = readContents(st)
		if err != nil {
			return false, err.Error()
		}
		var counted int64
		for _, n := range c.counts {
			counted += n
		}
		return c.total >= want && counted == int64(c.total),
			fmt.Sprintf("%d rows stored, room counters add up to %d", c.total, counted)
	})
	return c
}

// waitRows waits until the database holds at least want messages, while
// messages are still flowing (when the room counters, read apart from the
// rows, may always be a batch behind).
func waitRows(t *testing.T, st *store.Store, want int, timeout time.Duration) {
	t.Helper()
	testkit.WaitForState(t, timeout, fmt.Sprintf("%d stored messages", want), func() (bool, string) {
		c, err := readContents(st)
		if err != nil {
			return false, err.Error()
		}
		return c.total >= want, fmt.Sprintf("%d rows stored", c.total)
	})
}

// checkExactlyOnce verifies that messages m-0 .. m-(n-1) published by
// publish are each stored once, with the stream sequence they got (seq =
// i+1 when they were the only messages published), in seq order per room,
// and that the room counts match the rows.
func checkExactlyOnce(t *testing.T, c contents, n int, seqIsIndex bool) {
	t.Helper()
	if c.total != n {
		t.Errorf("got %d rows, want %d", c.total, n)
	}
	seen := make(map[string]bool, n)
	var rooms []string
	for room := range c.rows {
		rooms = append(rooms, room)
	}
	sort.Strings(rooms)
	for _, room := range rooms {
		msgs := c.rows[room]
		if int64(len(msgs)) != c.counts[room] {
			t.Errorf("room %s: message_count %d, but %d rows", room, c.counts[room], len(msgs))
		}
		for i, m := range msgs {
			if seen[m.Text] {
				t.Errorf("room %s: %s stored twice", room, m.Text)
			}
			seen[m.Text] = true
			var idx int
			if _, err := fmt.Sscanf(m.Text, "m-%d", &idx); err != nil {
				t.Errorf("room %s: unexpected text %q", room, m.Text)
				continue
			}
			if i > 0 && m.Seq <= msgs[i-1].Seq {
				t.Errorf("room %s: seq %d after %d", room, m.Seq, msgs[i-1].Seq)
			}
			if seqIsIndex && m.Seq != uint64(idx+1) {
				t.Errorf("room %s: %s has seq %d, want %d", room, m.Text, m.Seq, idx+1)
			}
			if m.User != fmt.Sprintf("u%d", idx%7) || m.ClientID != fmt.Sprintf("c-%d", idx) || m.Kind != chat.KindUser {
				t.Errorf("room %s: fields of %s not kept: %+v", room, m.Text, m)
			}
		}
	}
	var missing []string
	for i := range n {
		if text := fmt.Sprintf("m-%d", i); !seen[text] {
			missing = append(missing, text)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d messages not stored, first: %v", len(missing), missing[:min(len(missing), 10)])
	}
}

func TestMain(m *testing.M) { testkit.Main(m) }
