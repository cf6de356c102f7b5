package gateway

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/natstest"
)

// TestResumePagesThroughHistory: GATEWAY_RESUME_MAX defaults to 1000, but
// the history service answers at most 500 rows a page (and has_more). A
// client that missed 600 stored messages must get all 600 by paging, not a
// reset. The stand-in below applies services/history's cap.
func TestResumePagesThroughHistory(t *testing.T) {
	s := natstest.Start(t)
	base := startGateway(t, s, nil)
	nc := natstest.Connect(t, s)
	publishN(t, nc, "lobby", 0, 700)
	waitStored(t, nc, "lobby", 700)

	var stored []chat.Message
	for seq := uint64(1); len(stored) < 700; seq++ {
		m, err := nc.Request("$JS.API.STREAM.MSG.GET.CHAT", []byte(fmt.Sprintf(`{"seq":%d}`, seq)), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Message struct {
				Seq  uint64 `json:"seq"`
				Data []byte `json:"data"`
			} `json:"message"`
		}
		json.Unmarshal(m.Data, &got)
		cm, err := chat.ParseMessage(got.Message.Data, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		cm.Room, cm.Seq = "lobby", got.Message.Seq
		stored = append(stored, cm)
	}
	through := stored[len(stored)-1].Seq
	nc.QueueSubscribe(chat.HistorySubject("lobby"), chat.HistoryQueue, func(m *nats.Msg) {
		var req chat.HistoryRequest
		json.Unmarshal(m.Data, &req)
		if req.Limit == 0 {
			req.Limit = 50
		}
		if req.Limit > 500 { // services/history/query.go maxHistoryLimit
			req.Limit = 500
		}
		var rows []chat.Message
		for _, r := range stored {
			if (req.Before == 0 || r.Seq < req.Before) && r.Seq > req.After {
				rows = append(rows, r)
			}
		}
		more := len(rows) > req.Limit
		if more {
			if req.After > 0 {
				rows = rows[:req.Limit]
			} else {
				rows = rows[len(rows)-req.Limit:]
			}
		}
		b, _ := json.Marshal(chat.HistoryResponse{Messages: rows, HasMore: more, StoredThrough: through})
		m.Respond(b)
	})
	nc.Flush()

	since := stored[99].Seq // missed m100..m699: 600 messages, within ResumeMax=1000
	c := dial(t, base, fmt.Sprintf("/ws/chat/lobby/alice?since=%d", since))
	h := c.next("history")
	if h["reset"] == true || len(texts(h)) != 600 {
		t.Errorf("resume of 600 stored messages (ResumeMax 1000): reset=%v, %d messages", h["reset"], len(texts(h)))
	}
}
