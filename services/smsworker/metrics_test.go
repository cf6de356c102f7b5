package smsworker_test

import (
	"strings"
	"testing"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/testkit"
	"github.com/natschat/chat/shared/testkit/natstest"
)

// TestMetrics checks /metrics on the admin server: sends, retries and dead
// letters are counted.
func TestMetrics(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	js := natstest.JetStream(t, natstest.Connect(t, s))
	cfg := testConfig(s)
	cfg.AdminAddr = testkit.FreeAddr(t)
	cfg.MaxDeliver = 2
	rec := newRecorder()
	rec.fail = func(task chat.SMSTask) bool { return task.ID == "bad" }
	startWorker(t, cfg, rec)
	waitPulling(t, js, "sms-worker", 1)

	queue(t, js, task("good", "carol"))
	queue(t, js, task("bad", "bob"))
	queueRaw(t, js, []byte("not json"), "garbage")
	testkit.WaitFor(t, "two dead letters", func() bool { return natstest.StreamState(t, js, "SMS_DEAD").Msgs == 2 })

	got := testkit.GetOK(t, "http://"+cfg.AdminAddr+"/metrics")
	for _, want := range []string{
		"chat_sms_sent_total 1",
		"chat_sms_send_failures_total 2",
		"chat_sms_retried_total 1",
		`chat_sms_dead_lettered_total{cause="failed"} 1`,
		`chat_sms_dead_lettered_total{cause="malformed"} 1`,
		`chat_sms_dead_lettered_total{cause="abandoned"} 0`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, got)
		}
	}
}
