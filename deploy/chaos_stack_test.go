//go:build chaos

package deploy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natschat/chat/shared/testkit"
	"github.com/natschat/chat/shared/testkit/pgtest"
)

// chaosStack is the chat as separate processes on loopback, each service
// on its own NATS user of auth.conf: one nats-server with a store of its
// own, two gateways, history on Postgres, bot, sms-worker and accounts.
// Every process can be killed and started again on the same address.
type chaosStack struct {
	t     *testing.T
	dir   string // configuration, store and one log file per process start
	db    *pgtest.DB
	nats  *testkit.Process
	natsP int // client port
	conf  string
	procs map[string]*chaosProc
	runs  map[string]int // starts per process name, for the log file names
	// done holds every ended process, for the log checks at the end.
	done []*testkit.Process
}

// chaosProc is one service process and how to start it again.
type chaosProc struct {
	svc  service
	name string
	addr string // its HTTP (gateway) or admin address, kept across restarts
	env  []string
	p    *testkit.Process
}

// chaosStoreBytes bounds the JetStream store (max_file_store) so that the
// store-full fault fills it in seconds; CHAT is bounded well below it
// (HISTORY_CHAT_MAX_BYTES), as a production store is sized above its
// streams.
const (
	chaosStoreBytes = 384 << 20
	chaosChatBytes  = 64 << 20
)

func newChaosStack(t *testing.T) *chaosStack {
	t.Helper()
	s := &chaosStack{t: t, dir: t.TempDir(), procs: map[string]*chaosProc{}, runs: map[string]int{}}
	if dir := os.Getenv("CHAOS_LOGS"); dir != "" {
		s.dir = dir // keep the logs
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s.db = pgtest.Postgres(t)
	for _, name := range []string{"nats-server", "gateway", "history", "bot", "sms-worker", "accounts"} {
		binary(t, name) // built before the clock starts
	}
	s.natsP = testkit.FreePort(t)
	auth, err := os.ReadFile("auth.conf")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "auth.conf"), auth, 0o644); err != nil {
		t.Fatal(err)
	}
	s.conf = filepath.Join(s.dir, "nats.conf")
	conf := fmt.Sprintf(`port: %d
http_port: %d
server_name: chaos-nats
jetstream {
  store_dir: %q
  max_memory_store: 64MB
  max_file_store: %d
}
include ./auth.conf
`, s.natsP, testkit.FreePort(t), filepath.Join(s.dir, "js"), chaosStoreBytes)
	if err := os.WriteFile(s.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	s.startNATS()

	dbURL := s.db.URL
	for _, spec := range []struct {
		svc   service
		name  string
		extra []string
	}{
		{services[1], "history", []string{"HISTORY_DATABASE_URL=" + dbURL, "HISTORY_ACK_WAIT=5s", fmt.Sprintf("HISTORY_CHAT_MAX_BYTES=%d", chaosChatBytes)}},
		{services[4], "accounts", []string{"ACCOUNTS_DATABASE_URL=" + dbURL}},
		{services[0], "gateway-1", []string{"GATEWAY_ID=gw1"}},
		{services[0], "gateway-2", []string{"GATEWAY_ID=gw2"}},
		// The /sms limits are not what this suite tries.
		{services[2], "bot", []string{"BOT_SMS_PER_REQUESTER=100", "BOT_SMS_PER_RECIPIENT=100"}},
		{services[3], "sms-worker", []string{"SMSWORKER_ACK_WAIT=5s"}},
	} {
		p := &chaosProc{svc: spec.svc, name: spec.name, addr: testkit.FreeAddr(t)}
		pre := spec.svc.prefix
		p.env = append([]string{
			pre + "_NATS_URL=" + s.natsURL(),
			pre + "_NATS_USER=" + spec.svc.user,
			pre + "_NATS_PASSWORD=" + password(spec.svc.user),
			"STREAM_REPLICAS=1",
			pre + "_LOG_FORMAT=json",
			spec.svc.httpAddr + "=" + p.addr,
		}, spec.extra...)
		s.procs[spec.name] = p
		s.startProc(p)
	}
	for _, p := range s.procs {
		s.waitReady(p)
	}
	return s
}

func (s *chaosStack) natsURL() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.natsP) }

