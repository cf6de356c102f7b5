package deploy

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/natsconn"
	"github.com/natschat/chat/shared/testkit"
	"github.com/natschat/chat/shared/testkit/natstest"
)

// users are the NATS users of auth.conf with the variable holding each
// one's password, which is also the variable the service reads.
var users = []struct{ name, passwordVar string }{
	{"gateway", "GATEWAY_NATS_PASSWORD"},
	{"history", "HISTORY_NATS_PASSWORD"},
	{"bot", "BOT_NATS_PASSWORD"},
	{"sms-worker", "SMSWORKER_NATS_PASSWORD"},
	{"accounts", "ACCOUNTS_NATS_PASSWORD"},
	{"admin", "ADMIN_NATS_PASSWORD"},
}

// password is the test password of user: the nats-server processes get it
// through the environment, as in docker-compose.yml.
func password(user string) string { return "test-" + user + "-secret" }

// passwordEnv is the environment the NATS configs need.
func passwordEnv() []string {
	env := make([]string, 0, len(users))
	for _, u := range users {
		env = append(env, u.passwordVar+"="+password(u.name))
	}
	return env
}

func setPasswords(t *testing.T) {
	t.Helper()
	for _, u := range users {
		t.Setenv(u.passwordVar, password(u.name))
	}
}

// TestNATSConfigsParse loads every NATS configuration of deploy/ with the
// server's own parser, as nats-server -c does.
func TestNATSConfigsParse(t *testing.T) {
	setPasswords(t)
	t.Setenv("NATS_SERVER_NAME", "nats-1")
	t.Setenv("NATS_STORE_DIR", "/data")
	for _, name := range []string{"nats.conf", "nats-cluster.conf"} {
		t.Run(name, func(t *testing.T) {
			opts, err := server.ProcessConfigFile(name)
			if err != nil {
				t.Fatalf("parse %s: %v", name, err)
			}
			if !opts.JetStream {
				t.Error("JetStream is not enabled")
			}
			checkAccounts(t, opts)
			if name != "nats-cluster.conf" {
				return
			}
			if opts.ServerName != "nats-1" {
				t.Errorf("server name %q, want it from NATS_SERVER_NAME", opts.ServerName)
			}
			if opts.Cluster.Name != "chat" || opts.Cluster.Port != 6222 {
				t.Errorf("cluster %q on port %d, want chat on 6222", opts.Cluster.Name, opts.Cluster.Port)
			}
			if len(opts.Routes) != 3 {
				t.Errorf("%d routes, want the 3 nodes", len(opts.Routes))
			}
		})
	}
}

func checkAccounts(t *testing.T, opts *server.Options) {
	t.Helper()
	got := map[string]*server.User{}
	for _, u := range opts.Users {
		got[u.Username] = u
		if u.Account == nil || u.Account.Name != "CHAT" {
			t.Errorf("user %s is not in account CHAT", u.Username)
		}
	}
	for _, u := range users {
		user, ok := got[u.name]
		if !ok {
			t.Errorf("no user %s", u.name)
			continue
		}
		if user.Password != password(u.name) {
			t.Errorf("user %s: password not read from %s", u.name, u.passwordVar)
		}
		if u.name != "admin" && (user.Permissions == nil || user.Permissions.Publish == nil || user.Permissions.Subscribe == nil) {
			t.Errorf("user %s has no publish and subscribe permissions", u.name)
		}
	}
	if len(got) != len(users) {
		t.Errorf("%d users, want %d", len(got), len(users))
	}
}

// TestNATSConfigNeedsPasswords: a missing password variable stops the server
// at start instead of leaving a user without a password.
func TestNATSConfigNeedsPasswords(t *testing.T) {
	setPasswords(t)
	t.Setenv("BOT_NATS_PASSWORD", "")
	unsetEnv(t, "BOT_NATS_PASSWORD")
	if _, err := server.ProcessConfigFile("nats.conf"); err == nil || !strings.Contains(err.Error(), "BOT_NATS_PASSWORD") {
		t.Fatalf("parse without BOT_NATS_PASSWORD: err %v, want one naming the variable", err)
	}
}

// startConfigured runs an in-process server from deploy's nats.conf on a
// random loopback port with its store in a temporary directory.
func startConfigured(t *testing.T) *server.Server {
	t.Helper()
	setPasswords(t)
	opts, err := server.ProcessConfigFile("nats.conf")
	if err != nil {
		t.Fatalf("parse nats.conf: %v", err)
	}
	opts.Host, opts.Port, opts.HTTPPort = "127.0.0.1", server.RANDOM_PORT, 0
	opts.StoreDir = filepath.Join(t.TempDir(), "js")
	return natstest.Run(t, opts)
}

