package accounts

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/config"
	"github.com/natschat/chat/shared/testkit"
	"github.com/natschat/chat/shared/testkit/natstest"
	"github.com/natschat/chat/shared/testkit/pgtest"
)

// backend is a database a test runs the service against; setup points cfg
// at a fresh one.
type backend struct {
	name  string
	setup func(t *testing.T, cfg *Config)
}

var (
	sqliteBackend = backend{"sqlite", func(t *testing.T, cfg *Config) {
		cfg.SQLitePath = filepath.Join(t.TempDir(), "data", "accounts.db")
	}}
	postgresBackend = backend{"postgres", func(t *testing.T, cfg *Config) {
		cfg.DatabaseURL = pgtest.Postgres(t).URL
	}}
	backends = []backend{sqliteBackend, postgresBackend}
)

// testConfig is the default configuration pointed at s, on SQLite.
func testConfig(t *testing.T, s *server.Server) Config {
	t.Helper()
	var cfg Config
	// An unused prefix gives the defaults of the struct tags.
	if err := config.Load("ACCOUNTSTEST", &cfg, nil, nil); err != nil {
		t.Fatal(err)
	}
	cfg.URL = s.ClientURL()
	cfg.DatabaseURL = ""
	sqliteBackend.setup(t, &cfg)
	return cfg
}

type lockedWriter struct {
	mu  *sync.Mutex
	buf *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

// startAccounts runs the service until the returned stop is called (at the
// latest when the test ends), and waits until it answers requests.
func startAccounts(t *testing.T, cfg Config, nc *nats.Conn) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	log := testkit.Logger(t) // its cleanup runs after the service has stopped
	go func() { errc <- Run(ctx, cfg, log) }()
	stop = sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Run did not return within 30s of cancel")
		}
	})
	t.Cleanup(stop)
	testkit.WaitForState(t, 20*time.Second, "the accounts service answers", func() (bool, string) {
		select {
		case err := <-errc:
			t.Fatalf("Run returned early: %v", err)
		default:
		}
		if cfg.AdminAddr != "" {
			// This instance, not another one in the queue group.
			resp, err := http.Get("http://" + cfg.AdminAddr + "/readyz")
			if err != nil {
				return false, err.Error()
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return false, resp.Status
			}
		}
		var r chat.AuthReply
		if err := request(nc, chat.AuthSession, chat.TokenRequest{}, &r); err != nil {
			return false, err.Error()
		}
		return r.Code == chat.CodeUnauthorized, fmt.Sprintf("%+v", r)
	})
	return stop
}

// request sends req (JSON, or raw bytes) to subject and decodes the reply.
func request(nc *nats.Conn, subject string, req any, resp any) error {
	data, ok := req.([]byte)
	if !ok {
		var err error
		if data, err = json.Marshal(req); err != nil {
			return err
		}
	}
	m, err := nc.Request(subject, data, 10*time.Second)
	if err != nil {
		return fmt.Errorf("request %s: %w", subject, err)
	}
	return json.Unmarshal(m.Data, resp)
}

