package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/kelseyhightower/envconfig"

	"github.com/natschat/chat/services/gateway"
	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/testkit"
	"github.com/natschat/chat/shared/testkit/natstest"
)

// startGateway serves a real gateway, with an embedded nats-server, on a
// random loopback port and returns its base URL.
func startGateway(t *testing.T) string {
	t.Helper()
	s := natstest.Start(t)
	var cfg gateway.Config
	if err := envconfig.Process("CHATBENCH_TEST_DEFAULTS", &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.URL = s.ClientURL()
	cfg.Rate, cfg.Burst = 1e6, 1e6
	// What is tested is chatbench's accounting, not the slow-client rule:
	// a listener starved of CPU on a busy machine must not be cut off.
	cfg.SendQueue, cfg.SendQueueBytes = 1<<20, 1<<30
	ln := testkit.Listen(t)
	nc := natstest.Connect(t, s)
	log := testkit.Logger(t)
	testkit.Start(t, "gateway", func(ctx context.Context) error { return gateway.Serve(ctx, cfg, nc, ln, log) })
	base := "http://" + ln.Addr().String()
	testkit.WaitReady(t, base)
	return base
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newTestBench(t *testing.T, base string) *bench {
	t.Helper()
	ws, err := websocketBase(base)
	if err != nil {
		t.Fatal(err)
	}
	return &bench{wsBase: ws, peer: chatPeer{batch: true}, peerName: "chat", tag: runTag(), log: quietLogger(), window: 64, dialers: 8, drainMax: 3 * time.Second}
}

var small = traffic{rooms: 2, subs: 4, pubs: 2, rate: 100, duration: time.Second}

func TestNoLossAgainstGateway(t *testing.T) {
	b := newTestBench(t, startGateway(t))
	ctx := context.Background()
	for _, tt := range []struct {
		name string
		t    traffic
	}{
		{"paced", small},
		{"window-bound", traffic{rooms: 1, subs: 3, pubs: 1, duration: 500 * time.Millisecond}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := b.runTraffic(ctx, "T", tt.t)
			if r.failed() {
				t.Fatalf("problems: %v", r.Problems)
			}
			wantConns := tt.t.rooms * (tt.t.subs + tt.t.pubs)
			if r.Conns != wantConns || r.Sent == 0 {
				t.Fatalf("got %d conns and %d sent, want %d conns and some sent", r.Conns, r.Sent, wantConns)
			}
			perMsg := int64(tt.t.subs + tt.t.pubs)
			if r.Expected != r.Sent*perMsg || r.Delivered != r.Expected || r.Lost != 0 || r.Dups != 0 {
				t.Errorf("got sent %d, expected %d, delivered %d, lost %d, dups %d; want every message to every member once",
					r.Sent, r.Expected, r.Delivered, r.Lost, r.Dups)
			}
			if r.Lat.n != uint64(r.Delivered) || r.Lat.quantile(0.5) <= 0 {
				t.Errorf("got %d latency samples, p50 %v; want one per delivery", r.Lat.n, r.Lat.quantile(0.5))
			}
		})
	}
}

func TestDroppedDeliveriesAreReportedAsLost(t *testing.T) {
	base := startGateway(t)
	proxy := startDroppingProxy(t, base, 10)
	b := newTestBench(t, proxy)

	r := b.runTraffic(context.Background(), "T", small)
	if !r.failed() {
		t.Fatal("a relay dropping every 10th message was reported as a success")
	}
	frac := float64(r.Lost) / float64(r.Expected)
	if frac < 0.08 || frac > 0.12 {
		t.Errorf("got %d of %d lost (%.1f%%), want about 10%%", r.Lost, r.Expected, 100*frac)
	}
	if !strings.Contains(strings.Join(r.Problems, "\n"), "deliveries lost") {
		t.Errorf("problems %q do not mention lost deliveries", r.Problems)
	}

	// The command exits non-zero and says so in its table.
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"-url", proxy, "-scenario", "custom", "-subs", "3", "-rate", "100", "-duration", "500ms", "-drain", "2s"}, &out, &errOut)
	if err == nil {
		t.Fatalf("run succeeded through a lossy relay; output:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "FAIL") {
		t.Errorf("table does not flag the failure:\n%s", out.String())
	}
}

func TestRefusesNonLoopback(t *testing.T) {
	for _, url := range []string{"http://example.com:8080", "http://10.0.0.1:8080", "http://0.0.0.0:8080"} {
		if err := run(context.Background(), []string{"-url", url}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("-url %s: got %v, want a loopback error", url, err)
		}
	}
}

