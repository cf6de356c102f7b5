package bot_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/natschat/chat/services/bot"
	"github.com/natschat/chat/shared/config"
	"github.com/natschat/chat/shared/natsconn"
	"github.com/natschat/chat/shared/testkit"
	"github.com/natschat/chat/shared/testkit/natstest"
)

func TestConfigFromEnv(t *testing.T) {
	t.Setenv("NATS_URL", "nats://shared:4222")
	t.Setenv("BOT_ADMIN_ADDR", ":9999")
	t.Setenv("LOG_LEVEL", "debug")
	t.Setenv("BOT_LOG_LEVEL", "warn")
	var cfg bot.Config
	if err := config.Load("BOT", &cfg, nil, io.Discard); err != nil {
		t.Fatal(err)
	}
	if cfg.URL != "nats://shared:4222" || cfg.AdminAddr != ":9999" || cfg.Level != "warn" || cfg.Replicas != 1 {
		t.Errorf("got %+v, want NATS_URL as fallback, BOT_ADMIN_ADDR, BOT_LOG_LEVEL over LOG_LEVEL, 1 replica", cfg)
	}
}

// TestAdmin checks /healthz and /readyz: ready once the bot serves.
func TestAdmin(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	base := "http://" + testkit.FreeAddr(t)
	startBotConfig(t, bot.Config{Config: natsconn.Config{URL: s.ClientURL()}, ShutdownTimeout: 10 * time.Second, AdminAddr: strings.TrimPrefix(base, "http://")})
	testkit.WaitReady(t, base)
	testkit.WaitStatus(t, base+"/healthz", http.StatusOK, "")
	s.Shutdown()
	testkit.WaitStatus(t, base+"/readyz", http.StatusServiceUnavailable, "")
}
