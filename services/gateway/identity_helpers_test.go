package gateway

// Helpers of the identity tests: the real accounts service in-process (SQLite
// in a temporary directory), gateways that a test can stop and start again,
// an HTTP client that behaves like a browser page (cookies, Origin), and
// WebSockets that keep their close status.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/kelseyhightower/envconfig"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/natschat/chat/services/accounts"
	"github.com/natschat/chat/shared/chat"
)

// idWait bounds every wait of these tests: generous for a busy machine,
// and never what a test asserts.
const idWait = 15 * time.Second

// accountsService runs the accounts service on s with its SQLite file in
// dir (a fresh one if empty) until stop, which the test's end calls too.
type accountsService struct {
	dir  string
	stop func()
}

func startAccounts(t *testing.T, s *server.Server, dir string, tweak func(*accounts.Config)) *accountsService {
	t.Helper()
	var cfg accounts.Config
	if err := envconfig.Process("GATEWAY_IDENTITY_TEST_ACCOUNTS", &cfg); err != nil {
		t.Fatal(err)
	}
	if dir == "" {
		dir = t.TempDir()
	}
	cfg.URL, cfg.DatabaseURL, cfg.SQLitePath = s.ClientURL(), "", filepath.Join(dir, "accounts.db")
	if tweak != nil {
		tweak(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- accounts.Run(ctx, cfg, idLogger(t)) }()
	stop := sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("accounts: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("accounts did not stop within 30s")
		}
	})
	t.Cleanup(stop)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	idWaitFor(t, "the accounts service answers", func() (bool, string) {
		m, err := nc.Request(chat.AuthSession, []byte(`{}`), 2*time.Second)
		if err != nil {
			return false, err.Error()
		}
		var r chat.AuthReply
		json.Unmarshal(m.Data, &r)
		return r.Code == chat.CodeUnauthorized, string(m.Data)
	})
	return &accountsService{dir: dir, stop: stop}
}

// idGateway is a gateway of an identity test.
type idGateway struct {
	base string
	stop func()
}

func startIDGateway(t *testing.T, s *server.Server, tweak func(*Config)) *idGateway {
	t.Helper()
	var cfg Config
	if err := envconfig.Process("GATEWAY_IDENTITY_TEST_DEFAULTS", &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.URL = s.ClientURL()
	cfg.HistoryTimeout = 300 * time.Millisecond
	cfg.PresenceInterval = time.Second
	cfg.MaxConnsPerAddr = 1 << 20
	if tweak != nil {
		tweak(&cfg)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(s.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, cfg, nc, ln, idLogger(t)) }()
	stop := sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("gateway: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("gateway did not stop within 15s")
		}
		nc.Close()
	})
	t.Cleanup(stop)
	g := &idGateway{base: "http://" + ln.Addr().String(), stop: stop}
	idWaitFor(t, "gateway ready", func() (bool, string) {
		res, err := http.Get(g.base + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK, res.Status
	})
	return g
}

