package gateway

import (
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/testkit"
)

// storedMessages reads room's first n messages back from the CHAT stream,
// as a history database that has stored them would hold them.
func storedMessages(t *testing.T, nc *nats.Conn, room string, n int) []chat.Message {
	t.Helper()
	var stored []chat.Message
	for seq := uint64(1); len(stored) < n; seq++ {
		m, err := nc.Request("$JS.API.STREAM.MSG.GET.CHAT", []byte(fmt.Sprintf(`{"seq":%d}`, seq)), testkit.Deadline)
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Message struct {
				Subject string `json:"subject"`
				Seq     uint64 `json:"seq"`
				Data    []byte `json:"data"`
			} `json:"message"`
		}
		if err := json.Unmarshal(m.Data, &got); err != nil {
			t.Fatal(err)
		}
		if got.Message.Subject != chat.RoomSubject(room) {
			continue
		}
		cm, err := chat.ParseMessage(got.Message.Data, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		cm.Room, cm.Seq = room, got.Message.Seq
		stored = append(stored, cm)
	}
	return stored
}

// standInHistory answers history.room.<room> from stored with the given
// stored_through, paging like services/history (at most 500 rows). It
// counts the queries it answered.
func standInHistory(t *testing.T, nc *nats.Conn, room string, stored []chat.Message, storedThrough uint64) *atomic.Int32 {
	t.Helper()
	var queries atomic.Int32
	_, err := nc.QueueSubscribe(chat.HistorySubject(room), chat.HistoryQueue, func(m *nats.Msg) {
		queries.Add(1)
		var req chat.HistoryRequest
		json.Unmarshal(m.Data, &req)
		req.Limit = min(max(req.Limit, 1), 500)
		var rows []chat.Message
		for _, r := range stored {
			if (req.Before == 0 || r.Seq < req.Before) && r.Seq > req.After {
				rows = append(rows, r)
			}
		}
		more := len(rows) > req.Limit
		if more && req.After > 0 {
			rows = rows[:req.Limit]
		} else if more {
			rows = rows[len(rows)-req.Limit:]
		}
		b, _ := json.Marshal(chat.HistoryResponse{Messages: rows, HasMore: more, StoredThrough: storedThrough})
		m.Respond(b)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return &queries
}
