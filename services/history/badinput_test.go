package history

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/stream"
	"github.com/natschat/chat/shared/testkit"
	"github.com/natschat/chat/shared/testkit/natstest"
)

// TestForgedStatusHeader: a chat message with an empty body and a
// "Status: 404" header, as the server sends to end a pull request, is a
// message like any other: refused as garbage and acknowledged. The
// jetstream client took it for a server status, never acked it, and ended
// every fetch it was in, so the ack floor (stored_through) stayed behind
// it forever and the messages after it in a batch waited for redelivery.
func TestForgedStatusHeader(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	js := natstest.JetStream(t, nc)
	cfg := testConfig(t, s)
	st := openStore(t, sqliteBackend.setup(t, &cfg))
	startHistory(t, cfg, nc)

	ctx := context.Background()
	for _, status := range []string{"404", "408", "409", "503", "100"} {
		m := nats.NewMsg(chat.RoomSubject("x"))
		m.Header.Set("Status", status)
		m.Header.Set("Description", "No Messages")
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
		publish(t, nc, []string{"x"}, 0, 1) // a good one after each
	}
	testkit.WaitForState(t, 10*time.Second, "the good messages stored", func() (bool, string) {
		c, err := readContents(st)
		return err == nil && c.total == 5, fmt.Sprintf("%d stored (%v)", c.total, err)
	})
	last := publishedSeq(t, js) // the last good one is stored: all are in
	// Well within the ack wait (30s): nothing waits for a redelivery.
	waitAckFloor(t, js, last, 10*time.Second)
}