// ask is request for tests: any transport error fails the test.
func ask(t *testing.T, nc *nats.Conn, subject string, req any) chat.AuthReply {
	t.Helper()
	var r chat.AuthReply
	if err := request(nc, subject, req, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// mustOK fails the test unless r is a success.
func mustOK(t *testing.T, what string, r chat.AuthReply) chat.AuthReply {
	t.Helper()
	if !r.OK || r.Code != "" {
		t.Fatalf("%s: got %+v, want ok", what, r)
	}
	return r
}

// mustCode fails the test unless r is a refusal with code.
func mustCode(t *testing.T, what string, r chat.AuthReply, code chat.Code) chat.AuthReply {
	t.Helper()
	if r.OK || r.Code != code || r.Error == "" {
		t.Fatalf("%s: got %+v, want refused with %s and a reason", what, r, code)
	}
	return r
}

func register(t *testing.T, nc *nats.Conn, name, password string) chat.Session {
	t.Helper()
	r := mustOK(t, "register "+name, ask(t, nc, chat.AuthRegister, chat.Credentials{Name: name, Password: password}))
	if r.Session == nil || r.Account == nil {
		t.Fatalf("register %s: no session or account in %+v", name, r)
	}
	return *r.Session
}

func login(t *testing.T, nc *nats.Conn, name, password string) chat.Session {
	t.Helper()
	r := mustOK(t, "login "+name, ask(t, nc, chat.AuthLogin, chat.Credentials{Name: name, Password: password}))
	if r.Session == nil || r.Account == nil {
		t.Fatalf("login %s: no session or account in %+v", name, r)
	}
	return *r.Session
}

// watcher follows a bucket as a gateway would: the current values, then
// every change.
type watcher struct {
	t  *testing.T
	mu sync.Mutex
	// values holds the live keys; events every put and delete seen.
	values map[string][]byte
	events []string
	synced bool
}

func watch(t *testing.T, nc *nats.Conn, bucket string) *watcher {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		t.Fatalf("bucket %s: %v", bucket, err)
	}
	kw, err := kv.WatchAll(context.Background())
	if err != nil {
		t.Fatalf("watch %s: %v", bucket, err)
	}
	w := &watcher{t: t, values: map[string][]byte{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range kw.Updates() {
			w.mu.Lock()
			switch {
			case e == nil:
				w.synced = true
			case e.Operation() == jetstream.KeyValuePut:
				w.values[e.Key()] = e.Value()
				w.events = append(w.events, "put "+e.Key())
			default:
				delete(w.values, e.Key())
				w.events = append(w.events, "delete "+e.Key())
			}
			w.mu.Unlock()
		}
	}()
	t.Cleanup(func() { kw.Stop(); <-done })
	testkit.WaitForState(t, 10*time.Second, bucket+" watcher has the current values", func() (bool, string) {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.synced, ""
	})
	return w
}

// waitValue waits until key holds a value, and decodes it into v.
func (w *watcher) waitValue(key string, v any) {
	w.t.Helper()
	var data []byte
	testkit.WaitForState(w.t, 10*time.Second, "key "+key, func() (bool, string) {
		w.mu.Lock()
		defer w.mu.Unlock()
		data = w.values[key]
		return data != nil, strings.Join(w.events, ", ")
	})
	if err := json.Unmarshal(data, v); err != nil {
		w.t.Fatalf("key %s: %v in %s", key, err, data)
	}
}

// waitDeleted waits until the watcher saw key deleted.
func (w *watcher) waitDeleted(key string) {
	w.t.Helper()
	testkit.WaitForState(w.t, 10*time.Second, "key "+key+" deleted", func() (bool, string) {
		w.mu.Lock()
		defer w.mu.Unlock()
		_, live := w.values[key]
		return !live && w.saw("delete "+key), strings.Join(w.events, ", ")
	})
}

func (w *watcher) has(key string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.values[key]
	return ok
}

// saw reports whether event happened; call with mu held.
func (w *watcher) saw(event string) bool {
	for _, e := range w.events {
		if e == event {
			return true
		}
	}
	return false
}

// metric is the sum of the series with name and labels (a substring of
// its label set) on the admin server at addr.
func metric(t *testing.T, addr, name, labels string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var total float64
	for _, line := range strings.Split(string(body), "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != '{' && rest[0] != ' ') || !strings.Contains(rest, labels) {
			continue
		}
		var v float64
		fmt.Sscan(rest[strings.LastIndexByte(rest, ' ')+1:], &v)
		total += v
	}
	return total
}

// startNATS runs an embedded server over dir, so a test can stop it and
// start another over the same data.
func startNATS(t *testing.T, dir string) *server.Server {
	t.Helper()
	return natstest.StartWith(t, natstest.Options{StoreDir: dir})
}