// conn connects as user and collects the server's permission errors.
type conn struct {
	*nats.Conn
	errs chan error
}

func connectAs(t *testing.T, url, user string) *conn {
	t.Helper()
	c := &conn{errs: make(chan error, 64)}
	nc, err := nats.Connect(url, nats.UserInfo(user, password(user)), nats.Name("test-"+user),
		nats.CustomInboxPrefix(natsconn.InboxPrefix(user)),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case c.errs <- err:
			default:
			}
		}))
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	c.Conn = nc
	return c
}

// denied waits for the server to refuse an operation on subject.
func (c *conn) denied(t *testing.T, subject string) bool {
	t.Helper()
	if err := c.Flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
	deadline := time.After(testkit.Deadline)
	for {
		select {
		case err := <-c.errs:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), `"`+subject+`"`) {
				return true
			}
		case <-deadline:
			return false
		}
	}
}

// TestPermissions proves the least-privilege matrix of auth.conf against a
// real server: each operation a service must not do is refused, and a
// sample of what it must do goes through (the cluster test runs every
// service on its own user and fails on any violation).
func TestPermissions(t *testing.T) {
	s := startConfigured(t)
	url := s.ClientURL()
	admin := connectAs(t, url, "admin")

	t.Run("unknown user refused", func(t *testing.T) {
		if _, err := nats.Connect(url, nats.UserInfo("gateway", "wrong")); err == nil {
			t.Fatal("connected with a wrong password")
		}
		if _, err := nats.Connect(url); err == nil {
			t.Fatal("connected without credentials")
		}
	})

	pubs := []struct {
		user, subject string
		allowed       bool
	}{
		{"gateway", "sms_channel", false},
		{"gateway", "chat.room.lobby", true},
		{"gateway", "chat.presence.lobby", true},
		{"gateway", "bot.cmd", true},
		{"gateway", "history.room.lobby", true},
		{"gateway", "sms_dead.failed", false},
		{"gateway", "chat.feed.lobby", false},
		{"gateway", "$JS.API.STREAM.DELETE.CHAT", false},
		{"gateway", "$JS.API.STREAM.PURGE.CHAT", false},
		{"gateway", "$JS.API.STREAM.CREATE.SMS", false},
		// Stream configuration: only the owner (shared/stream) may update.
		{"gateway", "$JS.API.STREAM.UPDATE.CHAT", false}, // also how a stream is sealed or rescaled
		// history's durable consumer is history's alone.
		{"gateway", "$JS.API.CONSUMER.DELETE.CHAT.history", false},
		{"gateway", "$JS.API.CONSUMER.CREATE.CHAT.history", false},
		{"gateway", "$JS.API.CONSUMER.CREATE.CHAT.history.chat.room.lobby", false},
		{"gateway", "$JS.API.CONSUMER.DURABLE.CREATE.CHAT.history", false},
		{"gateway", "$JS.API.CONSUMER.MSG.NEXT.CHAT.history", false},
		{"gateway", "$JS.ACK.CHAT.history.1.1.1.1.1.1", false},
		{"gateway", "$JS.API.CONSUMER.CREATE.CHAT", false}, // a legacy ephemeral may name itself
		{"gateway", "$JS.API.CONSUMER.CREATE.CHAT.Xa9fZ.chat.room.lobby", true},
		{"gateway", "$JS.API.CONSUMER.DELETE.CHAT.Xa9fZ", true},
		{"gateway", "$JS.API.STREAM.UPDATE.SMS", false},
		{"gateway", "$JS.API.STREAM.DELETE.SMS", false},
		{"bot", "$JS.API.STREAM.UPDATE.CHAT", false},
		{"bot", "$JS.API.STREAM.UPDATE.SMS", false},
		{"sms-worker", "$JS.API.STREAM.UPDATE.CHAT", false},
		{"history", "$JS.API.STREAM.UPDATE.SMS", false},
		{"history", "$JS.API.STREAM.UPDATE.CHAT", true},
		{"sms-worker", "$JS.API.STREAM.UPDATE.SMS", true},
		{"gateway", "$KV.sms_sent.x", false},
		{"bot", "sms_channel", true},
		{"bot", "chat.room.lobby", true},
		{"bot", "chat.feed.lobby", false},
		{"bot", "history.room.lobby", false},
		{"bot", "sms_dead.failed", false},
		{"bot", "$JS.API.CONSUMER.CREATE.SMS.sms-worker", false},
		{"history", "chat.room.lobby", false},
		{"history", "sms_channel", false},
		{"history", "bot.cmd", false},
		{"history", "$JS.API.STREAM.DELETE.CHAT", false},
		{"history", "$JS.API.CONSUMER.DELETE.CHAT.history", false},
		{"sms-worker", "chat.room.lobby", true},
		{"sms-worker", "sms_dead.failed", true},
		{"sms-worker", "sms_channel", false},
		{"sms-worker", "bot.cmd", false},
		{"sms-worker", "history.room.lobby", false},
		{"sms-worker", "chat.presence.lobby", false},
		{"sms-worker", "$JS.API.STREAM.DELETE.SMS", false},
		{"admin", "sms_channel", true},
		// Accounts and sessions: only the accounts service writes the
		// buckets; the gateway asks it and reads them.
		{"gateway", "auth.login", true},
		{"gateway", "auth.mute", true},
		{"gateway", "$KV.sessions.x", false},
		{"gateway", "$KV.accounts.alice", false},
		{"gateway", "$KV.mutes.lobby.bob", false},
		{"gateway", "$JS.API.STREAM.PURGE.KV_sessions", false},
		{"gateway", "$JS.API.STREAM.DELETE.KV_sessions", false},
		{"gateway", "$JS.API.STREAM.MSG.DELETE.KV_sessions", false},
		{"gateway", "$JS.API.STREAM.UPDATE.KV_sessions", false},
		{"accounts", "$KV.sessions.x", true},
		{"accounts", "$KV.accounts.alice", true},
		{"accounts", "$KV.mutes.lobby.bob", true},
		{"accounts", "chat.room.lobby", false},
		{"accounts", "sms_channel", false},
		{"accounts", "bot.cmd", false},
		{"accounts", "history.rooms", false},
		{"accounts", "auth.login", false},
		{"accounts", "$JS.API.STREAM.DELETE.KV_sessions", false},
		{"accounts", "$JS.API.STREAM.PURGE.KV_sessions", false},
		{"accounts", "$JS.API.STREAM.CREATE.CHAT", false},
		{"bot", "auth.login", false},
		{"bot", "$KV.sessions.x", false},
		{"history", "auth.session", false},
		{"sms-worker", "auth.session", false},
		{"sms-worker", "$KV.mutes.lobby.bob", false},
	}
	for _, p := range pubs {
		name := "publish " + p.user + " " + p.subject
		t.Run(strings.ReplaceAll(name, "$", ""), func(t *testing.T) {
			c := connectAs(t, url, p.user)
			sub, err := admin.SubscribeSync(p.subject)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			if err := admin.Flush(); err != nil {
				t.Fatal(err)
			}
			if err := c.Publish(p.subject, []byte(`{}`)); err != nil {
				t.Fatal(err)
			}
			if !p.allowed {
				if !c.denied(t, p.subject) {
					t.Fatalf("%s may publish to %s, want it refused", p.user, p.subject)
				}
				return
			}
			if _, err := sub.NextMsg(testkit.Deadline); err != nil {
				t.Fatalf("%s publishing to %s: nothing arrived (%v), want it allowed", p.user, p.subject, err)
			}
		})
	}

	subs := []struct {
		user, subject string
		allowed       bool
	}{
		{"gateway", "chat.feed.lobby", true},
		{"gateway", "chat.presence.lobby", true},
		{"gateway", "chat.room.lobby", false},
		{"gateway", "sms_channel", false},
		{"gateway", "bot.cmd", false},
		{"gateway", "history.room.lobby", false},
		{"bot", "bot.cmd", true},
		{"bot", "chat.feed.lobby", false},
		{"bot", "sms_channel", false},
		{"history", "history.room.lobby", true},
		{"history", "history.rooms", true},
		{"history", "bot.cmd", false},
		{"history", "chat.feed.lobby", false},
		{"sms-worker", "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.SMS.sms-worker", true},
		{"sms-worker", "sms_channel", false},
		{"sms-worker", "chat.feed.lobby", false},
		{"sms-worker", "$JS.EVENT.ADVISORY.>", false},
		// Replies: each service its own inbox only.
		{"gateway", "_INBOX_gateway.x", true},
		{"gateway", "_INBOX.>", false},
		{"gateway", "_INBOX_history.>", false},
		{"bot", "_INBOX_gateway.>", false},
		{"history", "_INBOX_bot.x", false},
		{"sms-worker", "_INBOX_sms-worker.x", true},
		{"sms-worker", "_INBOX_gateway.>", false},
		{"accounts", "auth.login", true},
		{"accounts", "auth.session", true},
		{"accounts", "_INBOX_accounts.x", true},
		{"accounts", "_INBOX_gateway.>", false},
		{"accounts", "chat.feed.lobby", false},
		{"accounts", "bot.cmd", false},
		{"gateway", "auth.login", false},
		{"bot", "auth.login", false},
		{"history", "auth.*", false},
	}
	for _, p := range subs {
		name := "subscribe " + p.user + " " + p.subject
		t.Run(strings.ReplaceAll(name, "$", ""), func(t *testing.T) {
			c := connectAs(t, url, p.user)
			sub, err := c.SubscribeSync(p.subject)
			if err != nil {
				t.Fatal(err)
			}
			if !p.allowed {
				if !c.denied(t, p.subject) {
					t.Fatalf("%s may subscribe to %s, want it refused", p.user, p.subject)
				}
				return
			}
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
			subject := strings.Replace(p.subject, "*", "x", 1)
			if err := admin.Publish(subject, []byte(`{}`)); err != nil {
				t.Fatal(err)
			}
			if _, err := sub.NextMsg(testkit.Deadline); err != nil {
				t.Fatalf("%s subscribed to %s: nothing arrived (%v), want it allowed", p.user, p.subject, err)
			}
		})
	}
}

