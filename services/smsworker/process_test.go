package smsworker_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natschat/chat/shared/stream"
	"github.com/natschat/chat/shared/testkit"
	"github.com/natschat/chat/shared/testkit/natstest"
)

// These tests run the real sms-worker binary as a child process, so that a
// worker can be killed with SIGKILL or stopped with SIGTERM.

func TestMain(m *testing.M) { testkit.Main(m) }

// startProc runs the sms-worker binary, logging JSON, with env added.
func startProc(t *testing.T, env ...string) *testkit.Process {
	t.Helper()
	bin := testkit.GoBuild(t, ".", "./cmd/sms-worker")
	return testkit.StartProcess(t, "sms-worker", bin, append([]string{"SMSWORKER_LOG_FORMAT=json", "SMSWORKER_LOG_LEVEL=info"}, env...)...)
}

// logged is the number of p's log lines with msg about taskID.
func logged(p *testkit.Process, msg, taskID string) int {
	n := 0
	for _, line := range p.Lines() {
		var l map[string]any
		if json.Unmarshal([]byte(line), &l) == nil && l["msg"] == msg && l["task_id"] == taskID {
			n++
		}
	}
	return n
}

// ackWaitPassed waits until the server has redelivered a message that it
// delivered now and nobody acknowledged, with ack wait d: proof, on the
// server's own clock, that d has passed since, however busy the machine.
func ackWaitPassed(t *testing.T, js jetstream.JetStream, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Deadline)
	defer cancel()
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "CONTROL", Subjects: []string{"control"}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: "control", AckPolicy: jetstream.AckExplicitPolicy, AckWait: d})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "control", nil); err != nil {
		t.Fatal(err)
	}
	for want := uint64(1); want <= 2; want++ {
		m, err := c.Next(jetstream.FetchMaxWait(testkit.Deadline))
		if err != nil {
			t.Fatalf("control message, delivery %d: %v", want, err)
		}
		if meta, err := m.Metadata(); err != nil || meta.NumDelivered != want {
			t.Fatalf("control message: delivery %+v (%v), want number %d", meta, err, want)
		}
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
	t.Parallel()
	s := natstest.Start(t)
	js := natstest.JetStream(t, natstest.Connect(t, s))
	ensureStreams(t, js)

	killed := startProc(t, procEnv(s.ClientURL(), "5", "1m")...)
	waitPulling(t, js, "sms-worker", 1)
	queue(t, js, task("k1", "bob"))
	testkit.WaitFor(t, "the killed worker to start sending", func() bool { return logged(killed, "sms sending", "k1") == 1 })

	// The survivor starts while the task is with the doomed worker, whose
	// keep-alives hold it past AckWait.
	cfg := testConfig(s)
	cfg.AckWait = time.Second
	rec := newRecorder()
	startWorker(t, cfg, rec)
	waitPulling(t, js, "sms-worker", 1)
	// Checking that something does not happen takes time: once twice the
	// AckWait has passed, the live worker's keep-alives must still hold
	// the task, delivered once and to nobody else.
	ackWaitPassed(t, js, 2*cfg.AckWait)
	if info := consumerInfo(t, js, "sms-worker"); info.Delivered.Consumer != 1 || info.NumRedelivered != 0 {
		t.Fatalf("the task was redelivered while its worker was alive: %d deliveries, %d redelivered", info.Delivered.Consumer, info.NumRedelivered)
	}
	if got := len(rec.attemptTimes("k1")); got != 0 {
		t.Fatalf("the task reached the second worker while the first was alive (%d attempts)", got)
	}

	killed.Kill(t)
	waitEmpty(t, js)

	if got := rec.sentCount("k1"); got != 1 {
		t.Errorf("second worker sent k1 %d times, want 1", got)
	}
	if got := logged(killed, "sms sent", "k1"); got != 0 {
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
	t.Parallel()
	s := natstest.Start(t)
	js := natstest.JetStream(t, natstest.Connect(t, s))
	ensureStreams(t, js)

	killed := startProc(t, procEnv(s.ClientURL(), "1", "1m")...)
	waitPulling(t, js, "sms-worker", 1)
	queue(t, js, task("k2", "bob"))
	testkit.WaitFor(t, "the killed worker to start sending", func() bool { return logged(killed, "sms sending", "k2") == 1 })

	cfg := testConfig(s)
	cfg.AckWait = time.Second
	cfg.MaxDeliver = 1
	rec := newRecorder()
	startWorker(t, cfg, rec)
	waitPulling(t, js, "sms-worker", 1)

	killed.Kill(t)
	testkit.WaitFor(t, "a dead letter", func() bool { return natstest.StreamState(t, js, "SMS_DEAD").Msgs == 1 })
	waitEmpty(t, js)

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
	t.Parallel()
	s := natstest.Start(t)
	js := natstest.JetStream(t, natstest.Connect(t, s))
	ensureStreams(t, js)

	p := startProc(t, procEnv(s.ClientURL(), "5", "1s")...)
	waitPulling(t, js, "sms-worker", 1)
	queue(t, js, task("t1", "bob"))
	testkit.WaitFor(t, "the send to start", func() bool { return logged(p, "sms sending", "t1") == 1 })
	if err := p.Terminate(t); err != nil {
		t.Errorf("sms-worker exited with %v, want 0", err)
	}
	if got := logged(p, "sms sent", "t1"); got != 1 {
		t.Errorf("got %d sends, want 1", got)
	}
	if got := natstest.StreamState(t, js, stream.SMS).Msgs; got != 0 {
		t.Errorf("got %d tasks left, want 0 (acked before exit)", got)
	}
	if got := roomTexts(t, js, "lobby")[confirmation("bob")]; got != 1 {
		t.Errorf("got %d confirmations, want 1", got)
	}
}
