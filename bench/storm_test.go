package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/natschat/chat/shared/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// TestS7ReconnectStorm restarts a real all-in-one (SIGTERM, then a new
// process on the same ports and data dir) under 200 clients: every one
// resumes with ?since= and receives every message of its room once, those
// sent while the server was down included.
func TestS7ReconnectStorm(t *testing.T) {
	bin := testkit.GoBuild(t, "../services/allinone", ".")
	addr := testkit.FreeAddr(t)
	base := "http://" + addr
	env := []string{
		"CHAT_DATA_DIR=" + t.TempDir(),
		"CHAT_NATS_PORT=" + strconv.Itoa(testkit.FreePort(t)),
		"GATEWAY_ADDR=" + addr,
		"GATEWAY_RATE=1000000", "GATEWAY_BURST=1000000", "GATEWAY_MAX_CONNS_PER_ADDR=1000000",
		// What is tested is the resume, not the slow-client rule: a
		// client starved of CPU on a busy machine must not be cut off.
		"GATEWAY_SEND_QUEUE=100000",
		"CHAT_LOG_LEVEL=warn", "GATEWAY_LOG_LEVEL=warn",
	}
	server := testkit.StartProcess(t, "allinone", bin, env...)
	testkit.WaitReady(t, base)

	b := newTestBench(t, base)
	b.serverPID = server.Cmd.Process.Pid
	var pids []int
	b.restart = func(context.Context) (int, error) {
		if err := server.Terminate(t); err != nil {
			return 0, fmt.Errorf("stop the all-in-one: %w", err)
		}
		server = testkit.StartProcess(t, "allinone (restarted)", bin, env...)
		testkit.WaitReady(t, base)
		pids = append(pids, server.Cmd.Process.Pid)
		return server.Cmd.Process.Pid, nil
	}
	s := storm{clients: 200, rooms: 10, rate: 50, before: time.Second, after: time.Second, target: time.Minute, wait: time.Minute}
	r := b.runStorm(context.Background(), s)
	for _, n := range r.Notes {
		t.Log(n)
	}
	if r.failed() {
		t.Fatalf("problems: %v", r.Problems)
	}
	if len(pids) != 1 || b.serverPID != pids[0] {
		t.Errorf("restarted %d times, server pid now %d; want once, the figures following the new pid %v", len(pids), b.serverPID, pids)
	}
	if r.Conns != 200 || r.Lat.n != 200 {
		t.Errorf("got %d clients, %d resumed; want 200 and all of them", r.Conns, r.Lat.n)
	}
	if r.Sent == 0 || r.Expected != r.Sent*20 || r.Delivered != r.Expected || r.Lost != 0 || r.Dups != 0 {
		t.Errorf("got sent %d, expected %d, delivered %d, lost %d, dups %d; want every message to each of the 20 members of its room once",
			r.Sent, r.Expected, r.Delivered, r.Lost, r.Dups)
	}
	if !strings.HasPrefix(r.Figure, "all 200 resumed") || !strings.HasPrefix(r.Target, "met") {
		t.Errorf("figure %q, target %q; want all resumed and the target met", r.Figure, r.Target)
	}
}

func TestS7SkippedWithoutRestart(t *testing.T) {
	b := newTestBench(t, "http://127.0.0.1:1")
	r := b.runStorm(context.Background(), storm{clients: 10, rooms: 1, rate: 1})
	if !r.Skipped || r.failed() || !strings.Contains(strings.Join(r.Notes, " "), "-restart-cmd") {
		t.Errorf("got skipped %v, problems %v, notes %v; want skipped, naming -restart-cmd", r.Skipped, r.Problems, r.Notes)
	}
}

func TestShellRestart(t *testing.T) {
	pid, err := shellRestart("echo stopping >&2; echo starting; echo 4242", io.Discard)(context.Background())
	if err != nil || pid != 4242 {
		t.Errorf("got pid %d, err %v; want 4242 from the last line", pid, err)
	}
	for _, cmd := range []string{"true", "echo ready", "echo 12; exit 3"} {
		if _, err := shellRestart(cmd, io.Discard)(context.Background()); err == nil {
			t.Errorf("%q: got no error, want one", cmd)
		}
	}
}

func TestResumeURL(t *testing.T) {
	f := newFollower()
	f.url = "ws://127.0.0.1:1/ws/chat/r/u?batch=1"
	if got := f.resumeURL(); got != f.url {
		t.Errorf("nothing seen: got %s, want a fresh join %s", got, f.url)
	}
	f.lastSeq, f.epoch = 41, 1700000000000000
	if got, want := f.resumeURL(), f.url+"&since=41&epoch=1700000000000000"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	f.url = "ws://127.0.0.1:1/ws/chat/r/u"
	if got, want := f.resumeURL(), f.url+"?since=41&epoch=1700000000000000"; got != want {
		t.Errorf("without batch: got %s, want %s", got, want)
	}
	for retry := range 10 {
		d := backoff(retry)
		base := min(15*time.Second, 500*time.Millisecond<<retry)
		if d < base*3/4 || d > base*5/4 {
			t.Errorf("backoff(%d) = %v, want within 25%% of %v", retry, d, base)
		}
	}
}
