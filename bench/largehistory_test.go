package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/natschat/chat/services/gateway"
	"github.com/natschat/chat/services/history"
	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/testkit"
	"github.com/natschat/chat/shared/testkit/natstest"
	"github.com/natschat/chat/shared/testkit/pgtest"
)

// startHistoryStack serves a real history service (on the database at
// databaseURL, SQLite in a temporary file if empty) and gateway, with an
// embedded nats-server, and returns the gateway's base URL and the server.
func startHistoryStack(t *testing.T, databaseURL string) (string, *server.Server) {
	t.Helper()
	s := natstest.Start(t)
	log := testkit.Logger(t)
	var hcfg history.Config
	if err := envconfig.Process("CHATBENCH_TEST_HISTORY", &hcfg); err != nil {
		t.Fatal(err)
	}
	hcfg.URL, hcfg.DatabaseURL, hcfg.SQLitePath = s.ClientURL(), databaseURL, filepath.Join(t.TempDir(), "chat.db")
	nc := natstest.Connect(t, s)
	// History first: it owns the stream, and its consumer must exist
	// before the gateway starts (see the all-in-one's browser tests).
	testkit.Start(t, "history", func(ctx context.Context) error { return history.Run(ctx, hcfg, log) })
	testkit.WaitFor(t, "history answering", func() bool {
		m, err := nc.Request(chat.HistoryRooms, nil, time.Second)
		return err == nil && !strings.Contains(string(m.Data), `"error"`)
	})
	var cfg gateway.Config
	if err := envconfig.Process("CHATBENCH_TEST_DEFAULTS", &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.URL = s.ClientURL()
	cfg.Rate, cfg.Burst = 1e6, 1e6
	ln := testkit.Listen(t)
	testkit.Start(t, "gateway", func(ctx context.Context) error { return gateway.Serve(ctx, cfg, nc, ln, log) })
	base := "http://" + ln.Addr().String()
	testkit.WaitReady(t, base)
	return base, s
}

// tinyHistory is S8 with 3,000 messages: the figures of a million at a
// small scale.
var tinyHistory = largeHistory{messages: 3000, joins: 20, pages: 40, limit: 50}

func TestLargeHistory(t *testing.T) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			var url string
			if db == "postgres" {
				url = pgtest.Postgres(t).URL
			}
			base, s := startHistoryStack(t, url)
			b := newTestBench(t, base)
			b.natsURL = s.ClientURL()
			rows := b.runLargeHistory(context.Background(), tinyHistory)
			if len(rows) != 3 {
				t.Fatalf("got %d rows (%v), want fill, join and page", len(rows), rows[0].Problems)
			}
			for _, r := range rows {
				if r.failed() {
					t.Fatalf("%s: problems: %v", r.Name, r.Problems)
				}
			}
			fill, join, page := rows[0], rows[1], rows[2]
			if n := int64(tinyHistory.messages); fill.Sent != n || fill.Expected != n || fill.Delivered != n || fill.Lost != 0 {
				t.Errorf("fill: sent %d, expected %d, stored %d, lost %d; want all %d stored", fill.Sent, fill.Expected, fill.Delivered, fill.Lost, n)
			}
			if j := int64(tinyHistory.joins); join.Sent != j || join.Lat.n != uint64(j) || join.Expected != j*joinBacklog || join.Delivered != join.Expected {
				t.Errorf("join: %d joins, %d timed, %d of %d messages right; want %d joins of %d messages each",
					join.Sent, join.Lat.n, join.Delivered, join.Expected, j, joinBacklog)
			}
			if p := int64(tinyHistory.pages); page.Sent != p || page.Lat.n != uint64(p) || page.Expected == 0 || page.Delivered != page.Expected {
				t.Errorf("page: %d pages, %d timed, %d of %d messages right; want %d pages", page.Sent, page.Lat.n, page.Delivered, page.Expected, p)
			}
			if !strings.Contains(join.Target, "join p99<20ms") {
				t.Errorf("join target %q, want the p99 target", join.Target)
			}
			assertAllStored(t, natstest.Connect(t, s), b.tag+"-S8", tinyHistory.messages)
		})
	}
}

// assertAllStored reads the whole room from the history service, newest
// page first, and checks that it holds messages 0..n-1 of the fill, each
// once, in order.
func assertAllStored(t *testing.T, nc *nats.Conn, room string, n int) {
	t.Helper()
	next, before := n-1, uint64(0)
	for {
		req, _ := json.Marshal(chat.HistoryRequest{Before: before, Limit: 500})
		m, err := nc.Request(chat.HistorySubject(room), req, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var resp chat.HistoryResponse
		if err := json.Unmarshal(m.Data, &resp); err != nil || resp.Error != "" {
			t.Fatalf("history answer %.200s: %v", m.Data, err)
		}
		for _, msg := range slices.Backward(resp.Messages) {
			got, ok := messageNumber([]byte(`"text":"` + msg.Text + `"`))
			if !ok || got != next {
				t.Fatalf("message at seq %d is %q, want number %d", msg.Seq, msg.Text, next)
			}
			next--
			before = msg.Seq
		}
		if !resp.HasMore || len(resp.Messages) == 0 {
			break
		}
	}
	if next != -1 {
		t.Errorf("history holds messages %d..%d of the room, want 0..%d", next+1, n-1, n-1)
	}
}

// TestPageCheck: a history frame missing a message, carrying another
// room's or ending early is told apart from a right one.
func TestPageCheck(t *testing.T) {
	// Messages 0..9 stored at seqs 11, 13, ..., 29 (another room between).
	sr := storedRoom{}
	for n := range 10 {
		sr.seqs = append(sr.seqs, uint64(11+2*n))
	}
	sr.sorted = sr.seqs
	msg := func(n int, seq uint64) chat.Message {
		return chat.Message{Seq: seq, Text: "b1|0|" + strconv.Itoa(n) + "|1"}
	}
	page := func(more bool, msgs ...chat.Message) chat.ServerFrame {
		return chat.ServerFrame{Type: chat.FrameHistory, Messages: msgs, HasMore: more}
	}
	for _, tt := range []struct {
		name   string
		before uint64
		f      chat.ServerFrame
		want   pageTally
	}{
		{"newest", 30, page(true, msg(7, 25), msg(8, 27), msg(9, 29)), pageTally{expected: 3, right: 3}},
		{"oldest", 14, page(false, msg(0, 11), msg(1, 13)), pageTally{expected: 2, right: 2}},
		{"has_more on the oldest page is allowed", 12, page(true, msg(0, 11)), pageTally{expected: 1, right: 1}},
		{"one missing", 30, page(true, msg(7, 25), msg(9, 29)), pageTally{expected: 3, right: 2}},
		{"another room's message", 30, page(true, msg(7, 25), msg(8, 26), msg(9, 29)), pageTally{expected: 3, right: 2, wrong: 1}},
		{"another text at the seq", 30, page(true, msg(7, 25), msg(3, 27), msg(9, 29)), pageTally{expected: 3, right: 2, wrong: 1}},
		{"no has_more with older stored", 30, page(false, msg(7, 25), msg(8, 27), msg(9, 29)), pageTally{expected: 3, right: 3, noMore: 1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got pageTally
			sr.check(tt.f, tt.before, 3, &got)
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
