package history

import (
	"fmt"
	"testing"
	"time"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/testkit"
	"github.com/natschat/chat/shared/testkit/natstest"
)

// TestQueries drives history.room.<room> and history.rooms over NATS.
func TestQueries(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	cfg := testConfig(t, s)
	st := openStore(t, sqliteBackend.setup(t, &cfg))
	startHistory(t, cfg, nc)

	// Room "q" gets every third message (seqs 1, 4, 7, ...), so its seqs are
	// not contiguous; "big" gets 600 to test the cap; "quiet" is the most
	// recently active room.
	publish(t, nc, []string{"q", "other", "other"}, 0, 90)
	publish(t, nc, []string{"big"}, 90, 600)
	// An explicit ts two minutes ahead (within chat.MaxClockSkew, so it is
	// kept) makes "quiet" the most recent room even if its arrival shares a
	// microsecond with the last message of "big".
	ts := time.Now().Add(2 * time.Minute).UTC().Format(time.RFC3339Nano)
	if err := nc.Publish(chat.RoomSubject("quiet"), []byte(`{"text":"m-690","ts":"`+ts+`"}`)); err != nil {
		t.Fatal(err)
	}
	const last = 691
	waitStored(t, st, last, testkit.Deadline)
	qSeq := func(i int) uint64 { return uint64(3*i + 1) } // seq of the i-th message of q

	history := func(t *testing.T, room string, req any) chat.HistoryResponse {
		t.Helper()
		var resp chat.HistoryResponse
		if err := request(nc, chat.HistorySubject(room), req, &resp); err != nil {
			t.Fatal(err)
		}
		return resp
	}
	// The ack floor trails the commit by an ack round trip.
	testkit.WaitForState(t, testkit.Deadline, "stored_through to reach the last message", func() (bool, string) {
		resp := history(t, "q", nil)
		return resp.StoredThrough == last, fmt.Sprintf("stored_through %d", resp.StoredThrough)
	})

	t.Run("paging", func(t *testing.T) {
		tests := []struct {
			name    string
			req     any
			first   uint64 // seq of the first message returned
			n       int
			hasMore bool
		}{
			{"empty payload is the newest 50", nil, qSeq(0), 30, false},
			{"empty object", []byte(`{}`), qSeq(0), 30, false},
			{"newest", chat.HistoryRequest{Limit: 10}, qSeq(20), 10, true},
			{"before", chat.HistoryRequest{Before: qSeq(20), Limit: 10}, qSeq(10), 10, true},
			{"before reaching the start", chat.HistoryRequest{Before: qSeq(5), Limit: 10}, qSeq(0), 5, false},
			{"after", chat.HistoryRequest{After: qSeq(3), Limit: 5}, qSeq(4), 5, true},
			{"after reaching the end", chat.HistoryRequest{After: qSeq(25), Limit: 10}, qSeq(26), 4, false},
			{"after and before", chat.HistoryRequest{After: qSeq(3), Before: qSeq(9), Limit: 5}, qSeq(4), 5, false},
			{"after and before with more", chat.HistoryRequest{After: qSeq(3), Before: qSeq(10), Limit: 5}, qSeq(4), 5, true},
			{"nothing newer", chat.HistoryRequest{After: qSeq(29)}, 0, 0, false},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				resp := history(t, "q", tt.req)
				if resp.Error != "" {
					t.Fatalf("error %q", resp.Error)
				}
				if len(resp.Messages) != tt.n || resp.HasMore != tt.hasMore {
					t.Fatalf("got %d messages has_more=%v, want %d has_more=%v", len(resp.Messages), resp.HasMore, tt.n, tt.hasMore)
				}
				for i, m := range resp.Messages {
					if want := tt.first + uint64(3*i); m.Seq != want || m.Room != "q" {
						t.Errorf("message %d: got %s seq %d, want q seq %d", i, m.Room, m.Seq, want)
					}
				}
				if resp.StoredThrough != last {
					t.Errorf("stored_through %d, want %d", resp.StoredThrough, last)
				}
			})
		}
	})

	t.Run("message fields", func(t *testing.T) {
		resp := history(t, "q", chat.HistoryRequest{Limit: 1})
		m := resp.Messages[0]
		want := chat.Message{Room: "q", Seq: 88, User: "u3", Text: "m-87", Kind: chat.KindUser, ClientID: "c-87", TS: m.TS}
		if m != want || m.TS.IsZero() {
			t.Errorf("got %+v, want %+v", m, want)
		}
	})

	t.Run("limit is capped", func(t *testing.T) {
		resp := history(t, "big", chat.HistoryRequest{Limit: 100000})
		if len(resp.Messages) != maxHistoryLimit || !resp.HasMore {
			t.Errorf("got %d messages has_more=%v, want %d and more", len(resp.Messages), resp.HasMore, maxHistoryLimit)
		}
	})

	t.Run("unknown room is empty", func(t *testing.T) {
		resp := history(t, "nobody-here", nil)
		if resp.Error != "" || len(resp.Messages) != 0 || resp.Messages == nil {
			t.Errorf("got %+v, want an empty list", resp)
		}
	})

	t.Run("bad requests", func(t *testing.T) {
		for _, req := range []string{`garbage`, `{"limit":-1}`, `{"before":-5}`, `{"after":"x"}`, `[1]`} {
			resp := history(t, "q", []byte(req))
			if resp.Error == "" || len(resp.Messages) != 0 {
				t.Errorf("request %s: got %+v, want an error", req, resp)
			}
		}
		var resp chat.HistoryResponse
		if err := request(nc, chat.HistoryPrefix+"b@d", nil, &resp); err != nil {
			t.Fatal(err)
		}
		if resp.Error == "" {
			t.Error("invalid room name accepted")
		}
	})

	t.Run("rooms", func(t *testing.T) {
		var resp chat.RoomsResponse
		if err := request(nc, chat.HistoryRooms, nil, &resp); err != nil {
			t.Fatal(err)
		}
		got := map[string]int64{}
		var names []string
		for _, r := range resp.Rooms {
			got[r.Name] = r.Messages
			names = append(names, r.Name)
		}
		if len(names) != 4 || names[0] != "quiet" || names[1] != "big" {
			t.Errorf("got rooms %v, want quiet, big, then the others", names)
		}
		if got["q"] != 30 || got["other"] != 60 || got["big"] != 600 || got["quiet"] != 1 {
			t.Errorf("got counts %v", got)
		}

		if err := request(nc, chat.HistoryRooms, chat.HistoryRequest{Limit: 2}, &resp); err != nil {
			t.Fatal(err)
		}
		if len(resp.Rooms) != 2 || resp.Error != "" {
			t.Errorf("limit 2: got %+v", resp)
		}
		for _, req := range []string{`{"limit":-1}`, `nope`} {
			resp = chat.RoomsResponse{}
			if err := request(nc, chat.HistoryRooms, []byte(req), &resp); err != nil {
				t.Fatal(err)
			}
			if resp.Error == "" {
				t.Errorf("request %s: got %+v, want an error", req, resp)
			}
		}
	})
}
