package bot_test

import (
	"strings"
	"testing"
	"time"

	"github.com/natschat/chat/services/bot"
	"github.com/natschat/chat/shared/natsconn"
	"github.com/natschat/chat/shared/testkit"
	"github.com/natschat/chat/shared/testkit/natstest"
)

// TestMetrics checks /metrics on the admin server: commands counted by name
// and outcome, with unknown names folded into one label.
func TestMetrics(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	addr := testkit.FreeAddr(t)
	startBotConfig(t, bot.Config{Config: natsconn.Config{URL: s.ClientURL()}, ShutdownTimeout: 10 * time.Second, AdminAddr: addr})
	// Ready, not just serving /metrics: the admin server starts before
	// the bot subscribes to bot.cmd.
	testkit.WaitReady(t, "http://"+addr)
	for _, text := range []string{"/now", "/now", "/sms", "/frobnicate-a", "/frobnicate-b"} {
		askRaw(t, nc, []byte(`{"room":"lobby","user":"ann","text":"`+text+`"}`))
	}
	got := testkit.GetOK(t, "http://"+addr+"/metrics")
	for _, want := range []string{
		`chat_bot_commands_total{command="now",outcome="ok"} 2`,
		`chat_bot_commands_total{command="sms",outcome="refused"} 1`,
		`chat_bot_commands_total{command="unknown",outcome="refused"} 2`,
		`go_goroutines`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, got)
		}
	}
}
