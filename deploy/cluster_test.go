package deploy

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/uptrace/bun/driver/pgdriver"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/testkit"
	"github.com/natschat/chat/shared/testkit/pgtest"
)

// node is one nats-server of the three-node cluster.
type node struct {
	name                     string
	client, cluster, monitor int
	store                    string
}

// nodeArgs is the nats-server command line of n: deploy's cluster
// configuration with addresses and ports overridden by flags. The README's
// production section shows it with the default ports (TestReadmeProduction).
func nodeArgs(conf string, n node, all []node) []string {
	routes := make([]string, len(all))
	for i, o := range all {
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", o.cluster)
	}
	return []string{"-c", conf, "-a", "127.0.0.1", "-p", itoa(n.client), "-m", itoa(n.monitor),
		"--cluster", fmt.Sprintf("nats://127.0.0.1:%d", n.cluster), "--routes", strings.Join(routes, ",")}
}

// stack is the whole chat as separate processes on loopback.
type stack struct {
	t       *testing.T
	log     string
	nodes   []node
	servers []*testkit.Process
	dbURL   string
}

func (s *stack) natsURL(i int) string { return fmt.Sprintf("nats://127.0.0.1:%d", s.nodes[i].client) }

// startCluster runs three nats-server processes from nats-cluster.conf and
// waits until JetStream has a meta leader on every node.
func (s *stack) startCluster() {
	t := s.t
	conf, err := filepath.Abs("nats-cluster.conf")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		s.nodes = append(s.nodes, node{
			name: fmt.Sprintf("nats-%d", i+1), client: testkit.FreePort(t), cluster: testkit.FreePort(t), monitor: testkit.FreePort(t),
			store: filepath.Join(t.TempDir(), "js"),
		})
	}
	for _, n := range s.nodes {
		env := append(passwordEnv(), "NATS_SERVER_NAME="+n.name, "NATS_STORE_DIR="+n.store)
		s.servers = append(s.servers, start(t, s.log, n.name, binary(t, "nats-server"), env, nodeArgs(conf, n, s.nodes)...))
	}
	for i, n := range s.nodes {
		waitReady(t, s.servers[i], fmt.Sprintf("http://127.0.0.1:%d/healthz", n.monitor), 60*time.Second)
	}
}

// metaLeader is the index of the node leading the JetStream meta layer.
func (s *stack) metaLeader() int {
	t := s.t
	var leader string
	testkit.WaitFor(t, "a JetStream meta leader", func() bool {
		var jsz struct {
			Meta struct {
				Leader string `json:"leader"`
			} `json:"meta_cluster"`
		}
		body := testkit.GetOK(t, fmt.Sprintf("http://127.0.0.1:%d/jsz", s.nodes[0].monitor))
		if err := json.Unmarshal([]byte(body), &jsz); err != nil {
			t.Fatalf("jsz: %v", err)
		}
		leader = jsz.Meta.Leader
		return leader != ""
	})
	for i, n := range s.nodes {
		if n.name == leader {
			return i
		}
	}
	t.Fatalf("meta leader %q is none of the nodes", leader)
	return -1
}

// startService runs one service binary as its own NATS user, connected to
// node, with its HTTP (gateway) or admin server on a fresh port.
func (s *stack) startService(svc service, id string, nodeIndex int, extra ...string) (*testkit.Process, string) {
	addr := testkit.FreeAddr(s.t)
	p := svc.prefix
	env := []string{
		p + "_NATS_URL=" + s.natsURL(nodeIndex),
		p + "_NATS_USER=" + svc.user,
		p + "_NATS_PASSWORD=" + password(svc.user),
		"STREAM_REPLICAS=3",
		p + "_LOG_FORMAT=json",
		svc.httpAddr + "=" + addr,
	}
	env = append(env, extra...)
	proc := start(s.t, s.log, id, binary(s.t, svc.name), env)
	return proc, addr
}

