package history

import (
	"context"
	"database/sql"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/natschat/chat/services/history/internal/store"
	"github.com/natschat/chat/shared/testkit"
	"github.com/natschat/chat/shared/testkit/natstest"
	"github.com/natschat/chat/shared/testkit/pgtest"
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
			cfg.AdminAddr = testkit.FreeAddr(t)
			cfg.BatchSize = 100
			opts, cut, restore := o.setup(t, &cfg)
			st := openStore(t, opts)
			startHistory(t, cfg, nc)
			rooms := roomNames(3)

			publish(t, nc, rooms, 0, 300)
			waitStored(t, st, 300, testkit.Deadline)
			waitReady(t, cfg.AdminAddr, http.StatusOK, "ready")

			cut()
			publish(t, nc, rooms, 300, 100)
			waitReady(t, cfg.AdminAddr, http.StatusServiceUnavailable, "database")
			// Keep the outage up while messages keep coming, until the
			// service has failed a few more retries; it must stay not ready
			// all along.
			metrics := "http://" + cfg.AdminAddr + "/metrics"
			storeErrors := func() float64 {
				v, _ := testkit.Metric(t, metrics, "chat_history_store_errors_total")
				return v
			}
			failed := storeErrors()
			for i := 400; i < 900; i += 100 {
				publish(t, nc, rooms, i, 100)
				if code, body, _ := testkit.Get("http://" + cfg.AdminAddr + "/readyz"); code != http.StatusServiceUnavailable {
					t.Errorf("/readyz during the outage: got %d %q", code, body)
				}
			}
			testkit.WaitFor(t, "three more failed retries", func() bool { return storeErrors() >= failed+3 })
			if code, body, _ := testkit.Get("http://" + cfg.AdminAddr + "/readyz"); code != http.StatusServiceUnavailable {
				t.Errorf("/readyz after retries during the outage: got %d %q", code, body)
			}
			restore()

			c := waitStored(t, st, 900, testkit.Deadline)
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
	cfg.AdminAddr = testkit.FreeAddr(t)
	sqliteBackend.setup(t, &cfg)
	stop := startHistory(t, cfg, nc)
	waitReady(t, cfg.AdminAddr, http.StatusOK, "ready")
	if code, body, err := testkit.Get("http://" + cfg.AdminAddr + "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: got %d %q %v", code, body, err)
	}

	// A taken port is an immediate error from Run, not a log line later.
	taken := cfg
	taken.SQLitePath = filepath.Join(t.TempDir(), "other.db")
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Deadline)
	defer cancel()
	if err := Run(ctx, taken, testkit.Logger(t)); err == nil || !strings.Contains(err.Error(), "admin listen") {
		t.Errorf("Run on a taken admin port: got %v, want an admin listen error", err)
	}

	stop()
	if _, err := http.Get("http://" + cfg.AdminAddr + "/healthz"); err == nil {
		t.Error("admin server still answers after Run returned")
	}
}

func waitReady(t *testing.T, addr string, wantCode int, wantBody string) {
	t.Helper()
	testkit.WaitStatus(t, "http://"+addr+"/readyz", wantCode, wantBody)
}

// TestStartsBeforeDatabase: a service started while its database is down
// waits for it (not ready meanwhile) instead of exiting; a wrong database
// URL fails at once.
func TestStartsBeforeDatabase(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	cfg := testConfig(t, s)
	cfg.AdminAddr = testkit.FreeAddr(t)
	db := pgtest.Postgres(t)
	cfg.DatabaseURL = db.URL
	db.Cut(t)

	log := testkit.Logger(t) // before Start: printed after the service stopped
	stop := testkit.Start(t, "history", func(ctx context.Context) error { return Run(ctx, cfg, log) })
	defer stop()
	waitReady(t, cfg.AdminAddr, http.StatusServiceUnavailable, "starting")
	db.Restore(t)
	waitReady(t, cfg.AdminAddr, http.StatusOK, "ready")
	st := openStore(t, store.Options{URL: db.URL})
	publish(t, nc, []string{"late"}, 0, 10)
	checkExactlyOnce(t, waitStored(t, st, 10, testkit.Deadline), 10, true)

	bad := testConfig(t, s)
	bad.DatabaseURL = "mysql://localhost/chat"
	badCtx, badCancel := context.WithTimeout(context.Background(), testkit.Deadline)
	defer badCancel()
	if err := Run(badCtx, bad, testkit.Logger(t)); !errors.Is(err, store.ErrConfig) {
		t.Errorf("Run with a mysql url: got %v, want store.ErrConfig", err)
	}
}
