package bot_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/stream"
	"github.com/natschat/chat/shared/testkit"
	"github.com/natschat/chat/shared/testkit/natstest"
)

// TestSMSRateLimits: /sms is limited to 5 per requester and 10 per
// recipient a minute (the defaults), across bot instances: the requests
// go to two bots of the queue group. A refused one gets rate_limited,
// privately, with when to try again, and queues nothing.
func TestSMSRateLimits(t *testing.T) {
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	js := natstest.JetStream(t, nc)
	startBot(t, s)
	startBot(t, s)
	testkit.WaitFor(t, "two bots subscribed", func() bool { return countBots(t, nc) == 2 })

	sms := func(id, from, to string) chat.BotReply {
		t.Helper()
		return ask(t, nc, chat.BotRequest{ID: id, Room: "lobby", User: from, Text: "/sms " + to})
	}
	limited := func(t *testing.T, r chat.BotReply, mention string) {
		t.Helper()
		if r.OK || r.Code != chat.CodeRateLimited || !strings.Contains(r.Error, "try again in") || !strings.Contains(r.Error, mention) {
			t.Errorf("got %+v, want rate_limited mentioning %q and when to try again", r, mention)
		}
	}

	t.Run("per requester", func(t *testing.T) {
		for i := range 5 {
			if r := sms(fmt.Sprint("a", i), "alice", fmt.Sprint("bob", i)); !r.OK {
				t.Fatalf("/sms %d of 5: got %+v, want ok", i+1, r)
			}
		}
		limited(t, sms("a5", "alice", "bob5"), "you have sent 5 SMS in the last 1m")
		limited(t, sms("a6", "ALICE", "bob6"), "you have sent 5") // names differ only in case
		// A retried request (same id, as the gateway resends) is no new SMS.
		if r := sms("a0", "alice", "bob0"); !r.OK {
			t.Errorf("retry of an accepted request: got %+v, want ok", r)
		}
	})

	t.Run("per recipient", func(t *testing.T) {
		for i := range 10 {
			if r := sms(fmt.Sprint("c", i), fmt.Sprint("u", i), "carol"); !r.OK {
				t.Fatalf("/sms carol %d of 10: got %+v, want ok", i+1, r)
			}
		}
		limited(t, sms("c10", "u10", "carol"), "carol has been sent 10 SMS")
		// The refused request did not use up u10's own allowance.
		for i := range 5 {
			if r := sms(fmt.Sprint("d", i), "u10", fmt.Sprint("dave", i)); !r.OK {
				t.Fatalf("u10's /sms %d of 5 after a refusal: got %+v, want ok", i+1, r)
			}
		}
	})

	if got, want := natstest.StreamState(t, js, stream.SMS).Msgs, uint64(5+10+5); got != want {
		t.Errorf("got %d SMS tasks, want %d", got, want)
	}
}