func TestParseText(t *testing.T) {
	frame := appendFrame(nil, 12, 345, 1700000000123456789)
	i := bytes.Index(frame, textMarker)
	pub, n, ts, ok := parseText(frame[i+len(textMarker):])
	if !ok || pub != 12 || n != 345 || ts != 1700000000123456789 {
		t.Errorf("got %d %d %d %v from %s", pub, n, ts, ok, frame)
	}
	for _, bad := range []string{``, `1|2`, `1|2|3`, `a|2|3"`, `|2|3"`, `1|2|3x"`} {
		if _, _, _, ok := parseText([]byte(bad)); ok {
			t.Errorf("parseText(%q) accepted", bad)
		}
	}
}

// TestFrames: what the tool sends is a chat.ClientFrame, and it tells the
// gateway's frames apart whatever the order of their fields.
func TestFrames(t *testing.T) {
	var sent chat.ClientFrame
	if err := json.Unmarshal(appendFrame(nil, 12, 345, 1700000000123456789), &sent); err != nil {
		t.Fatal(err)
	}
	if want := (chat.ClientFrame{Type: chat.FrameMessage, Text: "b1|12|345|1700000000123456789", ClientID: "12-345"}); sent != want {
		t.Errorf("sent %+v, want %+v", sent, want)
	}
	for _, tt := range []struct {
		frame string
		want  chat.FrameType
	}{
		{`{"type":"message","text":"x"}`, chat.FrameMessage},
		{`{"seq":3,"text":"type \"type\":\"error\"","type":"message"}`, chat.FrameMessage},
		{`{"messages":[{"text":"a"}],"type":"history"}`, chat.FrameHistory},
		{`{"code":"rate_limited","type":"error"}`, chat.FrameError},
		{`{"text":"no type"}`, ""},
	} {
		if got := chat.FrameType(frameType([]byte(tt.frame))); got != tt.want {
			t.Errorf("frameType(%s) = %q, want %q", tt.frame, got, tt.want)
		}
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Millisecond)
	}
	for _, tt := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Millisecond}, {0.99, 990 * time.Millisecond}, {1, time.Second}} {
		got := h.quantile(tt.q)
		if got < tt.want || float64(got) > 1.02*float64(tt.want) {
			t.Errorf("quantile(%v) = %v, want %v within 2%%", tt.q, got, tt.want)
		}
	}
}

// startDroppingProxy relays WebSockets to the gateway at base and drops every
// nth message frame going to the clients (history and error frames pass).
func startDroppingProxy(t *testing.T, base string, nth int) string {
	t.Helper()
	return startFilteringProxy(t, base, func() func([]byte) bool {
		var count atomic.Int64
		return func(f []byte) bool {
			return bytes.Equal(frameType(f), messageFrame) && count.Add(1)%int64(nth) == 0
		}
	})
}

// startFilteringProxy relays WebSockets to the gateway at base and drops
// the frames going to the clients that drop, made anew for every
// connection, selects.
func startFilteringProxy(t *testing.T, base string, newDrop func() func([]byte) bool) string {
	t.Helper()
	upstream, err := websocketBase(base)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		down, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer down.CloseNow()
		// The path only: without ?batch=1 the gateway sends one frame per
		// WebSocket message, so dropping a message drops one frame.
		up, _, err := websocket.Dial(r.Context(), upstream+r.URL.Path, nil)
		if err != nil {
			down.Close(websocket.StatusInternalError, "upstream: "+err.Error())
			return
		}
		defer up.CloseNow()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			defer cancel()
			relay(ctx, up, down, func([]byte) bool { return false })
		}()
		relay(ctx, down, up, newDrop())
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// relay copies frames read from src to dst, skipping those drop selects,
// until either side fails or ctx is done.
func relay(ctx context.Context, dst, src *websocket.Conn, drop func([]byte) bool) {
	for {
		typ, data, err := src.Read(ctx)
		if err != nil {
			return
		}
		if drop(data) {
			continue
		}
		if err := dst.Write(ctx, typ, data); err != nil {
			return
		}
	}
}

// TestScenarioList: all is what make bench runs; S7, S8 and S9 run when named.
func TestScenarioList(t *testing.T) {
	all, err := scenarioList("all")
	if err != nil || strings.Join(all, ",") != "S1,S2,S3,S4,S5,S6" {
		t.Errorf("all: got %v, %v; want S1..S6", all, err)
	}
	got, err := scenarioList("s9, S8,custom,S7")
	if err != nil || strings.Join(got, ",") != "S9,S8,custom,S7" {
		t.Errorf("got %v, %v; want S9, S8, custom and S7", got, err)
	}
	if _, err := scenarioList("S10"); err == nil {
		t.Error("S10 accepted")
	}
}
