package bot_test

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/stream"
	"github.com/natschat/chat/shared/testkit"
	"github.com/natschat/chat/shared/testkit/natstest"
)

// TestEndToEnd drives /now and /sms through bot.cmd, as the gateway does,
// with the real sms-worker binary (built from the sibling module, so the
// bot module does not depend on it) consuming the tasks.
func TestEndToEnd(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	js := natstest.JetStream(t, nc)
	startBot(t, s)
	worker := startSMSWorker(t, s.ClientURL())

	if reply := ask(t, nc, chat.BotRequest{ID: "r1", Room: "lobby", User: "alice", Text: "/now"}); !reply.OK {
		t.Fatalf("/now: got %+v, want ok", reply)
	}
	// Sent twice with the same id, as a gateway retrying after a lost
	// reply: one task, one SMS, one confirmation.
	for range 2 {
		reply := ask(t, nc, chat.BotRequest{ID: "r2", Room: "lobby", User: "alice", Text: "/sms bob"})
		if want := (chat.BotReply{OK: true, Notice: "SMS to bob queued"}); !reflect.DeepEqual(reply, want) {
			t.Fatalf("/sms bob: got %+v, want %+v", reply, want)
		}
	}

	const confirmation = "An SMS has been sent to bob (requested by alice)"
	testkit.WaitFor(t, "the SMS confirmation in the room", func() bool {
		for _, m := range natstest.RoomMessages(t, js, "lobby") {
			if m.Text == confirmation {
				return true
			}
		}
		return false
	})
	// Once the task is acked, every confirmation there is was published.
	testkit.WaitFor(t, "the task to be acked", func() bool { return natstest.StreamState(t, js, stream.SMS).Msgs == 0 })

	msgs := natstest.RoomMessages(t, js, "lobby")
	if len(msgs) != 2 {
		t.Fatalf("got room messages %+v, want the /now answer and one confirmation", msgs)
	}
	if m := msgs[0]; !nowText.MatchString(m.Text) || m.User != "bot" || m.Kind != chat.KindBot {
		t.Errorf("got first message %+v, want the /now answer by the bot", m)
	}
	if m := msgs[1]; m.Text != confirmation || m.User != "bot" || m.Kind != chat.KindBot {
		t.Errorf("got second message %+v, want %q by the bot", m, confirmation)
	}
	if got := strings.Count(worker.Output(), `"msg":"sms sent"`); got != 1 {
		t.Errorf("the worker logged %d sends, want 1", got)
	}
}

// startSMSWorker runs the sms-worker binary, logging JSON.
func startSMSWorker(t *testing.T, natsURL string) *testkit.Process {
	t.Helper()
	bin := testkit.GoBuild(t, filepath.Join("..", "smsworker"), "./cmd/sms-worker")
	return testkit.StartProcess(t, "sms-worker", bin, "SMSWORKER_NATS_URL="+natsURL, "SMSWORKER_LOG_FORMAT=json", "SMSWORKER_LOG_LEVEL=info")
}

func TestMain(m *testing.M) { testkit.Main(m) }
