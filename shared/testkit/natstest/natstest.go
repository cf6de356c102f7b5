// Package natstest runs an embedded nats-server with JetStream for tests: a
// random port and a temporary store, so tests run in parallel.
package natstest

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/natschat/chat/shared/testkit"
)

// Start runs a JetStream server on a random loopback port with its store in
// t.TempDir(), and shuts it down when the test ends.
func Start(t testing.TB) *server.Server {
	t.Helper()
	return StartWith(t, Options{})
}

// Options changes what StartWith runs; the zero value is Start's server.
type Options struct {
	// StoreDir is the JetStream store; default a new t.TempDir(). A test
	// restarts a server over the same data by passing the same directory.
	StoreDir string
	// Port is the client port; default a random one. A test restarting a
	// server on the address its clients reconnect to passes the same port.
	Port int
	// NoJetStream runs a server without JetStream, as a server whose
	// JetStream is down looks to a client.
	NoJetStream bool
}

// StartWith is Start with options.
func StartWith(t testing.TB, o Options) *server.Server {
	t.Helper()
	opts := &server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: !o.NoJetStream, StoreDir: o.StoreDir}
	if opts.StoreDir == "" {
		opts.StoreDir = t.TempDir()
	}
	if o.Port != 0 {
		opts.Port = o.Port
	}
	return Run(t, opts)
}

// Run runs a server with opts as given (from a configuration file, say),
// quiet and without signal handlers, waits until it accepts clients, and
// shuts it down when the test ends.
func Run(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	opts.NoSigs, opts.NoLog = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("new nats server: %v", err)
	}
	s.Start()
	if !s.ReadyForConnections(testkit.Deadline) {
		s.Shutdown()
		t.Fatalf("nats server not ready within %v", testkit.Deadline)
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// Connect opens a plain client connection to s, closed when the test ends.
func Connect(t testing.TB, s *server.Server) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL(), nats.Name(t.Name()))
	if err != nil {
		t.Fatalf("connect to test nats: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// Disconnect drops the client connection named name (nats.Name) on s, as a
// network failure would: the client reconnects by itself.
func Disconnect(t testing.TB, s *server.Server, name string) {
	t.Helper()
	connz, err := s.Connz(&server.ConnzOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range connz.Conns {
		if c.Name == name {
			if err := s.DisconnectClientByID(c.Cid); err != nil {
				t.Fatalf("disconnect %s: %v", name, err)
			}
			return
		}
	}
	t.Fatalf("no connection named %q on the server", name)
}
