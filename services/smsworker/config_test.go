package smsworker_test

import (
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/natschat/chat/services/smsworker"
	"github.com/natschat/chat/shared/config"
)

func TestConfigFromEnv(t *testing.T) {
	t.Setenv("NATS_URL", "nats://shared:4222")
	t.Setenv("SMSWORKER_BACKOFF", "10ms,2s")
	t.Setenv("SMSWORKER_FAKE_FAIL", "0.25")
	var cfg smsworker.Config
	if err := config.Load("SMSWORKER", &cfg, nil, io.Discard); err != nil {
		t.Fatal(err)
	}
	if cfg.URL != "nats://shared:4222" {
		t.Errorf("got URL %q, want NATS_URL as the fallback", cfg.URL)
	}
	if want := []time.Duration{10 * time.Millisecond, 2 * time.Second}; !slices.Equal(cfg.Backoff, want) {
		t.Errorf("got backoff %v, want %v", cfg.Backoff, want)
	}
	if cfg.MaxDeliver != 5 || cfg.Concurrency != 4 || cfg.Consumer != "sms-worker" || cfg.AckWait != 30*time.Second || cfg.FakeFail != "0.25" {
		t.Errorf("got %+v, want the defaults", cfg)
	}
}

// TestBadConfig checks that Validate refuses a bad configuration at once,
// naming the variable: the skeleton (shared/service) calls Validate before
// Run, so nothing connects anywhere.
func TestBadConfig(t *testing.T) {
	t.Parallel()
	var good smsworker.Config
	if err := config.Load("SMSWORKER", &good, nil, io.Discard); err != nil {
		t.Fatal(err)
	}
	if err := good.Validate(); err != nil {
		t.Fatalf("the defaults are refused: %v", err)
	}
	for _, tc := range []struct {
		name   string
		change func(*smsworker.Config)
		want   string
	}{
		{"no concurrency", func(c *smsworker.Config) { c.Concurrency = 0 }, "SMSWORKER_CONCURRENCY"},
		{"no backoff", func(c *smsworker.Config) { c.Backoff = nil }, "SMSWORKER_BACKOFF"},
		{"bad fail rate", func(c *smsworker.Config) { c.FakeFail = "sometimes" }, "SMSWORKER_FAKE_FAIL"},
		{"bad consumer", func(c *smsworker.Config) { c.Consumer = "a.b" }, "SMSWORKER_CONSUMER"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.change(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error naming %s", err, tc.want)
			}
		})
	}
}
