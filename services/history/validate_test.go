package history

import (
	"strings"
	"testing"

	"github.com/natschat/chat/shared/config"
)

// TestValidate: the defaults are valid, and every problem is reported at
// once, naming its variable.
func TestValidate(t *testing.T) {
	var defaults Config
	if err := config.Load("HISTORYTEST", &defaults, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := defaults.Validate(); err != nil {
		t.Errorf("the defaults are refused: %v", err)
	}

	t.Setenv("HISTORY_BATCH_SIZE", "0")
	t.Setenv("HISTORY_ACK_WAIT", "10ms")
	t.Setenv("HISTORY_DATABASE_URL", "mysql://u:secret@db/chat")
	var cfg Config
	if err := config.Load(Prefix, &cfg, nil, nil); err != nil {
		t.Fatal(err)
	}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("bad configuration accepted")
	}
	for _, want := range []string{
		"HISTORY_BATCH_SIZE must be at least 1 (got 0)",
		"HISTORY_ACK_WAIT must be at least 1s (got 10ms)",
		`HISTORY_DATABASE_URL (or DATABASE_URL) must start with postgres:// or postgresql://, or be empty for SQLite (got a "mysql" URL)`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("the error shows the database password: %v", err)
	}
}
