package smsworker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natschat/chat/services/smsworker"
	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/natsconn"
	"github.com/natschat/chat/shared/stream"
	"github.com/natschat/chat/shared/testkit"
	"github.com/natschat/chat/shared/testkit/natstest"
)

// testConfig is the worker's configuration with test-sized delays.
func testConfig(s *server.Server) smsworker.Config {
	return smsworker.Config{
		Config:      natsconn.Config{URL: s.ClientURL()},
		Consumer:    "sms-worker",
		Concurrency: 4,
		MaxDeliver:  5,
		Backoff:     []time.Duration{20 * time.Millisecond},
		AckWait:     2 * time.Second,
		SendTimeout: 5 * time.Second,
		SentTTL:     time.Hour,
		FakeFail:    "never",
		// The drain after the tasks in flight, as the binary's default.
		ShutdownTimeout: 10 * time.Second,
	}
}

// startWorker runs smsworker.Run until the test ends (or stop is called),
// and checks that it stops cleanly.
func startWorker(t *testing.T, cfg smsworker.Config, sender smsworker.Sender) (stop func()) {
	t.Helper()
	log := testkit.Logger(t)
	var opts []smsworker.Option
	if sender != nil {
		opts = append(opts, smsworker.WithSender(sender))
	}
	return testkit.Start(t, "sms-worker", func(ctx context.Context) error { return smsworker.Run(ctx, cfg, log, opts...) })
}

// recorder is a Sender that counts sends per task id. fail decides whether
// a send fails; delay is how long a send takes.
type recorder struct {
	delay time.Duration
	fail  func(chat.SMSTask) bool

	mu       sync.Mutex
	sent     map[string]int
	attempts map[string][]time.Time
	inFlight int
	maxIn    int
}

func newRecorder() *recorder {
	return &recorder{sent: map[string]int{}, attempts: map[string][]time.Time{}}
}

func (r *recorder) Send(ctx context.Context, task chat.SMSTask) error {
	r.mu.Lock()
	r.attempts[task.ID] = append(r.attempts[task.ID], time.Now())
	r.inFlight++
	r.maxIn = max(r.maxIn, r.inFlight)
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.inFlight--
		r.mu.Unlock()
	}()
	if r.delay > 0 {
		select {
		case <-time.After(r.delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if r.fail != nil && r.fail(task) {
		return fmt.Errorf("provider refused %s", task.ID)
	}
	r.mu.Lock()
	r.sent[task.ID]++
	r.mu.Unlock()
	return nil
}

func (r *recorder) sentCount(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sent[id]
}

func (r *recorder) attemptTimes(id string) []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.attempts[id]...)
}

// ensureStreams creates what the bot would, so tasks can be queued before
// a worker runs.
func ensureStreams(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	for _, sc := range []jetstream.StreamConfig{stream.ChatConfig(stream.Options{}), stream.SMSConfig(stream.Options{})} {
		if _, err := stream.Ensure(context.Background(), js, sc); err != nil {
			t.Fatal(err)
		}
	}
}

func task(id, to string) chat.SMSTask {
	return chat.SMSTask{ID: id, Room: "lobby", From: "alice", To: to, RequestedAt: time.Now().UTC()}
}

// queue publishes task on sms_channel as the bot does.
func queue(t *testing.T, js jetstream.JetStream, task chat.SMSTask) {
	t.Helper()
	data, err := json.Marshal(task)
	if err != nil {
		t.Fatal(err)
	}
	queueRaw(t, js, data, task.ID)
}

func queueRaw(t *testing.T, js jetstream.JetStream, data []byte, msgID string) {
	t.Helper()
	var opts []jetstream.PublishOpt
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	if _, err := js.Publish(context.Background(), chat.SMSChannel, data, opts...); err != nil {
		t.Fatal(err)
	}
}

// roomTexts counts the texts of room's messages in the CHAT stream, all
// of which must be the bot's.
func roomTexts(t *testing.T, js jetstream.JetStream, room string) map[string]int {
	t.Helper()
	texts := map[string]int{}
	for _, m := range natstest.RoomMessages(t, js, room) {
		if m.User != "bot" || m.Kind != chat.KindBot {
			t.Errorf("got room message by %q kind %q, want bot bot", m.User, m.Kind)
		}
		texts[m.Text]++
	}
	return texts
}