// TestBucketPermissions drives the accounts service's buckets the way the
// services do, each as its own user against a server from nats.conf: the
// accounts user creates, writes, reads and watches them; the gateway user
// reads and watches them without a single refusal, and cannot write them.
func TestBucketPermissions(t *testing.T) {
	s := startConfigured(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	owner := connectAs(t, s.ClientURL(), "accounts")
	ojs, err := jetstream.New(owner.Conn)
	if err != nil {
		t.Fatal(err)
	}
	gw := connectAs(t, s.ClientURL(), "gateway")
	gjs, err := jetstream.New(gw.Conn)
	if err != nil {
		t.Fatal(err)
	}
	for _, bucket := range []string{chat.SessionsBucket, chat.AccountsBucket, chat.MutesBucket} {
		t.Run(bucket, func(t *testing.T) {
			kv, err := ojs.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket, Storage: jetstream.FileStorage})
			if err != nil {
				t.Fatalf("accounts creates %s: %v", bucket, err)
			}
			if _, err := ojs.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket, Storage: jetstream.FileStorage, Description: "again"}); err != nil {
				t.Fatalf("accounts updates %s: %v", bucket, err)
			}
			if _, err := kv.Put(ctx, "k1", []byte(`{"name":"alice"}`)); err != nil {
				t.Fatalf("accounts puts: %v", err)
			}
			if _, err := kv.Get(ctx, "k1"); err != nil {
				t.Fatalf("accounts gets: %v", err)
			}
			ow, err := kv.WatchAll(ctx)
			if err != nil {
				t.Fatalf("accounts watches: %v", err)
			}
			for e := range ow.Updates() {
				if e == nil {
					break
				}
			}
			ow.Stop()

			gkv, err := gjs.KeyValue(ctx, bucket)
			if err != nil {
				t.Fatalf("gateway opens %s: %v", bucket, err)
			}
			w, err := gkv.WatchAll(ctx)
			if err != nil {
				t.Fatalf("gateway watches: %v", err)
			}
			defer w.Stop()
			next := func() jetstream.KeyValueEntry {
				t.Helper()
				select {
				case e := <-w.Updates():
					return e
				case <-ctx.Done():
					t.Fatal("the gateway's watcher got nothing")
					return nil
				}
			}
			if e := next(); e == nil || e.Key() != "k1" {
				t.Fatalf("gateway watcher: first %v, want k1", e)
			}
			if e := next(); e != nil {
				t.Fatalf("gateway watcher: %v, want the end of the current values", e)
			}
			if err := kv.Delete(ctx, "k1"); err != nil {
				t.Fatalf("accounts deletes: %v", err)
			}
			if e := next(); e == nil || e.Key() != "k1" || e.Operation() != jetstream.KeyValueDelete {
				t.Fatalf("gateway watcher: %v, want the delete of k1", e)
			}
			if _, err := gkv.Get(ctx, "k1"); !errors.Is(err, jetstream.ErrKeyNotFound) {
				t.Fatalf("gateway gets a deleted key: %v, want not found", err)
			}
			// Refused by the server, so no acknowledgement ever comes.
			putCtx, cancelPut := context.WithTimeout(ctx, 2*time.Second)
			defer cancelPut()
			if _, err := gkv.Put(putCtx, "forged", []byte(`{"name":"mallory","admin":true}`)); err == nil {
				t.Fatal("the gateway wrote a key")
			}
			if _, err := kv.Get(ctx, "forged"); !errors.Is(err, jetstream.ErrKeyNotFound) {
				t.Fatalf("a forged key is in %s: %v", bucket, err)
			}
		})
	}
	// The only refusals: the gateway's forged puts.
	for name, c := range map[string]*conn{"accounts": owner, "gateway": gw} {
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		for len(c.errs) > 0 {
			if err := <-c.errs; name != "gateway" || !strings.Contains(err.Error(), `"$KV.`) {
				t.Errorf("%s was refused: %v", name, err)
			}
		}
	}
}