// logName is the log file of the next start of name: name.log, then
// name.2.log, ...
func (s *chaosStack) logName(name string) string {
	s.runs[name]++
	if n := s.runs[name]; n > 1 {
		return fmt.Sprintf("%s.%d", name, n)
	}
	return name
}

func (s *chaosStack) startNATS() {
	s.nats = start(s.t, s.dir, s.logName("nats-server"), binary(s.t, "nats-server"), passwordEnv(), "-c", s.conf)
	testkit.WaitForState(s.t, time.Minute, "nats-server ready", func() (bool, string) {
		if s.nats.Exited() {
			s.t.Fatalf("nats-server exited: %v\n%s", s.nats.Err(), s.nats.Output())
		}
		nc, err := nats.Connect(s.natsURL(), nats.UserInfo("admin", password("admin")), nats.NoReconnect())
		if err != nil {
			return false, err.Error()
		}
		nc.Close()
		return true, ""
	})
}

func (s *chaosStack) startProc(p *chaosProc) {
	p.p = start(s.t, s.dir, s.logName(p.name), binary(s.t, p.svc.name), p.env)
}

func (s *chaosStack) waitReady(p *chaosProc) {
	waitReady(s.t, p.p, "http://"+p.addr+"/readyz", 2*time.Minute)
}

// restart starts the process again after it ended, and waits until it is
// ready.
func (s *chaosStack) restart(name string) {
	p := s.procs[name]
	s.done = append(s.done, p.p)
	s.startProc(p)
	s.waitReady(p)
}

// kill9 ends a service with SIGKILL.
func (s *chaosStack) kill9(name string) { kill(s.t, s.procs[name].p) }

// terminate ends a service with SIGTERM; it must drain and exit 0.
func (s *chaosStack) terminate(name string) error {
	if err := s.procs[name].p.Terminate(s.t); err != nil {
		return fmt.Errorf("%s after SIGTERM: %v, want exit 0", name, err)
	}
	return nil
}

// killNATS ends nats-server with SIGKILL, restartNATS starts it again on
// the same port and store.
func (s *chaosStack) killNATS() { kill(s.t, s.nats) }

func (s *chaosStack) restartNATS() {
	s.done = append(s.done, s.nats)
	s.startNATS()
}

// admin is an operator's connection, with every right.
func (s *chaosStack) admin() (*nats.Conn, jetstream.JetStream) {
	s.t.Helper()
	nc, err := nats.Connect(s.natsURL(), nats.UserInfo("admin", password("admin")), nats.Name("chaos-operator"),
		nats.MaxReconnects(-1), nats.ReconnectWait(200*time.Millisecond))
	if err != nil {
		s.t.Fatalf("connect as admin: %v", err)
	}
	s.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		s.t.Fatal(err)
	}
	return nc, js
}

// fillStore fills the JetStream store with a stream of its own until the
// server refuses for lack of room, and returns how many bytes that took.
func (s *chaosStack) fillStore(js jetstream.JetStream) int64 {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "CHAOS_FILL", Subjects: []string{"chaos.fill"}}); err != nil {
		s.t.Fatalf("create the filler stream: %v", err)
	}
	chunk := make([]byte, 512<<10)
	var filled int64
	for filled <= chaosStoreBytes {
		_, err := js.Publish(ctx, "chaos.fill", chunk)
		if err != nil {
			if strings.Contains(strings.ToLower(err.Error()), "insufficient resources") {
				return filled
			}
			s.t.Fatalf("fill the store after %d bytes: %v", filled, err)
		}
		filled += int64(len(chunk))
	}
	s.t.Fatalf("the store took %d bytes, more than its limit %d", filled, chaosStoreBytes)
	return 0
}

func (s *chaosStack) emptyStore(js jetstream.JetStream) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := js.DeleteStream(ctx, "CHAOS_FILL"); err != nil {
		s.t.Fatalf("delete the filler stream: %v", err)
	}
}

// processes is every process that ran, ended or not.
func (s *chaosStack) processes() []*testkit.Process {
	out := append([]*testkit.Process{}, s.done...)
	out = append(out, s.nats)
	for _, p := range s.procs {
		out = append(out, p.p)
	}
	return out
}