// TestBadInputCorpus publishes garbage on every subject history reads: the
// CHAT stream's chat.room.* (through the stream, with forged headers too),
// history.room.* and history.rooms. Each is refused with a log line or an
// error reply, the service keeps running, nothing is left for redelivery,
// and valid traffic afterwards works.
func TestBadInputCorpus(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	js := natstest.JetStream(t, nc)
	cfg := testConfig(t, s)
	st := openStore(t, sqliteBackend.setup(t, &cfg))
	log := &logBuffer{}
	startHistoryWithLog(t, cfg, nc, log)
	ctx := context.Background()

	publish(t, nc, []string{"x"}, 0, 1) // m-0, stored before the garbage
	big := strings.Repeat("x", chat.MaxTextLen+1)
	messages := []string{
		// not JSON
		`hello`, `{`, `"just a string"`, `123`, `null`, `[]`, `true`, "\x00\x01\x02", "{\"text\":\"a\x00b\"}",
		// wrong types
		`{"text":42}`, `{"text":["a"]}`, `{"text":"x","user":7}`, `{"text":"x","ts":123}`,
		`{"text":"x","kind":true}`, `{"text":"x","client_id":{}}`, `{"text":null}`,
		// bad values
		`{}`, `{"text":""}`, `{"text":"` + big + `"}`, `{"text":"x","kind":"admin"}`,
		`{"text":"x","user":"a.b"}`, `{"text":"x","user":"` + strings.Repeat("u", 65) + `"}`,
		`{"text":"x","client_id":"` + strings.Repeat("c", 200) + `"}`,
		// NUL, control and invisible texts
		`{"text":"\u0000"}`, `{"text":"a\u0000b"}`, `{"text":"\u001b[2J\u001b[H"}`, `{"text":"\u0007"}`,
		`{"text":"\u200b\u200c\u200d\ufeff"}`, `{"text":"\u202e"}`, `{"text":"\u2066\u2069\u200e"}`,
		`{"text":"x","user":"\u202eevil"}`, "{\"text\":\"caf\xe9\"}",
		// deep nesting
		strings.Repeat("[", 20000) + strings.Repeat("]", 20000),
	}
	for _, m := range messages {
		if err := nc.Publish(chat.RoomSubject("x"), []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Publish(chat.RoomPrefix+"b@d", []byte(`{"text":"a room name no one may use"}`)); err != nil {
		t.Fatal(err)
	}
	bad := len(messages) + 1
	// Forged headers: a fake position is ignored (the stream's counts), and
	// a rollup, which would purge the room, is refused by the stream.
	forged := nats.NewMsg(chat.RoomSubject("x"))
	forged.Header.Set("Nats-Sequence", "999999999")
	forged.Header.Set("Nats-Last-Sequence", "999999998")
	forged.Header.Set("Nats-Time-Stamp", "9999-01-01T00:00:00Z")
	forged.Data = []byte(`{"user":"ops","text":"forged position"}`)
	if _, err := js.PublishMsg(ctx, forged); err != nil {
		t.Fatal(err)
	}
	rollup := nats.NewMsg(chat.RoomSubject("x"))
	rollup.Header.Set("Nats-Rollup", "sub")
	rollup.Data = []byte(`{"text":"rollup"}`)
	if _, err := js.PublishMsg(ctx, rollup); err == nil {
		t.Error("the stream took a rollup, which purges a room")
	}
	publish(t, nc, []string{"x"}, 1, 1) // m-1, after the garbage
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	c := waitStored(t, st, 3, 20*time.Second)
	// Read once m-1 is stored: a core NATS publish is flushed to the
	// server before JetStream has stored it.
	last := publishedSeq(t, js)
	var texts []string
	for _, m := range c.rows["x"] {
		texts = append(texts, m.Text)
		if m.Text == "forged position" && (m.Seq > last || m.TS.Year() == 9999) {
			t.Errorf("forged headers believed: %+v", m)
		}
	}
	if got := strings.Join(texts, ","); got != "m-0,forged position,m-1" || c.total != 3 {
		t.Errorf("stored %q (%d rows), want m-0,forged position,m-1", got, c.total)
	}
	waitAckFloor(t, js, last, 10*time.Second)
	if got := log.count(`msg="bad chat message not stored"`); got != bad {
		t.Errorf("logged %d bad messages, want %d:\n%s", got, bad, log)
	}

	// Requests: each bad one gets an error reply, and the service answers
	// good ones afterwards.
	for _, tc := range []struct{ subject, data string }{
		{chat.HistorySubject("x"), `garbage`},
		{chat.HistorySubject("x"), `{"limit":"x"}`},
		{chat.HistorySubject("x"), `{"limit":-1}`},
		{chat.HistorySubject("x"), `{"before":-1}`},
		{chat.HistorySubject("x"), `{"after":18446744073709551616}`},
		{chat.HistorySubject("x"), `{"epoch":-5}`},
		{chat.HistorySubject("x"), `{"limit":1e309}`},
		{chat.HistorySubject("x"), "\x00"},
		{chat.HistorySubject("x"), `[` + strings.Repeat(`{"limit":1},`, 50000) + `{}]`},
		{chat.HistorySubject("x"), strings.Repeat("[", 20000)},
		{chat.HistoryPrefix + "b@d", ``},
		{chat.HistoryPrefix + "x.y", ``},
		{chat.HistoryPrefix + strings.Repeat("r", 65), ``},
		{chat.HistoryRooms, `{"limit":-1}`},
		{chat.HistoryRooms, `{"limit":"10"}`},
		{chat.HistoryRooms, `nope`},
	} {
		m, err := nc.Request(tc.subject, []byte(tc.data), 5*time.Second)
		if err != nil {
			if tc.subject == chat.HistoryPrefix+"x.y" && err == nats.ErrNoResponders {
				continue // two tokens: not a subject history serves at all
			}
			t.Errorf("%s %.40q: %v", tc.subject, tc.data, err)
			continue
		}
		var reply struct {
			Error string `json:"error"`
		}
		if err := json.Unmarshal(m.Data, &reply); err != nil || reply.Error == "" {
			t.Errorf("%s %.40q: got %s, want an error reply", tc.subject, tc.data, m.Data)
		}
	}
	// Headers on a request change nothing.
	req := nats.NewMsg(chat.HistorySubject("x"))
	req.Header.Set("Status", "503")
	req.Reply = nc.NewRespInbox()
	reply, err := nc.RequestMsg(req, 5*time.Second)
	if err != nil {
		t.Fatalf("request with a Status header: %v", err)
	}
	var resp chat.HistoryResponse
	if err := json.Unmarshal(reply.Data, &resp); err != nil || resp.Error != "" || len(resp.Messages) != 3 {
		t.Errorf("valid request after the garbage: got %s (%v)", reply.Data, err)
	}
	publish(t, nc, []string{"x"}, 2, 1)
	waitStored(t, st, 4, 10*time.Second)
}

// publishedSeq is the CHAT stream's last sequence.
func publishedSeq(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	str, err := js.Stream(context.Background(), stream.Chat)
	if err != nil {
		t.Fatal(err)
	}
	return str.CachedInfo().State.LastSeq
}

// waitAckFloor waits until the history consumer has acknowledged (stored or
// refused) everything up to seq and holds nothing for redelivery.
func waitAckFloor(t *testing.T, js jetstream.JetStream, seq uint64, timeout time.Duration) {
	t.Helper()
	testkit.WaitForState(t, timeout, fmt.Sprintf("ack floor at %d", seq), func() (bool, string) {
		cons, err := js.Consumer(context.Background(), stream.Chat, consumerName)
		if err != nil {
			return false, err.Error()
		}
		info := cons.CachedInfo()
		return info.AckFloor.Stream == seq && info.NumAckPending == 0,
			fmt.Sprintf("ack floor %d, %d pending, %d redelivered", info.AckFloor.Stream, info.NumAckPending, info.NumRedelivered)
	})
}

// logBuffer is a service log a test can read.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) count(substr string) int { return strings.Count(b.String(), substr) }

// startHistoryWithLog is startHistory with the service log in buf.
func startHistoryWithLog(t *testing.T, cfg Config, nc *nats.Conn, buf *logBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	go func() { errc <- Run(ctx, cfg, log) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Run did not return within 30s of cancel")
		}
		if t.Failed() {
			t.Logf("service log:\n%s", buf)
		}
	})
	testkit.WaitForState(t, 20*time.Second, "history answers queries", func() (bool, string) {
		var resp chat.RoomsResponse
		if err := request(nc, chat.HistoryRooms, nil, &resp); err != nil {
			return false, err.Error()
		}
		return resp.Error == "", resp.Error
	})
}
