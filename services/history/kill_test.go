package history

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/natschat/chat/services/history/internal/store"
	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/natstest"
	"github.com/natschat/chat/shared/pgtest"
)

// TestKillAndRestart kills the history process with SIGKILL while 10,000
// messages are being published and stored, restarts it, and checks that
// every message is stored exactly once. It then stops it with SIGTERM,
// which must end it cleanly.
func TestKillAndRestart(t *testing.T) {
	t.Parallel()
	db := pgtest.Postgres(t) // first: a skip should not build anything
	bin := buildBinary(t)
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	st := openStore(t, store.Options{URL: db.URL})
	env := []string{
		"HISTORY_NATS_URL=" + s.ClientURL(),
		"HISTORY_DATABASE_URL=" + db.URL,
		"HISTORY_LOG_FORMAT=json",
		"HISTORY_FETCH_WAIT=250ms",
		// What the killed process had fetched but not acked is redelivered
		// after the ack wait; a short one keeps the test short.
		"HISTORY_ACK_WAIT=2s",
	}

	first := startProcess(t, bin, env)
	waitFor(t, 20*time.Second, "the process to answer queries", func() (bool, string) {
		var resp chat.RoomsResponse
		err := request(nc, chat.HistoryRooms, nil, &resp)
		return err == nil, fmt.Sprint(err)
	})

	const n = 10_000
	rooms := roomNames(10)
	published := make(chan error, 1)
	go func() {
		// Paced at about 10,000 a second so that the kill lands while
		// messages are still arriving and being stored.
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < n; i += 100 {
			<-tick.C
			for j := i; j < i+100; j++ {
				data := fmt.Sprintf(`{"user":"u%d","text":"m-%d","client_id":"c-%d"}`, j%7, j, j)
				if err := nc.Publish(chat.RoomSubject(rooms[j%len(rooms)]), []byte(data)); err != nil {
					published <- err
					return
				}
			}
		}
		published <- nc.Flush()
	}()

	waitFor(t, 30*time.Second, "a few thousand stored messages", func() (bool, string) {
		got, err := storedCount(st)
		return got >= 2000, fmt.Sprintf("%d stored (err %v)", got, err)
	})
	first.kill(t)
	atKill, err := storedCount(st)
	if err != nil {
		t.Fatal(err)
	}
	if atKill >= n {
		t.Fatalf("all %d messages were stored before the kill: the test proves nothing, slow the publisher down", n)
	}
	if err := <-published; err != nil {
		t.Fatal(err)
	}

	second := startProcess(t, bin, env)
	c := waitStored(t, st, n, 60*time.Second)
	checkExactlyOnce(t, c, n, true)
	t.Logf("killed with %d of %d stored", atKill, n)

	second.terminate(t)
}

// storedCount is the number of stored messages according to the room
// counters, which are updated in the same transaction as the rows.
func storedCount(st *store.Store) (int64, error) {
	rooms, err := st.Rooms(context.Background(), 1000)
	var total int64
	for _, r := range rooms {
		total += r.Messages
	}
	return total, err
}

var (
	binDir   string // removed by TestMain
	binOnce  sync.Once
	binPath  string
	binError error
)

// buildBinary builds cmd/history once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binError = os.MkdirTemp("", "history-bin-")
		if binError != nil {
			return
		}
		binPath = filepath.Join(binDir, "history")
		out, err := exec.Command("go", "build", "-o", binPath, "./cmd/history").CombinedOutput()
		if err != nil {
			binError = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binError != nil {
		t.Fatal(binError)
	}
	return binPath
}

type process struct {
	cmd    *exec.Cmd
	done   chan struct{}
	output *bytes.Buffer
}

func startProcess(t *testing.T, bin string, env []string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(bin), done: make(chan struct{}), output: &bytes.Buffer{}}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout = p.output
	p.cmd.Stderr = p.output
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("history process %d output:\n%s", p.cmd.Process.Pid, p.output)
		}
	})
	return p
}

func (p *process) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
}

// terminate sends SIGTERM and expects a clean exit within the drain time.
func (p *process) terminate(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
		if code := p.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("exit code after SIGTERM: got %d, want 0", code)
		}
	case <-time.After(15 * time.Second):
		t.Error("process still running 15s after SIGTERM")
	}
}
