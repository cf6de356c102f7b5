package admin

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func TestStart(t *testing.T) {
	var notReady atomic.Bool
	notReady.Store(true)
	ready := func() error {
		if notReady.Load() {
			return errors.New("nats not connected")
		}
		return nil
	}
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "up 1\n") })
	log := slog.New(slog.DiscardHandler)
	stop, err := Start("127.0.0.1:0", ready, metrics, log)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if stop, err := Start("", ready, metrics, log); err != nil {
		t.Fatal(err)
	} else {
		stop()
	}
	if _, err := Start("127.0.0.1:-1", ready, metrics, log); err == nil {
		t.Error("bad address accepted")
	}
}

func TestHandler(t *testing.T) {
	var notReady atomic.Bool
	notReady.Store(true)
	h := Handler(func() error {
		if notReady.Load() {
			return errors.New("nats not connected")
		}
		return nil
	}, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "up 1\n") }))
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code, rec.Body.String()
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("healthz %d", code)
	}
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "nats not connected") {
		t.Errorf("readyz %d %q, want 503 with the reason", code, body)
	}
	notReady.Store(false)
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("readyz %d once ready", code)
	}
	if code, body := get("/metrics"); code != 200 || body != "up 1\n" {
		t.Errorf("metrics %d %q", code, body)
	}
}
