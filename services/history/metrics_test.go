package history

import (
	"net/http"
	"strings"
	"testing"

	"github.com/natschat/chat/shared/testkit"
	"github.com/natschat/chat/shared/testkit/natstest"
)

// TestMetrics checks /metrics on the admin server: rows stored, batches,
// lag and bad payloads.
func TestMetrics(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	cfg := testConfig(t, s)
	cfg.AdminAddr = testkit.FreeAddr(t)
	sqliteBackend.setup(t, &cfg)
	startHistory(t, cfg, nc)
	waitReady(t, cfg.AdminAddr, http.StatusOK, "ready")

	publish(t, nc, roomNames(2), 0, 40)
	if err := nc.Publish("chat.room.lobby", []byte("not json")); err != nil {
		t.Fatal(err)
	}
	wants := []string{
		"chat_history_messages_stored_total 40",
		"chat_history_bad_messages_total 1",
		"chat_history_lag_messages 0",
		"chat_history_batch_size_count",
		"chat_history_store_errors_total 0",
	}
	testkit.WaitForState(t, testkit.Deadline, "the metrics", func() (bool, string) {
		_, body, _ := testkit.Get("http://" + cfg.AdminAddr + "/metrics")
		for _, want := range wants {
			if !strings.Contains(body, want) {
				return false, "lacks " + want + " in\n" + body
			}
		}
		return true, ""
	})
}