// idLogger prints the services' logs with -v only.
func idLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func idWaitFor(t *testing.T, what string, ok func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(idWait)
	for {
		done, state := ok()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %s", idWait, what, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// page is a browser page's view of the HTTP API: it keeps cookies per
// host like a browser and sends its origin with every POST.
type page struct {
	t      *testing.T
	client *http.Client
}

func newPage(t *testing.T) *page {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &page{t: t, client: &http.Client{Jar: jar, Timeout: idWait}}
}

// answer is an HTTP response, its body read.
type answer struct {
	*http.Response
	body []byte
}

func (a answer) json() map[string]any {
	var m map[string]any
	json.Unmarshal(a.body, &m)
	return m
}

func (a answer) String() string { return fmt.Sprintf("%s %s", a.Status, bytes.TrimSpace(a.body)) }

func (p *page) do(req *http.Request) answer {
	p.t.Helper()
	res, err := p.client.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return answer{res, body}
}

// post sends v as JSON from the page's own origin.
func (p *page) post(base, path string, v any) answer {
	p.t.Helper()
	b, _ := json.Marshal(v)
	req, _ := http.NewRequest(http.MethodPost, base+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", base)
	return p.do(req)
}

func (p *page) get(base, path string) answer {
	p.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+path, nil)
	return p.do(req)
}

// mustPost is post that fails the test unless the status is want.
func (p *page) mustPost(base, path string, v any, want int) answer {
	p.t.Helper()
	a := p.post(base, path, v)
	if a.StatusCode != want {
		p.t.Fatalf("POST %s: %v, want %d", path, a, want)
	}
	return a
}

// register signs up name on the gateway at base and returns the session
// token (the cookie the page now has).
func (p *page) register(base, name, password string) string {
	p.t.Helper()
	p.mustPost(base, "/api/register", map[string]string{"name": name, "password": password}, http.StatusCreated)
	return p.session(base)
}

// session is the page's session cookie for base.
func (p *page) session(base string) string {
	u, _ := url.Parse(base)
	for _, c := range p.client.Jar.Cookies(u) {
		if c.Name == sessionCookie {
			return c.Value
		}
	}
	return ""
}

// cookieHeader carries token as the session cookie on another client (a
// WebSocket, another gateway's host).
func cookieHeader(token string) http.Header {
	return http.Header{"Cookie": {sessionCookie + "=" + token}}
}

// idConn is a WebSocket of an identity test: frames in a channel, and the
// error that ended it.
type idConn struct {
	t      *testing.T
	conn   *websocket.Conn
	frames chan chat.ServerFrame
	ended  chan struct{}
	err    error // set before ended is closed
}

// connect opens a WebSocket to path with header, failing the test if it
// is refused.
func connect(t *testing.T, base, path string, header http.Header) *idConn {
	t.Helper()
	c, status, reason := tryConnect(t, base, path, header)
	if c == nil {
		t.Fatalf("WebSocket %s refused: %d %s", path, status, reason)
	}
	return c
}

// tryConnect opens a WebSocket, or returns the refusal's status and body.
func tryConnect(t *testing.T, base, path string, header http.Header) (c *idConn, status int, reason string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), idWait)
	defer cancel()
	conn, res, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+path, &websocket.DialOptions{HTTPHeader: header})
	if err != nil {
		if res == nil {
			t.Fatalf("dial %s: %v", path, err)
		}
		body, _ := io.ReadAll(res.Body)
		return nil, res.StatusCode, strings.TrimSpace(string(body))
	}
	conn.SetReadLimit(1 << 24)
	c = &idConn{t: t, conn: conn, frames: make(chan chat.ServerFrame, 4096), ended: make(chan struct{})}
	go func() {
		defer close(c.ended)
		for {
			_, data, err := conn.Read(context.Background())
			if err != nil {
				c.err = err
				return
			}
			frames, err := chat.DecodeFrames(data)
			if err != nil {
				t.Errorf("bad frame: %v", err)
			}
			for _, f := range frames {
				c.frames <- f
			}
		}
	}()
	t.Cleanup(func() { conn.CloseNow() })
	return c, http.StatusSwitchingProtocols, ""
}

// next returns the next frame of type typ, skipping others.
func (c *idConn) next(typ chat.FrameType) chat.ServerFrame {
	c.t.Helper()
	deadline := time.After(idWait)
	for {
		select {
		case f := <-c.frames:
			if f.Type == typ {
				return f
			}
		case <-c.ended:
			c.t.Fatalf("connection ended (%v) while waiting for a %s frame", c.err, typ)
		case <-deadline:
			c.t.Fatalf("no %s frame within %v", typ, idWait)
		}
	}
}

// closedWith waits for the server to close the connection, and returns
// the status and reason it gave.
func (c *idConn) closedWith() (websocket.StatusCode, string) {
	c.t.Helper()
	select {
	case <-c.ended:
	case <-time.After(idWait):
		c.t.Fatalf("still open after %v", idWait)
	}
	var ce websocket.CloseError
	if !errors.As(c.err, &ce) {
		return -1, c.err.Error()
	}
	return ce.Code, ce.Reason
}

func (c *idConn) say(text, clientID string) {
	c.t.Helper()
	c.sendRaw(fmt.Sprintf(`{"type":"message","text":%q,"client_id":%q}`, text, clientID))
}

func (c *idConn) sendRaw(frame string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), idWait)
	defer cancel()
	if err := c.conn.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// ack waits for the message frame acknowledging clientID, skipping others.
func (c *idConn) ack(clientID string) chat.ServerFrame {
	c.t.Helper()
	for {
		f := c.next(chat.FrameMessage)
		if f.ClientID == clientID {
			return f
		}
	}
}

// errorFor waits for the error frame about clientID.
func (c *idConn) errorFor(clientID string) chat.ServerFrame {
	c.t.Helper()
	for {
		f := c.next(chat.FrameError)
		if f.ClientID == clientID {
			return f
		}
	}
}

// streamMessages reads room's messages back from the CHAT stream, as the
// history service stores them.
func streamMessages(t *testing.T, nc *nats.Conn, room string) []chat.Message {
	t.Helper()
	var out []chat.Message
	for seq := uint64(1); ; seq++ {
		m, err := nc.Request("$JS.API.STREAM.MSG.GET.CHAT", []byte(fmt.Sprintf(`{"seq":%d}`, seq)), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Message *struct {
				Subject string `json:"subject"`
				Data    []byte `json:"data"`
			} `json:"message"`
			Error *struct {
				Code int `json:"code"`
			} `json:"error"`
		}
		if err := json.Unmarshal(m.Data, &got); err != nil {
			t.Fatal(err)
		}
		if got.Error != nil || got.Message == nil {
			return out // past the last message
		}
		if got.Message.Subject != chat.RoomSubject(room) {
			continue
		}
		cm, err := chat.ParseMessage(got.Message.Data, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, cm)
	}
}