func queryInt(t *testing.T, db *sql.DB, query string, args ...any) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var n int
	if err := db.QueryRowContext(ctx, query, args...).Scan(&n); err != nil {
		if strings.Contains(err.Error(), "does not exist") {
			return -1 // history has not migrated yet
		}
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// violation matches a refusal in the server's log ("Publish Violation",
// "Subscription Violation") and in a client's ("Permissions Violation").
var violation = regexp.MustCompile(`(?i)(permissions|publish|subscription) violation`)

// authClient calls the accounts service and watches its sessions bucket as
// the gateway's NATS user, the way a gateway does.
type authClient struct {
	t        *testing.T
	c        *conn
	sessions *keyWatcher
	replies  int // replies received: each request the service answered
}

func newAuthClient(t *testing.T, url string) *authClient {
	t.Helper()
	c := connectAs(t, url, "gateway")
	js, err := jetstream.New(c.Conn)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, chat.SessionsBucket)
	if err != nil {
		t.Fatalf("the gateway's user opens the sessions bucket: %v", err)
	}
	return &authClient{t: t, c: c, sessions: watchKeys(t, kv)}
}

// ask sends one request and decodes its reply; unavailable replies (a
// stream leader moving after a node loss) are asked again.
func (a *authClient) ask(subject string, req any) chat.AuthReply {
	a.t.Helper()
	data, err := json.Marshal(req)
	if err != nil {
		a.t.Fatal(err)
	}
	deadline := time.Now().Add(45 * time.Second)
	for {
		m, err := a.c.Request(subject, data, 15*time.Second)
		if err != nil {
			a.t.Fatalf("%s: %v", subject, err)
		}
		a.replies++
		var r chat.AuthReply
		if err := json.Unmarshal(m.Data, &r); err != nil {
			a.t.Fatalf("%s: %v in %s", subject, err, m.Data)
		}
		if r.Code != chat.CodeUnavailable || time.Now().After(deadline) {
			return r
		}
		time.Sleep(time.Duration(max(r.RetryAfter, 1)) * time.Second)
	}
}

func (a *authClient) ok(subject string, req any) chat.AuthReply {
	a.t.Helper()
	r := a.ask(subject, req)
	if !r.OK {
		a.t.Fatalf("%s: %+v, want ok", subject, r)
	}
	return r
}

func (a *authClient) register(name string) chat.Session {
	a.t.Helper()
	r := a.ok(chat.AuthRegister, chat.Credentials{Name: name, Password: name + "-password", Addr: "203.0.113.9"})
	return *r.Session
}

func (a *authClient) login(name string) chat.Session {
	a.t.Helper()
	r := a.ok(chat.AuthLogin, chat.Credentials{Name: name, Password: name + "-password", Addr: "203.0.113.9"})
	return *r.Session
}

// checkNoViolation fails the test if the gateway's user was refused
// anything while it used the accounts service and its bucket.
func (a *authClient) checkNoViolation() {
	a.t.Helper()
	for len(a.c.errs) > 0 {
		a.t.Errorf("the gateway's user was refused: %v", <-a.c.errs)
	}
}

// keyWatcher keeps the live keys of a bucket from a watcher.
type keyWatcher struct {
	t    *testing.T
	mu   sync.Mutex
	live map[string]bool
}

func watchKeys(t *testing.T, kv jetstream.KeyValue) *keyWatcher {
	t.Helper()
	w, err := kv.WatchAll(context.Background())
	if err != nil {
		t.Fatalf("watch %s: %v", kv.Bucket(), err)
	}
	kw := &keyWatcher{t: t, live: map[string]bool{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range w.Updates() {
			if e == nil {
				continue
			}
			kw.mu.Lock()
			kw.live[e.Key()] = e.Operation() == jetstream.KeyValuePut
			kw.mu.Unlock()
		}
	}()
	t.Cleanup(func() { w.Stop(); <-done })
	return kw
}

// waitFor waits until key is live (or gone, with live false).
func (w *keyWatcher) waitFor(key string, live bool) {
	w.t.Helper()
	testkit.WaitFor(w.t, fmt.Sprintf("key %s live=%v", key, live), func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.live[key] == live
	})
}

