package bot_test

import (
	"strings"
	"testing"

	"github.com/natschat/chat/services/bot"
	"github.com/natschat/chat/shared/config"
)

// TestValidate: the defaults are valid, and every problem is reported at
// once, naming its variable.
func TestValidate(t *testing.T) {
	var cfg bot.Config
	if err := config.Load(bot.Prefix, &cfg, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("the defaults are refused: %v", err)
	}
	cfg.ShutdownTimeout = 0
	cfg.URL = ""
	cfg.Level = "chatty"
	err := cfg.Validate()
	for _, want := range []string{
		"BOT_SHUTDOWN_TIMEOUT must be more than 0 (got 0s)",
		"BOT_NATS_URL (or NATS_URL) must name at least one server",
		`BOT_LOG_LEVEL (or LOG_LEVEL) must be debug, info, warn or error (got "chatty")`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}
