package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"
)

// stack is a running all-in-one on free ports with its data in a temp dir.
type stack struct {
	http string // http://127.0.0.1:port
	nats string // nats://127.0.0.1:port
}

func startStack(t *testing.T) stack {
	t.Helper()
	natsPort := freePort(t)
	httpAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	t.Setenv("CHAT_NATS_PORT", strconv.Itoa(natsPort))
	t.Setenv("CHAT_DATA_DIR", t.TempDir())
	t.Setenv("GATEWAY_ADDR", httpAddr)
	t.Setenv("LOG_FORMAT", "json")
	t.Setenv("LOG_LEVEL", "warn")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var logs syncBuffer
	go func() { done <- run(ctx, nil, &logs, &logs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("allinone: %v\n%s", err, logs.String())
			}
		case <-time.After(20 * time.Second):
			t.Error("allinone did not stop within 20s")
		}
	})
	s := stack{http: "http://" + httpAddr, nats: "nats://127.0.0.1:" + strconv.Itoa(natsPort)}
	waitUntil(t, 20*time.Second, "gateway ready", func() bool {
		res, err := http.Get(s.http + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
	nc, err := nats.Connect(s.nats)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	waitUntil(t, 20*time.Second, "bot answering", func() bool {
		_, err := nc.Request("bot.cmd", []byte(`{"room":"x","user":"probe","text":"/help"}`), time.Second)
		return err == nil
	})
	return s
}

func waitUntil(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestServesTheChat(t *testing.T) {
	s := startStack(t)
	for _, path := range []string{"/", "/chat/lobby/alice"} {
		res, err := http.Get(s.http + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d", path, res.StatusCode)
		}
	}
	ws := dialWS(t, s, "/ws/chat/lobby/alice")
	ws.expect(t, func(f frame) bool { return f.Type == "history" })
	ws.send(t, `{"type":"message","text":"hello from the test","client_id":"c1"}`)
	ws.expect(t, func(f frame) bool {
		return f.Type == "message" && f.Text == "hello from the test" && f.ClientID == "c1"
	})
}

func TestBotAndWorker(t *testing.T) {
	s := startStack(t)
	alice := dialWS(t, s, "/ws/chat/lobby/alice")
	bob := dialWS(t, s, "/ws/chat/lobby/bob")
	alice.expect(t, func(f frame) bool { return f.Type == "history" })
	bob.expect(t, func(f frame) bool { return f.Type == "history" })
	alice.send(t, `{"type":"message","text":"/sms bob","client_id":"c1"}`)
	alice.expect(t, func(f frame) bool { return f.Type == "notice" && f.Text == "SMS to bob queued" })
	bob.expect(t, func(f frame) bool {
		return f.Type == "message" && f.Kind == "bot" && strings.Contains(f.Text, "An SMS has been sent to bob")
	})
	alice.send(t, `{"type":"message","text":"/now","client_id":"c2"}`)
	bob.expect(t, func(f frame) bool { return f.Type == "message" && strings.Contains(f.Text, "alice asked for the time") })
}

// TestHistoryStored: a message is stored in SQLite and served by the API.
func TestHistoryStored(t *testing.T) {
	s := startStack(t)
	ws := dialWS(t, s, "/ws/chat/lobby/alice")
	ws.expect(t, func(f frame) bool { return f.Type == "history" })
	ws.send(t, `{"type":"message","text":"keep me","client_id":"k1"}`)
	ws.expect(t, func(f frame) bool { return f.Type == "message" && f.Text == "keep me" })
	waitUntil(t, 10*time.Second, "message in the API", func() bool {
		res, err := http.Get(s.http + "/api/rooms/lobby/messages?limit=10")
		if err != nil {
			return false
		}
		defer res.Body.Close()
		var got struct {
			Messages []frame `json:"messages"`
		}
		json.NewDecoder(res.Body).Decode(&got)
		return len(got.Messages) == 1 && got.Messages[0].Text == "keep me"
	})
	res, err := http.Get(s.http + "/api/rooms")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var rooms struct {
		Rooms []struct {
			Name     string `json:"name"`
			Messages int    `json:"messages"`
		} `json:"rooms"`
	}
	if err := json.NewDecoder(res.Body).Decode(&rooms); err != nil || len(rooms.Rooms) != 1 || rooms.Rooms[0].Name != "lobby" {
		t.Errorf("rooms: %+v %v", rooms, err)
	}
}

// TestREADMENatsCommands runs the README's nats CLI examples against the
// all-in-one with the real CLI.
func TestREADMENatsCommands(t *testing.T) {
	natsCLI := requireNatsCLI(t)
	s := startStack(t)
	ws := dialWS(t, s, "/ws/chat/lobby/alice")
	ws.expect(t, func(f frame) bool { return f.Type == "history" })

	sub := exec.Command(natsCLI, "-s", s.nats, "sub", "chat.>", "--count", "2")
	var subOut syncBuffer
	sub.Stdout, sub.Stderr = &subOut, &subOut
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	defer sub.Process.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(subOut.String(), "Subscribing on") {
		if time.Now().After(deadline) {
			t.Fatalf("nats sub did not subscribe:\n%s", subOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	out, err := exec.Command(natsCLI, "-s", s.nats, "pub", "chat.room.lobby", `{"user":"ops","text":"hello"}`).CombinedOutput()
	if err != nil {
		t.Fatalf("nats pub: %v\n%s", err, out)
	}
	ws.expect(t, func(f frame) bool { return f.Type == "message" && f.User == "ops" && f.Text == "hello" && f.Seq > 0 })

	waitErr := make(chan error, 1)
	go func() { waitErr <- sub.Wait() }()
	select {
	case <-waitErr:
	case <-time.After(10 * time.Second):
		t.Fatalf("nats sub did not see the message and its republish:\n%s", subOut.String())
	}
	for _, want := range []string{"chat.room.lobby", "chat.feed.lobby", `"text":"hello"`} {
		if !strings.Contains(subOut.String(), want) {
			t.Errorf("nats sub 'chat.>' output lacks %q:\n%s", want, subOut.String())
		}
	}

	out, err = exec.Command(natsCLI, "-s", s.nats, "stream", "info", "CHAT").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "chat.room.*") {
		t.Errorf("nats stream info CHAT: %v\n%s", err, out)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func ciRequired() bool { return os.Getenv("CI") == "true" }

func requireNatsCLI(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("nats")
	if err != nil {
		if ciRequired() {
			t.Fatal("the nats CLI is not on PATH and CI=true: install it with go install github.com/nats-io/natscli/nats@v0.5.1")
		}
		t.Skip("the nats CLI is not on PATH: go install github.com/nats-io/natscli/nats@v0.5.1 to run this test")
	}
	return path
}

type frame struct {
	Type     string `json:"type"`
	Seq      uint64 `json:"seq"`
	User     string `json:"user"`
	Text     string `json:"text"`
	Kind     string `json:"kind"`
	ClientID string `json:"client_id"`
	Code     string `json:"code"`
	Message  string `json:"message"`
}

type wsConn struct{ c *websocket.Conn }

func dialWS(t *testing.T, s stack, path string) wsConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(s.http, "http")+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadLimit(1 << 24)
	t.Cleanup(func() { c.CloseNow() })
	return wsConn{c}
}

func (w wsConn) send(t *testing.T, frame string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.c.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
		t.Fatal(err)
	}
}

// expect reads frames until one matches, failing after 10s.
func (w wsConn) expect(t *testing.T, match func(frame) bool) frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, data, err := w.c.Read(ctx)
		if err != nil {
			t.Fatalf("no matching frame: %v", err)
		}
		var f frame
		if err := json.Unmarshal(data, &f); err != nil {
			t.Fatalf("bad frame %q", data)
		}
		if match(f) {
			return f
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
