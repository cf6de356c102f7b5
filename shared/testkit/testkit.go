// Package testkit holds what the chat's tests share: waiting for a
// condition, free ports, running a service until the test ends, building
// and running binaries, and HTTP probes. The embedded nats-server, the
// Postgres database and the WebSocket client are in natstest, pgtest and
// wstest.
//
// It is its own module so that shared, the wire contract every service and
// client imports, does not depend on nats-server or a database driver.
//
// Every wait here has a deadline, Deadline, not a duration that proves
// something: it is long because a busy machine must not fail a correct test,
// and a test that waits for what it needs returns as soon as it holds.
package testkit

import (
	"bytes"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// Deadline is how long the kit waits for something before it fails the
// test.
const Deadline = 30 * time.Second

// pollEvery is how often a condition is checked again.
const pollEvery = 20 * time.Millisecond

// WaitFor checks cond until it holds, and fails the test if it still does
// not after Deadline. what names the condition in the failure.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	WaitForState(t, Deadline, what, func() (bool, string) { return cond(), "" })
}

// WaitForState is WaitFor for a condition that says how far it got (say,
// "40 of 100 stored"), with its own timeout for waits longer than Deadline.
// The last state is in the failure message.
func WaitForState(t testing.TB, timeout time.Duration, what string, cond func() (ok bool, state string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			if state != "" {
				state = ": " + state
			}
			t.Fatalf("timed out after %v waiting for %s%s", timeout, what, state)
		}
		time.Sleep(pollEvery)
	}
}

// Missing skips the test because something it needs (a database, a browser,
// a command) is not there, except in CI (CI=true), where everything must be
// there and the test fails instead. how says how to provide it.
func Missing(t testing.TB, what, how string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is missing and CI=true: %s", what, how)
	}
	t.Skipf("%s is missing: %s to run this test", what, how)
}

// FreePort is a loopback TCP port that was free a moment ago, for a server
// that must be given its port (a process, or one restarted on the same
// address). Listen on 127.0.0.1:0 instead where the code under test takes a
// listener.
//
// The port is drawn at random below Linux's ephemeral range (32768 and
// up), never from the kernel's own choice: between the check here and the
// server's bind, the kernel hands ephemeral ports to every other listener
// on port 0 and every outgoing connection of the machine, and two test
// runs side by side lost their cluster to that. No port is handed out
// twice in one test binary.
func FreePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 1000 {
		port := portLow + rand.IntN(portHigh-portLow)
		if portsGiven[port] {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue // taken
		}
		ln.Close()
		portsGiven[port] = true
		return port
	}
	t.Fatalf("no free port in %d-%d after 1000 tries", portLow, portHigh)
	return 0
}

// The range FreePort draws from.
const portLow, portHigh = 20000, 32768

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// FreeAddr is FreePort as a host:port address.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", FreePort(t))
}

// Listen listens on a random loopback port, and closes the listener when
// the test ends (closing it twice is harmless).
func Listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// Buffer is a bytes.Buffer that one goroutine may write while another
// reads it: a service's log, a child process's output.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String is what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Logger is a debug-level logger for a service under test. What it logs is
// printed when the test ends, if it failed or runs with -v, so that passing
// runs stay quiet. Create it before starting the service, so that the
// service has stopped when the log is printed; lines written later are
// dropped, never a panic.
func Logger(t testing.TB) *slog.Logger {
	var buf Buffer
	t.Cleanup(func() {
		if t.Failed() || testing.Verbose() {
			t.Logf("log:\n%s", buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