func confirmation(to string) string {
	return fmt.Sprintf("An SMS has been sent to %s (requested by alice)", to)
}

// deadLetter is a message of the SMS_DEAD stream.
type deadLetter struct {
	subject, reason, deliveries string
	data                        string
}

func deadLetters(t *testing.T, js jetstream.JetStream) []deadLetter {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Deadline)
	defer cancel()
	s, err := js.Stream(ctx, "SMS_DEAD")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []deadLetter
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, deadLetter{
			subject:    m.Subject,
			reason:     m.Header.Get("Sms-Dead-Reason"),
			deliveries: m.Header.Get("Sms-Deliveries"),
			data:       string(m.Data),
		})
	}
	return out
}

// waitPulling waits until n workers have a pull request waiting, so a test
// that queues tasks next spreads them over all n.
func waitPulling(t *testing.T, js jetstream.JetStream, consumer string, n int) {
	t.Helper()
	testkit.WaitFor(t, fmt.Sprintf("%d workers pulling", n), func() bool {
		c, err := js.Consumer(context.Background(), stream.SMS, consumer)
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.NumWaiting >= n
	})
}

// consumerInfo is the state of the SMS stream's consumer.
func consumerInfo(t *testing.T, js jetstream.JetStream, consumer string) *jetstream.ConsumerInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Deadline)
	defer cancel()
	c, err := js.Consumer(ctx, stream.SMS, consumer)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// waitEmpty waits until every task was acked or terminated.
func waitEmpty(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	testkit.WaitForState(t, time.Minute, "the SMS stream to be empty", func() (bool, string) {
		n := natstest.StreamState(t, js, stream.SMS).Msgs
		return n == 0, fmt.Sprintf("%d tasks left", n)
	})
}

func TestSendsAndConfirms(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	js := natstest.JetStream(t, natstest.Connect(t, s))
	rec := newRecorder()
	startWorker(t, testConfig(s), rec)
	waitPulling(t, js, "sms-worker", 1)

	queue(t, js, task("t1", "bob"))
	waitEmpty(t, js)
	if got := rec.sentCount("t1"); got != 1 {
		t.Errorf("got %d sends, want 1", got)
	}
	texts := roomTexts(t, js, "lobby")
	if got := texts[confirmation("bob")]; got != 1 || len(texts) != 1 {
		t.Errorf("got room texts %v, want one %q", texts, confirmation("bob"))
	}

	// The same task again, past the stream's de-duplication (here: another
	// message id; in production: after the window): the sent bucket
	// stops a second SMS, and the confirmation is not repeated.
	data, _ := json.Marshal(task("t1", "bob"))
	queueRaw(t, js, data, "")
	waitEmpty(t, js)
	if got := rec.sentCount("t1"); got != 1 {
		t.Errorf("got %d sends after a repeated task, want 1", got)
	}
	if got := roomTexts(t, js, "lobby")[confirmation("bob")]; got != 1 {
		t.Errorf("got %d confirmations after a repeated task, want 1", got)
	}
}

