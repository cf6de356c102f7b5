package smsworker_test

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/natschat/chat/shared/natstest"
	"github.com/natschat/chat/shared/stream"
)

// These tests run the real sms-worker binary as a child process, so that a
// worker can be killed with SIGKILL or stopped with SIGTERM.

var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// workerBinary builds cmd/sms-worker once per test run.
func workerBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "sms-worker-test")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "sms-worker")
		out, err := exec.Command("go", "build", "-o", binPath, "./cmd/sms-worker").CombinedOutput()
		if err != nil {
			buildErr = err
			t.Logf("go build: %s", out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build sms-worker: %v", buildErr)
	}
	return binPath
}

// proc is a worker process whose JSON log lines are kept.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process exited and its log is read
	err  error         // of cmd.Wait, set before done is closed

	mu   sync.Mutex
	logs []map[string]any
}

func startProc(t *testing.T, env ...string) *proc {
	t.Helper()
	cmd := exec.Command(workerBinary(t))
	cmd.Env = append(os.Environ(), "SMSWORKER_LOG_FORMAT=json", "SMSWORKER_LOG_LEVEL=info")
	cmd.Env = append(cmd.Env, env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	out := t.Output()
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			out.Write(append([]byte("sms-worker: "), append(sc.Bytes(), '\n')...))
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) == nil {
				p.mu.Lock()
				p.logs = append(p.logs, line)
				p.mu.Unlock()
			}
		}
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	return p
}

// count is the number of log lines with msg about taskID.
func (p *proc) count(msg, taskID string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.logs {
		if l["msg"] == msg && l["task_id"] == taskID {
			n++
		}
	}
	return n
}

func (p *proc) wait(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("sms-worker did not exit within %v", timeout)
	}
}

// procEnv configures a worker process like testConfig: AckWait 1s, so a
// killed worker's task comes back quickly, and a fake send of a minute that
// is sure to be in progress when the process is killed.
func procEnv(url string, maxDeliver, fakeDelay string) []string {
	return []string{
		"SMSWORKER_NATS_URL=" + url,
		"SMSWORKER_CONCURRENCY=1",
		"SMSWORKER_MAX_DELIVER=" + maxDeliver,
		"SMSWORKER_ACK_WAIT=1s",
		"SMSWORKER_BACKOFF=20ms",
		"SMSWORKER_SEND_TIMEOUT=2m",
		"SMSWORKER_FAKE_DELAY=" + fakeDelay,
	}
}

// TestKilledWorkerTaskIsRedelivered: a worker process killed with SIGKILL
// in the middle of a slow send loses nothing: the task comes back to
// another worker after AckWait and is sent once in total.
func TestKilledWorkerTaskIsRedelivered(t *testing.T) {
	s := natstest.Start(t)
	js := newJS(t, natstest.Connect(t, s))
	ensureStreams(t, js)

	killed := startProc(t, procEnv(s.ClientURL(), "5", "1m")...)
	waitPulling(t, js, "sms-worker", 1)
	queue(t, js, task("k1", "bob"))
	waitFor(t, 20*time.Second, "the killed worker to start sending", func() bool { return killed.count("sms sending", "k1") == 1 })

	// The survivor starts while the task is with the doomed worker, whose
	// keep-alives hold it past AckWait.
	cfg := testConfig(s)
	cfg.AckWait = time.Second
	rec := newRecorder()
	startWorker(t, cfg, rec)
	waitPulling(t, js, "sms-worker", 1)
	// Checking that something does not happen takes time: past AckWait,
	// the live worker's keep-alives must still hold the task.
	time.Sleep(cfg.AckWait + cfg.AckWait/2)
	if got := len(rec.attemptTimes("k1")); got != 0 {
		t.Fatalf("the task reached the second worker while the first was alive (%d attempts)", got)
	}

	if err := killed.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed.wait(t, 10*time.Second)
	waitEmpty(t, js, 20*time.Second)

	if got := rec.sentCount("k1"); got != 1 {
		t.Errorf("second worker sent k1 %d times, want 1", got)
	}
	if got := killed.count("sms sent", "k1"); got != 0 {
		t.Errorf("killed worker logged %d sends, want 0", got)
	}
	if got := roomTexts(t, js, "lobby")[confirmation("bob")]; got != 1 {
		t.Errorf("got %d confirmations, want 1", got)
	}
}

// TestKilledOnLastDeliveryIsDeadLettered: when the worker holding a task's
// last delivery dies, the max-deliveries advisory moves the task to
// SMS_DEAD instead of leaving it stuck in SMS.
func TestKilledOnLastDeliveryIsDeadLettered(t *testing.T) {
	s := natstest.Start(t)
	js := newJS(t, natstest.Connect(t, s))
	ensureStreams(t, js)

	killed := startProc(t, procEnv(s.ClientURL(), "1", "1m")...)
	waitPulling(t, js, "sms-worker", 1)
	queue(t, js, task("k2", "bob"))
	waitFor(t, 20*time.Second, "the killed worker to start sending", func() bool { return killed.count("sms sending", "k2") == 1 })

	cfg := testConfig(s)
	cfg.AckWait = time.Second
	cfg.MaxDeliver = 1
	rec := newRecorder()
	startWorker(t, cfg, rec)
	waitPulling(t, js, "sms-worker", 1)

	if err := killed.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed.wait(t, 10*time.Second)
	waitFor(t, 20*time.Second, "a dead letter", func() bool { return streamState(t, js, "SMS_DEAD").Msgs == 1 })
	waitEmpty(t, js, 10*time.Second)

	dead := deadLetters(t, js)
	if len(dead) != 1 || dead[0].subject != "sms_dead.abandoned" || dead[0].deliveries != "1" || dead[0].reason == "" {
		t.Errorf("got dead letters %+v, want k2 on sms_dead.abandoned after 1 delivery", dead)
	}
	if got := len(rec.attemptTimes("k2")); got != 0 {
		t.Errorf("the task was tried %d more times, want 0 (MaxDeliver 1)", got)
	}
}

// TestSIGTERMFinishesTaskInFlight: a worker process stopped with SIGTERM
// during a send finishes it, confirms and acks, then exits 0.
func TestSIGTERMFinishesTaskInFlight(t *testing.T) {
	s := natstest.Start(t)
	js := newJS(t, natstest.Connect(t, s))
	ensureStreams(t, js)

	p := startProc(t, procEnv(s.ClientURL(), "5", "1s")...)
	waitPulling(t, js, "sms-worker", 1)
	queue(t, js, task("t1", "bob"))
	waitFor(t, 20*time.Second, "the send to start", func() bool { return p.count("sms sending", "t1") == 1 })
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.wait(t, 20*time.Second)
	if p.err != nil {
		t.Errorf("sms-worker exited with %v, want 0", p.err)
	}
	if got := p.count("sms sent", "t1"); got != 1 {
		t.Errorf("got %d sends, want 1", got)
	}
	if got := streamState(t, js, stream.SMS).Msgs; got != 0 {
		t.Errorf("got %d tasks left, want 0 (acked before exit)", got)
	}
	if got := roomTexts(t, js, "lobby")[confirmation("bob")]; got != 1 {
		t.Errorf("got %d confirmations, want 1", got)
	}
}
