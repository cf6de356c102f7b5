package config

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/natschat/chat/shared/natsconn"
)

type spec struct {
	natsconn.Config
	Log
	Addr string `default:":8080" desc:"listen address"`
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

func TestRun(t *testing.T) {
	var got spec
	run := func(_ context.Context, s spec, _ *slog.Logger) error {
		got = s
		return nil
	}
	t.Setenv("SVC_ADDR", ":1234")
	if err := Run(context.Background(), "SVC", nil, io.Discard, io.Discard, run); err != nil {
		t.Fatal(err)
	}
	if got.Addr != ":1234" {
		t.Errorf("run got %+v", got)
	}
	var out bytes.Buffer
	if err := Run(context.Background(), "SVC", []string{"-h"}, &out, io.Discard, run); err != nil || !strings.Contains(out.String(), "SVC_ADDR") {
		t.Errorf("-h: %v %q", err, out.String())
	}
	err := Run(context.Background(), "SVC", []string{"--nope"}, io.Discard, io.Discard, run)
	var ce configError
	if !errors.As(err, &ce) {
		t.Errorf("bad argument: %v, want a configuration error", err)
	}
	failed := errors.New("boom")
	if err := Run(context.Background(), "SVC", nil, io.Discard, io.Discard, func(context.Context, spec, *slog.Logger) error { return failed }); !errors.Is(err, failed) {
		t.Errorf("run failure: %v", err)
	}
}