// TestThreeWorkers runs three workers on one consumer: every task is sent
// once and confirmed once, and no worker has more than Concurrency tasks in
// flight.
func TestThreeWorkers(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	js := natstest.JetStream(t, nc)
	cfg := testConfig(s)
	var recs []*recorder
	for range 3 {
		rec := newRecorder()
		rec.delay = 2 * time.Millisecond // long enough for sends to overlap
		recs = append(recs, rec)
		startWorker(t, cfg, rec)
	}
	waitPulling(t, js, cfg.Consumer, 3)

	const n = 1000
	for i := range n {
		data, _ := json.Marshal(task(fmt.Sprintf("t%d", i), fmt.Sprintf("u%d", i)))
		if _, err := js.PublishAsync(chat.SMSChannel, data, jetstream.WithMsgID(fmt.Sprintf("t%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(testkit.Deadline):
		t.Fatal("publishing tasks timed out")
	}
	waitEmpty(t, js)

	texts := roomTexts(t, js, "lobby")
	for i := range n {
		id, to := fmt.Sprintf("t%d", i), fmt.Sprintf("u%d", i)
		sends := 0
		for _, rec := range recs {
			sends += rec.sentCount(id)
		}
		if sends != 1 {
			t.Errorf("task %s: sent %d times, want 1", id, sends)
		}
		if got := texts[confirmation(to)]; got != 1 {
			t.Errorf("task %s: %d confirmations, want 1", id, got)
		}
	}
	if len(texts) != n {
		t.Errorf("got %d distinct room messages, want %d", len(texts), n)
	}
	for i, rec := range recs {
		rec.mu.Lock()
		t.Logf("worker %d sent %d tasks, at most %d at once", i, len(rec.sent), rec.maxIn)
		if len(rec.sent) == 0 {
			t.Errorf("worker %d sent nothing: the consumer is not shared", i)
		}
		if rec.maxIn > cfg.Concurrency {
			t.Errorf("worker %d had %d sends at once, want at most %d", i, rec.maxIn, cfg.Concurrency)
		}
		rec.mu.Unlock()
	}
}

// TestFailingTaskIsRetriedThenDeadLettered: a task whose send always fails
// is tried MaxDeliver times with the backoff in between, then lands in
// SMS_DEAD; meanwhile a good task goes through on the only slot.
func TestFailingTaskIsRetriedThenDeadLettered(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	js := natstest.JetStream(t, natstest.Connect(t, s))
	cfg := testConfig(s)
	cfg.Concurrency = 1
	cfg.MaxDeliver = 3
	// Long enough that the good task, queued after the first try, goes
	// out before the last one even on a busy machine.
	cfg.Backoff = []time.Duration{300 * time.Millisecond, time.Second}
	rec := newRecorder()
	rec.fail = func(task chat.SMSTask) bool { return task.ID == "bad" }
	startWorker(t, cfg, rec)
	waitPulling(t, js, "sms-worker", 1)

	bad := task("bad", "bob")
	queue(t, js, bad)
	testkit.WaitFor(t, "the first attempt", func() bool { return len(rec.attemptTimes("bad")) >= 1 })
	queue(t, js, task("good", "carol"))
	testkit.WaitFor(t, "the good task", func() bool { return rec.sentCount("good") == 1 })
	goodAt := rec.attemptTimes("good")[0]

	testkit.WaitFor(t, "a dead letter", func() bool { return natstest.StreamState(t, js, "SMS_DEAD").Msgs == 1 })
	attempts := rec.attemptTimes("bad")
	if len(attempts) != cfg.MaxDeliver {
		t.Fatalf("got %d attempts, want %d", len(attempts), cfg.MaxDeliver)
	}
	if !goodAt.Before(attempts[len(attempts)-1]) {
		t.Errorf("the good task was sent at %v, after the bad one's last try at %v: it waited", goodAt, attempts[len(attempts)-1])
	}
	for i := 1; i < len(attempts); i++ {
		if gap, want := attempts[i].Sub(attempts[i-1]), cfg.Backoff[i-1]; gap < want {
			t.Errorf("retry %d came %v after the previous try, want at least %v", i, gap, want)
		}
	}
	dead := deadLetters(t, js)
	want, _ := json.Marshal(bad)
	if len(dead) != 1 || dead[0].subject != "sms_dead.failed" || dead[0].data != string(want) ||
		dead[0].deliveries != "3" || !strings.Contains(dead[0].reason, "provider refused bad") {
		t.Errorf("got dead letters %+v, want the bad task on sms_dead.failed after 3 deliveries", dead)
	}
	waitEmpty(t, js)
	texts := roomTexts(t, js, "lobby")
	if texts[confirmation("bob")] != 0 || texts[confirmation("carol")] != 1 {
		t.Errorf("got room texts %v, want only carol's confirmation", texts)
	}
}

// TestMalformedTasksAreDeadLettered: garbage on sms_channel is moved to
// SMS_DEAD at once, never sent nor retried, and the worker goes on.
func TestMalformedTasksAreDeadLettered(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	js := natstest.JetStream(t, natstest.Connect(t, s))
	rec := newRecorder()
	startWorker(t, testConfig(s), rec)
	waitPulling(t, js, "sms-worker", 1)

	bad := []string{
		`not json`,
		`{"id":"x"}`,
		`{"id":"a.b","room":"lobby","from":"alice","to":"bob"}`,
		`{"id":"y","room":"lobby","from":"alice","to":"*"}`,
		`null`,
	}
	for _, data := range bad {
		queueRaw(t, js, []byte(data), "")
	}
	queue(t, js, task("good", "carol"))
	waitEmpty(t, js)

	if got := rec.sentCount("good"); got != 1 {
		t.Errorf("good task sent %d times, want 1", got)
	}
	rec.mu.Lock()
	if len(rec.attempts) != 1 {
		t.Errorf("sender called for %v, want only the good task", rec.attempts)
	}
	rec.mu.Unlock()
	dead := deadLetters(t, js)
	if len(dead) != len(bad) {
		t.Fatalf("got %d dead letters, want %d: %+v", len(dead), len(bad), dead)
	}
	// Processed concurrently, so in any order.
	got := map[string]bool{}
	for _, d := range dead {
		got[d.data] = true
		if d.subject != "sms_dead.malformed" || d.deliveries != "1" || d.reason == "" {
			t.Errorf("got dead letter %+v, want it on sms_dead.malformed after 1 delivery, with a reason", d)
		}
	}
	for _, data := range bad {
		if !got[data] {
			t.Errorf("%q is not in the dead-letter stream", data)
		}
	}
}

// TestDrainFinishesTasksInFlight: a worker told to stop during a slow send
// finishes it, confirms and acks before Run returns.
func TestDrainFinishesTasksInFlight(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	js := natstest.JetStream(t, natstest.Connect(t, s))
	rec := newRecorder()
	rec.delay = 500 * time.Millisecond
	stop := startWorker(t, testConfig(s), rec)
	waitPulling(t, js, "sms-worker", 1)

	queue(t, js, task("slow", "bob"))
	testkit.WaitFor(t, "the send to start", func() bool { return len(rec.attemptTimes("slow")) == 1 })
	stop()
	if got := rec.sentCount("slow"); got != 1 {
		t.Errorf("got %d sends, want 1", got)
	}
	if got := natstest.StreamState(t, js, stream.SMS).Msgs; got != 0 {
		t.Errorf("got %d tasks left after drain, want 0 (acked)", got)
	}
	if got := roomTexts(t, js, "lobby")[confirmation("bob")]; got != 1 {
		t.Errorf("got %d confirmations, want 1", got)
	}
}

// TestSlowTaskDoesNotBlockOthers: with two slots, a send that hangs holds
// one, and the other tasks flow through the other.
func TestSlowTaskDoesNotBlockOthers(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	js := natstest.JetStream(t, natstest.Connect(t, s))
	cfg := testConfig(s)
	cfg.Concurrency = 2
	release := make(chan struct{})
	rec := newRecorder()
	slow := &blockingSender{recorder: rec, block: "slow", release: release}
	startWorker(t, cfg, slow)
	waitPulling(t, js, "sms-worker", 1)

	queue(t, js, task("slow", "bob"))
	testkit.WaitFor(t, "the slow send to start", func() bool { return len(rec.attemptTimes("slow")) == 1 })
	for i := range 10 {
		queue(t, js, task(fmt.Sprintf("fast%d", i), fmt.Sprintf("u%d", i)))
	}
	testkit.WaitFor(t, "the fast tasks", func() bool {
		for i := range 10 {
			if rec.sentCount(fmt.Sprintf("fast%d", i)) != 1 {
				return false
			}
		}
		return true
	})
	close(release)
	waitEmpty(t, js)
	if got := rec.sentCount("slow"); got != 1 {
		t.Errorf("slow task sent %d times, want 1", got)
	}
}

// blockingSender holds the send of task block until release is closed.
type blockingSender struct {
	*recorder
	block   string
	release chan struct{}
}

func (b *blockingSender) Send(ctx context.Context, task chat.SMSTask) error {
	if task.ID == b.block {
		b.mu.Lock()
		b.attempts[task.ID] = append(b.attempts[task.ID], time.Now())
		b.mu.Unlock()
		<-b.release
		b.mu.Lock()
		b.sent[task.ID]++
		b.mu.Unlock()
		return nil
	}
	return b.recorder.Send(ctx, task)
}
