package gateway

import (
	"fmt"
	"testing"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/testkit/natstest"
	"github.com/natschat/chat/shared/testkit/wstest"
)

// TestResumePagesThroughHistory: GATEWAY_RESUME_MAX defaults to 1000, but
// the history service answers at most 500 rows a page (and has_more). A
// client that missed 600 stored messages must get all 600 by paging, not a
// reset. The stand-in below applies services/history's cap.
func TestResumePagesThroughHistory(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	base := startGateway(t, s, nil)
	nc := natstest.Connect(t, s)
	publishN(t, nc, "lobby", 0, 700)
	waitStored(t, nc, "lobby", 700)

	stored := storedMessages(t, nc, "lobby", 700)
	standInHistory(t, nc, "lobby", stored, stored[len(stored)-1].Seq)

	since := stored[99].Seq // missed m100..m699: 600 messages, within ResumeMax=1000
	c := wstest.Dial(t, base+fmt.Sprintf("/ws/chat/lobby/alice?since=%d", since))
	h := c.Next(chat.FrameHistory)
	if h.Reset || len(h.Messages) != 600 {
		t.Errorf("resume of 600 stored messages (ResumeMax 1000): reset=%v, %d messages", h.Reset, len(h.Messages))
	}
}
