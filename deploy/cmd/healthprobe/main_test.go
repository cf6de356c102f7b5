package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestRun(t *testing.T) {
	ready := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !ready {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()

	if err := run([]string{srv.URL}); err != nil {
		t.Errorf("ready server: %v, want nil", err)
	}
	ready = false
	if err := run([]string{srv.URL}); err == nil {
		t.Error("503: got nil, want an error")
	}
	srv.Close()
	if err := run([]string{srv.URL}); err == nil {
		t.Error("closed server: got nil, want an error")
	}
	if err := run(nil); err == nil {
		t.Error("no url: got nil, want a usage error")
	}
}
