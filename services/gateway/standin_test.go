package gateway

import (
	"encoding/json"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/testkit/natstest"
)

// storedMessages is room's first n messages in the CHAT stream, as a
// history database that has stored them would hold them.
func storedMessages(t *testing.T, nc *nats.Conn, room string, n int) []chat.Message {
	t.Helper()
	stored := natstest.RoomMessages(t, natstest.JetStream(t, nc), room)
	if len(stored) < n {
		t.Fatalf("%d messages of %s stored, want at least %d", len(stored), room, n)
	}
	return stored[:n]
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