// TestCluster runs the production topology on loopback: a three-node NATS
// cluster from deploy/nats-cluster.conf with R3 streams, Postgres, and two
// of each service as separate processes, every one on its own NATS user.
// Browsers on both gateways chat while a NATS node and then a gateway are
// killed; every message is stored once, every command answered once, every
// SMS sent once, and no client misses a message.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("the cluster test starts 11 processes; skipped with -short")
	}
	dbURL := pgtest.Postgres(t).URL
	db := sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(dbURL)))
	t.Cleanup(func() { db.Close() })
	for _, name := range []string{"nats-server", "gateway", "history", "bot", "sms-worker"} {
		binary(t, name) // built before the clock starts
	}
	s := &stack{t: t, log: t.TempDir(), dbURL: dbURL}
	if dir := os.Getenv("DEPLOY_TEST_LOGS"); dir != "" {
		s.log = dir // keep the process logs
	}
	started := time.Now()
	s.startCluster()
	t.Logf("cluster of 3 up in %v", time.Since(started).Round(time.Millisecond))

	// The node that will be killed is the JetStream meta leader, the
	// hardest case: until the others elect a new one, no consumer can be
	// created anywhere. One of each service is connected to it.
	doomed := s.metaLeader()
	other, third := (doomed+1)%3, (doomed+2)%3
	t.Logf("%s is the meta leader", s.nodes[doomed].name)

	gw, hist, bot, worker, accounts := services[0], services[1], services[2], services[3], services[4]
	// Two of each, on different nodes. A service given one node learns the
	// others from the cluster and reconnects to them by itself.
	gw1, gw1Addr := s.startService(gw, "gateway-1", doomed, "GATEWAY_ID=gw1")
	gw2, gw2Addr := s.startService(gw, "gateway-2", other, "GATEWAY_ID=gw2")
	type admin struct {
		p    *testkit.Process
		addr string
	}
	var admins []admin
	for i, spec := range []struct {
		svc   service
		id    string
		node  int
		extra []string
	}{
		{hist, "history-1", third, []string{"HISTORY_DATABASE_URL=" + dbURL, "HISTORY_ACK_WAIT=5s"}},
		{hist, "history-2", doomed, []string{"HISTORY_DATABASE_URL=" + dbURL, "HISTORY_ACK_WAIT=5s"}},
		{bot, "bot-1", other, nil},
		{bot, "bot-2", third, nil},
		{worker, "sms-worker-1", doomed, []string{"SMSWORKER_ACK_WAIT=5s"}},
		{worker, "sms-worker-2", other, []string{"SMSWORKER_ACK_WAIT=5s"}},
		{accounts, "accounts-1", doomed, []string{"ACCOUNTS_DATABASE_URL=" + dbURL, "ACCOUNTS_ADMINS=mod"}},
		{accounts, "accounts-2", third, []string{"ACCOUNTS_DATABASE_URL=" + dbURL, "ACCOUNTS_ADMINS=mod"}},
	} {
		_ = i
		p, addr := s.startService(spec.svc, spec.id, spec.node, spec.extra...)
		admins = append(admins, admin{p, addr})
	}
	waitReady(t, gw1, "http://"+gw1Addr+"/readyz", 60*time.Second)
	waitReady(t, gw2, "http://"+gw2Addr+"/readyz", 60*time.Second)
	for _, a := range admins {
		waitReady(t, a.p, "http://"+a.addr+"/readyz", 60*time.Second)
	}
	t.Logf("stack of 13 processes ready in %v", time.Since(started).Round(time.Millisecond))

	ops := connectAdmin(t, s.natsURL(other))
	js, err := jetstream.New(ops)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"CHAT", "SMS", "SMS_DEAD", "KV_sms_sent", "KV_sessions", "KV_accounts", "KV_mutes"} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, err := js.Stream(ctx, name)
		cancel()
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		if r := st.CachedInfo().Config.Replicas; r != 3 {
			t.Errorf("stream %s has %d replicas, want 3", name, r)
		}
	}

	// Accounts as a gateway uses them, on the gateway's user: requests to
	// either accounts instance, the sessions bucket watched.
	auth := newAuthClient(t, s.natsURL(other))

	const room = "lobby"
	alice := newChatClient(t, gw1Addr, room, "alice")
	bob := newChatClient(t, gw2Addr, room, "bob")
	clients := []*chatClient{alice, bob}
	var wantTexts []string // every user message, by client_id = text
	var mu sync.Mutex
	say := func(c *chatClient, n int, tag string) {
		for i := range n {
			id := fmt.Sprintf("%s-%s-%d", c.user, tag, i)
			c.say(id, id)
			mu.Lock()
			wantTexts = append(wantTexts, id)
			mu.Unlock()
		}
	}
	nows, smses := 0, []string{}
	askTime := func(c *chatClient, id string) {
		want := 1 + c.count(textHas(c.user+" asked for the time"))
		c.command("/now", id, func() bool { return c.count(textHas(c.user+" asked for the time")) >= want })
	}
	sendSMS := func(c *chatClient, to, id string) {
		c.command("/sms "+to, id, func() bool { return c.hasNotice(id) })
	}
	everyoneSees := func(what string, n int, match func(chat.Message) bool) {
		t.Helper()
		for _, c := range clients {
			testkit.WaitForState(t, time.Minute, fmt.Sprintf("%s to see %d %s", c.user, n, what), func() (bool, string) {
				got := c.count(match)
				if got >= n {
					return true, ""
				}
				return false, fmt.Sprintf("saw %d; seqs seen %v; stored %v", got, c.seqs(), storedSeqs(t, db, room))
			})
		}
	}
	parallel := func(fs ...func()) {
		var wg sync.WaitGroup
		for _, f := range fs {
			wg.Go(f)
		}
		wg.Wait()
	}

	// 1. Clients on both gateways chat; commands reach one of two bots.
	phase := time.Now()
	parallel(
		func() { say(alice, 10, "a"); askTime(alice, "alice-now-1"); sendSMS(alice, "carol", "alice-sms-1") },
		func() { say(bob, 10, "a"); askTime(bob, "bob-now-1"); sendSMS(bob, "dave", "bob-sms-1") },
	)
	nows += 2
	smses = append(smses, "carol", "dave")
	everyoneSees("user messages", 20, func(m chat.Message) bool { return m.Kind == "user" })
	everyoneSees("SMS confirmations", 2, textHas("An SMS has been sent to"))
	carolPhone := auth.register("carol")
	carolLaptop := auth.login("carol")
	mod := auth.register("mod")
	if !mod.Admin || carolPhone.Admin {
		t.Errorf("mod admin %v, carol admin %v: want ACCOUNTS_ADMINS=mod applied", mod.Admin, carolPhone.Admin)
	}
	auth.sessions.waitFor(chat.SessionKey(carolLaptop.Token), true)
	t.Logf("chat on two gateways: %v", time.Since(phase).Round(time.Millisecond))

	// 2. A NATS node dies during traffic: the gateway, history writer and
	// worker connected to it move to the others; R3 streams lose nothing.
	phase = time.Now()
	killed := make(chan struct{})
	parallel(
		func() {
			say(alice, 5, "b")
			kill(t, s.servers[doomed])
			close(killed)
			say(alice, 10, "c")
			askTime(alice, "alice-now-2")
			sendSMS(alice, "erin", "alice-sms-2")
		},
		func() {
			say(bob, 5, "b")
			<-killed
			say(bob, 10, "c")
			askTime(bob, "bob-now-2")
			sendSMS(bob, "frank", "bob-sms-2")
		},
	)
	nows += 2
	smses = append(smses, "erin", "frank")
	everyoneSees("user messages", 50, func(m chat.Message) bool { return m.Kind == "user" })
	everyoneSees("SMS confirmations", 4, textHas("An SMS has been sent to"))
	// Sessions made before the node died still work; a logout reaches
	// the watching gateway.
	auth.ok(chat.AuthSession, chat.TokenRequest{Token: carolPhone.Token})
	auth.ok(chat.AuthLogout, chat.TokenRequest{Token: carolPhone.Token})
	auth.sessions.waitFor(chat.SessionKey(carolPhone.Token), false)
	if r := auth.ask(chat.AuthSession, chat.TokenRequest{Token: carolPhone.Token}); r.Code != chat.CodeUnauthorized {
		t.Errorf("a session after its logout: %+v, want unauthorized", r)
	}
	auth.ok(chat.AuthSession, chat.TokenRequest{Token: carolLaptop.Token})
	auth.ok(chat.AuthMute, chat.MuteRequest{Token: mod.Token, Room: room, User: "dave", Duration: "10m"})
	auth.register("dave")
	t.Logf("chat through the loss of %s: %v", s.nodes[doomed].name, time.Since(phase).Round(time.Millisecond))

	// Every service serves Prometheus metrics; the workers' counters agree
	// that each SMS went out once.
	for _, m := range []struct{ addr, want string }{
		{gw1Addr, "chat_gateway_connections 1"},
		{gw2Addr, "chat_gateway_messages_in_total"},
		{admins[0].addr, "chat_history_messages_stored_total"},
		{admins[1].addr, "chat_history_batch_size_bucket"},
		{admins[2].addr, "chat_bot_commands_total"},
		{admins[3].addr, "chat_bot_commands_total"},
		{admins[4].addr, "chat_sms_sent_total"},
		{admins[5].addr, `chat_sms_dead_lettered_total{cause="failed"} 0`},
		{admins[6].addr, "chat_accounts_requests_total"},
		{admins[7].addr, "chat_accounts_kv_sync_errors_total"},
	} {
		if body := testkit.GetOK(t, "http://"+m.addr+"/metrics"); !strings.Contains(body, m.want) {
			t.Errorf("%s/metrics lacks %s", m.addr, m.want)
		}
	}
	if n := metricSum(t, "chat_sms_sent_total", admins[4].addr, admins[5].addr); n != len(smses) {
		t.Errorf("the workers count %d SMS sent, want %d", n, len(smses))
	}
	// A client sends a command again (same client_id, so the same request
	// id) when no notice came within 10 s, as the page does after a
	// reconnect; on a slow machine that happens during the node kill. The
	// bot may then answer it twice, but the SMS is queued, sent and
	// confirmed once (above): the effect is once, the answers at least once.
	if n := metricSum(t, `chat_bot_commands_total{command="sms",outcome="ok"}`, admins[2].addr, admins[3].addr); n < len(smses) {
		t.Errorf("the bots count %d /sms answered, want at least %d", n, len(smses))
	}
	// Every auth request answered once, by one of the two instances.
	var answered int
	for _, subject := range []string{chat.AuthRegister, chat.AuthLogin, chat.AuthLogout, chat.AuthSession, chat.AuthMute} {
		for _, outcome := range []string{"ok", "unauthorized", "unavailable"} {
			answered += metricSum(t, fmt.Sprintf(`chat_accounts_requests_total{outcome=%q,subject=%q}`, outcome, subject), admins[6].addr, admins[7].addr)
		}
	}
	if answered != auth.replies {
		t.Errorf("the accounts instances answered %d requests, the client got %d replies: want each answered once", answered, auth.replies)
	}

	// 3. A gateway dies: its clients resume on the other one with ?since=
	// and get what was said meanwhile, without a gap or a duplicate.
	phase = time.Now()
	kill(t, gw1)
	select {
	case <-alice.connClosed():
	case <-time.After(testkit.Deadline):
		t.Fatal("alice's WebSocket still open after her gateway was killed")
	}
	say(bob, 5, "d")
	alice.connect(gw2Addr)
	parallel(
		func() { say(alice, 3, "e"); askTime(alice, "alice-now-3") },
		func() { say(bob, 2, "e") },
	)
	nows++
	everyoneSees("user messages", 60, func(m chat.Message) bool { return m.Kind == "user" })
	everyoneSees("time answers", nows, textHas("asked for the time"))
	t.Logf("alice resumed on gateway-2: %v", time.Since(phase).Round(time.Millisecond))

	// Everything is stored exactly once, and the clients saw exactly that.
	total := len(wantTexts) + nows + len(smses)
	testkit.WaitForState(t, time.Minute, fmt.Sprintf("%d rows in messages", total), func() (bool, string) {
		n := queryInt(t, db, "SELECT count(*) FROM messages WHERE room = $1", room)
		return n >= total, fmt.Sprintf("%d rows", n)
	})
	if n := queryInt(t, db, "SELECT count(*) FROM messages WHERE room = $1", room); n != total {
		t.Errorf("%d rows stored, want %d", n, total)
	}
	for _, text := range wantTexts {
		if n := queryInt(t, db, "SELECT count(*) FROM messages WHERE room = $1 AND client_id = $2 AND text = $3", room, text, text); n != 1 {
			t.Errorf("message %s stored %d times, want once", text, n)
		}
	}
	if n := queryInt(t, db, "SELECT count(*) FROM messages WHERE text LIKE '% asked for the time%'"); n != nows {
		t.Errorf("%d /now answers stored, want %d (one per command)", n, nows)
	}
	for _, to := range smses {
		if n := queryInt(t, db, "SELECT count(*) FROM messages WHERE text LIKE $1", "An SMS has been sent to "+to+" %"); n != 1 {
			t.Errorf("%d confirmations of the SMS to %s, want 1", n, to)
		}
	}
	stored := storedSeqs(t, db, room)
	for _, c := range clients {
		c.mu.Lock()
		problems, resets := c.problems, c.resets
		c.mu.Unlock()
		if len(problems) > 0 || resets > 0 {
			t.Errorf("%s: %d resets, problems %v", c.user, resets, problems)
		}
		if got := c.seqs(); !slices.Equal(got, stored) {
			t.Errorf("%s saw seqs %v,\nthe database holds %v", c.user, got, stored)
		}
	}

	// Each SMS was sent once, by one of the two workers.
	sent := map[string]int{}
	for _, a := range admins[4:6] {
		for _, line := range a.p.Lines() {
			if strings.Contains(line, `"msg":"sms sent"`) {
				for _, to := range smses {
					if strings.Contains(line, `"to":"`+to+`"`) {
						sent[to]++
					}
				}
			}
		}
	}
	for _, to := range smses {
		if sent[to] != 1 {
			t.Errorf("SMS to %s sent %d times, want once", to, sent[to])
		}
	}

	// Every service ran on its own least-privilege user without a single
	// refusal (the NATS logs name every permission violation).
	auth.checkNoViolation()
	for _, p := range append(append([]*testkit.Process{}, s.servers...), gw1, gw2) {
		if v := violation.FindString(p.Output()); v != "" {
			t.Errorf("%s logged a permission violation:\n%s", p.Name, grepLines(p.Output(), violation))
		}
	}
	for _, a := range admins {
		if v := violation.FindString(a.p.Output()); v != "" {
			t.Errorf("%s logged a permission violation:\n%s", a.p.Name, grepLines(a.p.Output(), violation))
		}
	}

	// Least privilege holds on the cluster: the gateway's user may not
	// queue an SMS, and a service started with it gets nowhere.
	t.Run("gateway credentials refused on sms_channel", func(t *testing.T) {
		c := &conn{errs: make(chan error, 16)}
		nc, err := nats.Connect(s.natsURL(other), nats.UserInfo("gateway", password("gateway")),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { c.errs <- err }))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		c.Conn = nc
		if err := nc.Publish("sms_channel", []byte(`{"id":"x","room":"lobby","from":"a","to":"b"}`)); err != nil {
			t.Fatal(err)
		}
		if !c.denied(t, "sms_channel") {
			t.Fatal("the gateway's user published to sms_channel")
		}
		impostor, _ := s.startService(service{"bot", "BOT", "gateway", "BOT_ADMIN_ADDR", ""}, "bot-as-gateway", other)
		testkit.WaitFor(t, "a bot on the gateway's user to be refused", func() bool {
			return violation.MatchString(impostor.Output())
		})
		kill(t, impostor)
	})

	t.Logf("whole scenario: %v", time.Since(started).Round(time.Millisecond))
}

// storedSeqs is the seqs of room in the database, in order.
func storedSeqs(t *testing.T, db *sql.DB, room string) []uint64 {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), "SELECT seq FROM messages WHERE room = $1 ORDER BY seq", room)
	if err != nil {
		t.Fatalf("stored seqs: %v", err)
	}
	defer rows.Close()
	var seqs []uint64
	for rows.Next() {
		var seq uint64
		if err := rows.Scan(&seq); err != nil {
			t.Fatalf("stored seqs: %v", err)
		}
		seqs = append(seqs, seq)
	}
	return seqs
}

// metricSum adds up the value of series over the services at addrs; a
// service without the series counts 0.
func metricSum(t *testing.T, series string, addrs ...string) int {
	t.Helper()
	total := 0.0
	for _, addr := range addrs {
		v, _ := testkit.Metric(t, "http://"+addr+"/metrics", series)
		total += v
	}
	return int(total)
}

func grepLines(s string, re *regexp.Regexp) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if re.MatchString(line) {
			out = append(out, line)
			if len(out) == 5 {
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// connectAdmin connects as the operators' user.
func connectAdmin(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.UserInfo("admin", password("admin")), nats.Name("deploy-test"))
	if err != nil {
		t.Fatalf("connect as admin: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}
