package testkit

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func TestMain(m *testing.M) { Main(m) }

func TestStartStopsOnce(t *testing.T) {
	var stopped atomic.Int32
	stop := Start(t, "service", func(ctx context.Context) error {
		<-ctx.Done()
		stopped.Add(1)
		return nil
	})
	stop()
	stop()
	if got := stopped.Load(); got != 1 {
		t.Errorf("run returned %d times, want once", got)
	}
}

func TestWaitFor(t *testing.T) {
	n := 0
	WaitFor(t, "the third call", func() bool { n++; return n == 3 })
	if n != 3 {
		t.Errorf("cond called %d times, want 3", n)
	}
}

func TestBuildAndProcess(t *testing.T) {
	bin := GoBuild(t, ".", "./testdata/hello")
	if again := GoBuild(t, ".", "./testdata/hello"); again != bin {
		t.Errorf("second build at %s, want the first one, %s", again, bin)
	}
	p := StartProcess(t, "hello", bin, "HELLO_NAME=kit")
	WaitFor(t, "the greeting", func() bool { return len(p.Lines()) == 1 })
	if got := p.Lines()[0]; got != "hello kit" {
		t.Errorf("got %q, want hello kit", got)
	}
	if err := p.Terminate(t); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
	if !p.Exited() || !strings.HasSuffix(p.Output(), "bye\n") {
		t.Errorf("output %q, want it to end with bye", p.Output())
	}
}

func TestHTTP(t *testing.T) {
	var ready atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/readyz":
			if !ready.Load() {
				ready.Store(true) // ready from the second probe on
				http.Error(w, "starting", http.StatusServiceUnavailable)
				return
			}
		case "/metrics":
			w.Write([]byte("# HELP x\nplain 3\nlabelled{a=\"b\"} 1.5\n"))
		}
	}))
	defer srv.Close()
	WaitReady(t, srv.URL)
	if v, ok := Metric(t, srv.URL+"/metrics", `labelled{a="b"}`); !ok || v != 1.5 {
		t.Errorf("labelled: got %v %v, want 1.5", v, ok)
	}
	if v, ok := Metric(t, srv.URL+"/metrics", "plain"); !ok || v != 3 {
		t.Errorf("plain: got %v %v, want 3", v, ok)
	}
	if _, ok := Metric(t, srv.URL+"/metrics", "absent"); ok {
		t.Error("absent series found")
	}
}
