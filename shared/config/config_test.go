package config

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// spec is shaped like a service's configuration: an embedded part with
// shared variables (as natsconn.Config), the log, and its own.
type spec struct {
	NATS
	Log
	Addr string `default:":8080" desc:"listen address"`
}

type NATS struct {
	URL string `envconfig:"NATS_URL" default:"nats://127.0.0.1:4222" desc:"NATS server URLs"`
}

func TestLoadPrefixedAndUnprefixed(t *testing.T) {
	t.Setenv("NATS_URL", "nats://shared:4222")
	t.Setenv("SVC_ADDR", ":9999")
	var s spec
	if err := Load("SVC", &s, nil, nil); err != nil {
		t.Fatal(err)
	}
	if s.URL != "nats://shared:4222" || s.Addr != ":9999" || s.Level != "info" {
		t.Errorf("got %+v", s)
	}
	t.Setenv("SVC_NATS_URL", "nats://own:4222")
	if err := Load("SVC", &s, nil, nil); err != nil {
		t.Fatal(err)
	}
	if s.URL != "nats://own:4222" {
		t.Errorf("prefixed variable ignored: got %q", s.URL)
	}
}

func TestLoadHelp(t *testing.T) {
	var out bytes.Buffer
	var s spec
	err := Load("SVC", &s, []string{"-h"}, &out)
	if !errors.Is(err, ErrHelp) {
		t.Fatalf("got %v, want ErrHelp", err)
	}
	for _, want := range []string{"SVC_NATS_URL", "(or NATS_URL)", "SVC_ADDR", ":8080", "SVC_LOG_LEVEL"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("usage does not mention %q:\n%s", want, out.String())
		}
	}
	if err := Load("SVC", &s, []string{"--port=1"}, &out); err == nil || errors.Is(err, ErrHelp) {
		t.Errorf("unknown argument accepted: %v", err)
	}
}

func TestLogger(t *testing.T) {
	var out bytes.Buffer
	log, err := Log{Level: "warn", Format: "json"}.Logger(&out)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hidden")
	log.Warn("shown", "room", "lobby")
	if strings.Contains(out.String(), "hidden") || !strings.Contains(out.String(), `"room":"lobby"`) {
		t.Errorf("got %q", out.String())
	}
	if _, err := (Log{Level: "loud", Format: "json"}).Logger(&out); err == nil {
		t.Error("bad level accepted")
	}
}

// TestChecker: every problem is reported, each naming its variable, the
// shared ones with their unprefixed fallback.
func TestChecker(t *testing.T) {
	c := NewChecker("SVC")
	c.Check(true, "FINE", "is never reported")
	c.Check(false, "SEND_QUEUE", "must be at least 1 (got %d)", 0)
	Log{Level: "loud", Format: "yaml"}.Check(c)
	err := c.Err()
	if err == nil {
		t.Fatal("no error")
	}
	want := []string{
		"SVC_SEND_QUEUE must be at least 1 (got 0)",
		`SVC_LOG_LEVEL (or LOG_LEVEL) must be debug, info, warn or error (got "loud")`,
		`SVC_LOG_FORMAT (or LOG_FORMAT) must be text, json or auto (got "yaml")`,
	}
	if got := strings.Split(err.Error(), "\n"); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got\n%s\nwant\n%s", err, strings.Join(want, "\n"))
	}
	if err := NewChecker("SVC").Err(); err != nil {
		t.Errorf("no problems: got %v", err)
	}
	ok := NewChecker("SVC")
	Log{Level: "WARN", Format: "json"}.Check(ok)
	if err := ok.Err(); err != nil {
		t.Errorf("valid log settings refused: %v", err)
	}
}

func TestParseArgs(t *testing.T) {
	for _, tt := range []struct {
		args    []string
		help    bool
		wantErr bool
	}{
		{nil, false, false},
		{[]string{"-h"}, true, false},
		{[]string{"--help"}, true, false},
		{[]string{"-port", "1"}, false, true},
	} {
		help, err := ParseArgs(tt.args)
		if help != tt.help || (err != nil) != tt.wantErr {
			t.Errorf("ParseArgs(%q) = %v, %v; want help %v, error %v", tt.args, help, err, tt.help, tt.wantErr)
		}
	}
}
