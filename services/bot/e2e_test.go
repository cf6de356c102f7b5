package bot_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/natstest"
	"github.com/natschat/chat/shared/stream"
)

// TestEndToEnd drives /now and /sms through bot.cmd, as the gateway does,
// with the real sms-worker binary (built from the sibling module, so the
// bot module does not depend on it) consuming the tasks.
func TestEndToEnd(t *testing.T) {
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	js := newJS(t, nc)
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
	waitFor(t, 20*time.Second, "the SMS confirmation in the room", func() bool {
		for _, m := range roomMessages(t, js, "lobby") {
			if m.Text == confirmation {
				return true
			}
		}
		return false
	})
	// Once the task is acked, every confirmation there is was published.
	waitFor(t, 20*time.Second, "the task to be acked", func() bool { return streamMsgs(t, js, stream.SMS) == 0 })

	msgs := roomMessages(t, js, "lobby")
	if len(msgs) != 2 {
		t.Fatalf("got room messages %+v, want the /now answer and one confirmation", msgs)
	}
	if m := msgs[0]; !nowText.MatchString(m.Text) || m.User != "bot" || m.Kind != chat.KindBot {
		t.Errorf("got first message %+v, want the /now answer by the bot", m)
	}
	if m := msgs[1]; m.Text != confirmation || m.User != "bot" || m.Kind != chat.KindBot {
		t.Errorf("got second message %+v, want %q by the bot", m, confirmation)
	}
	if got := worker.count(`"msg":"sms sent"`); got != 1 {
		t.Errorf("the worker logged %d sends, want 1", got)
	}
}

// smsWorker is an sms-worker child process and the lines it logged.
type smsWorker struct {
	mu    sync.Mutex
	lines []string
}

func (w *smsWorker) count(substr string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, l := range w.lines {
		if strings.Contains(l, substr) {
			n++
		}
	}
	return n
}

func startSMSWorker(t *testing.T, natsURL string) *smsWorker {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "sms-worker")
	build := exec.Command("go", "build", "-o", bin, "./cmd/sms-worker")
	build.Dir = filepath.Join("..", "smsworker")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build sms-worker: %v\n%s", err, out)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "SMSWORKER_NATS_URL="+natsURL, "SMSWORKER_LOG_FORMAT=json", "SMSWORKER_LOG_LEVEL=info")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &smsWorker{}
	done := make(chan struct{})
	out := t.Output()
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			out.Write([]byte("sms-worker: " + line + "\n"))
			w.mu.Lock()
			w.lines = append(w.lines, line)
			w.mu.Unlock()
		}
		_ = cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	return w
}
