package history

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/natschat/chat/services/history/internal/store"
	"github.com/natschat/chat/shared/natstest"
	"github.com/natschat/chat/shared/pgtest"
)

// outage makes a backend's database fail for writes and brings it back.
type outage struct {
	name  string
	setup func(t *testing.T, cfg *Config) (o store.Options, cut, restore func())
}

var outages = []outage{
	{"postgres", func(t *testing.T, cfg *Config) (store.Options, func(), func()) {
		db := pgtest.Postgres(t)
		cfg.DatabaseURL = db.URL
		return store.Options{URL: db.URL}, func() { db.Cut(t) }, func() { db.Restore(t) }
	}},
	{"sqlite", func(t *testing.T, cfg *Config) (store.Options, func(), func()) {
		o := sqliteBackend.setup(t, cfg)
		// Running as root makes file permissions useless here, so the outage
		// is another process holding the write lock: writes fail with
		// "database is locked" after the busy timeout.
		var conn *sql.Conn
		cut := func() {
			db, err := sql.Open("sqlite", "file:"+cfg.SQLitePath+"?_busy_timeout=5000")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			conn, err = db.Conn(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := conn.ExecContext(context.Background(), "BEGIN EXCLUSIVE"); err != nil {
				t.Fatalf("lock sqlite: %v", err)
			}
		}
		restore := func() {
			if _, err := conn.ExecContext(context.Background(), "ROLLBACK"); err != nil {
				t.Fatalf("unlock sqlite: %v", err)
			}
			conn.Close()
		}
		return o, cut, restore
	}},
}

// TestDatabaseOutage: while the database is down, messages keep arriving
// and /readyz says not ready; once it is back, every message is stored
// exactly once.
func TestDatabaseOutage(t *testing.T) {
	t.Parallel()
	for _, o := range outages {
		t.Run(o.name, func(t *testing.T) {
			t.Parallel()
			s := natstest.Start(t)
			nc := natstest.Connect(t, s)
			cfg := testConfig(t, s)
			cfg.AdminAddr = freeAddr(t)
			cfg.BatchSize = 100
			opts, cut, restore := o.setup(t, &cfg)
			st := openStore(t, opts)
			startHistory(t, cfg, nc)
			rooms := roomNames(3)

			publish(t, nc, rooms, 0, 300)
			waitStored(t, st, 300, 20*time.Second)
			waitReady(t, cfg.AdminAddr, http.StatusOK, "ready")

			cut()
			publish(t, nc, rooms, 300, 100)
			waitReady(t, cfg.AdminAddr, http.StatusServiceUnavailable, "database")
			// Keep the outage up for a few retries while messages keep coming;
			// the service must stay not ready all along.
			for i := 400; i < 900; i += 100 {
				time.Sleep(200 * time.Millisecond) // outage length, not synchronisation
				publish(t, nc, rooms, i, 100)
				if code, body := get(t, cfg.AdminAddr, "/readyz"); code != http.StatusServiceUnavailable {
					t.Errorf("/readyz during the outage: got %d %q", code, body)
				}
			}
			restore()

			c := waitStored(t, st, 900, 30*time.Second)
			checkExactlyOnce(t, c, 900, true)
			waitReady(t, cfg.AdminAddr, http.StatusOK, "ready")
		})
	}
}

func TestAdmin(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	cfg := testConfig(t, s)
	cfg.AdminAddr = freeAddr(t)
	sqliteBackend.setup(t, &cfg)
	stop := startHistory(t, cfg, nc)
	waitReady(t, cfg.AdminAddr, http.StatusOK, "ready")
	if code, body := get(t, cfg.AdminAddr, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: got %d %q", code, body)
	}

	// A taken port is an immediate error from Run, not a log line later.
	taken := cfg
	taken.SQLitePath = filepath.Join(t.TempDir(), "other.db")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := Run(ctx, taken, testLogger(t)); err == nil || !strings.Contains(err.Error(), "admin listen") {
		t.Errorf("Run on a taken admin port: got %v, want an admin listen error", err)
	}

	stop()
	if _, err := http.Get("http://" + cfg.AdminAddr + "/healthz"); err == nil {
		t.Error("admin server still answers after Run returned")
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func get(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	client := http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://" + addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func waitReady(t *testing.T, addr string, wantCode int, wantBody string) {
	t.Helper()
	waitFor(t, 20*time.Second, fmt.Sprintf("/readyz %d %q", wantCode, wantBody), func() (bool, string) {
		code, body := get(t, addr, "/readyz")
		return code == wantCode && strings.Contains(body, wantBody), fmt.Sprintf("%d %q", code, body)
	})
}

// TestStartsBeforeDatabase: a service started while its database is down
// waits for it (not ready meanwhile) instead of exiting; a wrong database
// URL fails at once.
func TestStartsBeforeDatabase(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	cfg := testConfig(t, s)
	cfg.AdminAddr = freeAddr(t)
	db := pgtest.Postgres(t)
	cfg.DatabaseURL = db.URL
	db.Cut(t)

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	log := testLogger(t) // its cleanup runs after the service has stopped
	go func() { errc <- Run(ctx, cfg, log) }()
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	waitReady(t, cfg.AdminAddr, http.StatusServiceUnavailable, "starting")
	db.Restore(t)
	waitReady(t, cfg.AdminAddr, http.StatusOK, "ready")
	st := openStore(t, store.Options{URL: db.URL})
	publish(t, nc, []string{"late"}, 0, 10)
	checkExactlyOnce(t, waitStored(t, st, 10, 10*time.Second), 10, true)

	bad := testConfig(t, s)
	bad.DatabaseURL = "mysql://localhost/chat"
	badCtx, badCancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer badCancel()
	if err := Run(badCtx, bad, testLogger(t)); !errors.Is(err, store.ErrConfig) {
		t.Errorf("Run with a mysql url: got %v, want store.ErrConfig", err)
	}
}
