package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/natstest"
)

func TestBadFramesKeepSocketOpen(t *testing.T) {
	s := natstest.Start(t)
	base := startGateway(t, s, nil)
	c := dial(t, base, "/ws/chat/lobby/alice")
	c.next("history")

	tests := []struct {
		name  string
		frame string
		code  string
	}{
		{"empty text", `{"type":"message","text":""}`, "invalid"},
		{"blank text", `{"type":"message","text":"  \n "}`, "invalid"},
		{"too long", `{"type":"message","text":"` + strings.Repeat("x", chat.MaxTextLen+1) + `"}`, "too_long"},
		{"malformed json", `{"type":"message",`, "invalid"},
		{"not an object", `[1,2]`, "invalid"},
		{"unknown type", `{"type":"dance"}`, "invalid"},
		{"wrong field type", `{"type":"message","text":7}`, "invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := c.conn.Write(ctx, websocket.MessageText, []byte(tt.frame)); err != nil {
				t.Fatal(err)
			}
			f := c.next("error")
			if f["code"] != tt.code || f["message"] == "" {
				t.Errorf("got %v, want code %s with a message", f, tt.code)
			}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.conn.Write(ctx, websocket.MessageBinary, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if f := c.next("error"); f["code"] != "invalid" {
		t.Errorf("binary frame: got %v", f)
	}
	// The longest valid message still goes through, on the same socket.
	long := strings.Repeat("é", chat.MaxTextLen)
	c.say(long, "ok")
	if f := c.next("message"); f["text"] != long {
		t.Error("4,000-character message not delivered after the errors")
	}
}

func TestOversizedFrameClosesWith1009(t *testing.T) {
	s := natstest.Start(t)
	base := startGateway(t, s, nil)
	c := dial(t, base, "/ws/chat/lobby/alice")
	c.next("history")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	big := `{"type":"message","text":"` + strings.Repeat("x", 70<<10) + `"}`
	_ = c.conn.Write(ctx, websocket.MessageText, []byte(big))
	select {
	case err := <-c.closed:
		if got := websocket.CloseStatus(err); got != websocket.StatusMessageTooBig {
			t.Errorf("close status %v (%v), want 1009", got, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("socket not closed after an oversized frame")
	}
}

func TestRateLimited(t *testing.T) {
	s := natstest.Start(t)
	base := startGateway(t, s, func(c *Config) { c.Rate, c.Burst = 1, 3 })
	c := dial(t, base, "/ws/chat/lobby/alice")
	c.next("history")
	for i := range 6 {
		c.say(fmt.Sprint("m", i), fmt.Sprint(i))
	}
	if f := c.next("error"); f["code"] != "rate_limited" {
		t.Errorf("got %v", f)
	}
}

func TestCrossOriginRefused(t *testing.T) {
	s := natstest.Start(t)
	base := startGateway(t, s, nil)
	_, err := tryDial(t, base, "/ws/chat/lobby/alice", http.Header{"Origin": {"https://evil.example"}})
	if err == nil {
		t.Fatal("cross-origin upgrade accepted")
	}
	same := base
	if _, err := tryDial(t, base, "/ws/chat/lobby/alice", http.Header{"Origin": {same}}); err != nil {
		t.Errorf("same-origin upgrade refused: %v", err)
	}

	allowed := startGateway(t, s, func(c *Config) { c.AllowedOrigins = []string{"app.example"} })
	if _, err := tryDial(t, allowed, "/ws/chat/lobby/alice", http.Header{"Origin": {"https://app.example"}}); err != nil {
		t.Errorf("allowed origin refused: %v", err)
	}
	if _, err := tryDial(t, allowed, "/ws/chat/lobby/alice", http.Header{"Origin": {"https://evil.example"}}); err == nil {
		t.Error("origin outside the allowed list accepted")
	}
}

// TestStalledReaderDisconnected: a client that stops reading fills its send
// queue and is disconnected, while the others in the room get every message.
func TestStalledReaderDisconnected(t *testing.T) {
	s := natstest.Start(t)
	base := startGateway(t, s, func(c *Config) { c.SendQueue = 128 })
	nc := natstest.Connect(t, s)

	stalled, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(base, "http")+"/ws/chat/lobby/stalled", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.CloseNow()
	reader := dial(t, base, "/ws/chat/lobby/reader")
	reader.next("history")

	// Enough bytes to fill the socket buffers of the stalled client, in
	// rounds the reading client keeps up with.
	const rounds, perRound = 30, 100
	text := strings.Repeat("y", 3000)
	start := time.Now()
	for r := range rounds {
		for i := range perRound {
			body := fmt.Sprintf(`{"user":"p","text":"%d %s"}`, r*perRound+i, text)
			if err := nc.Publish(chat.RoomSubject("lobby"), []byte(body)); err != nil {
				t.Fatal(err)
			}
		}
		for i := range perRound {
			f := reader.next("message")
			if want := fmt.Sprint(r*perRound+i, " "); !strings.HasPrefix(f["text"].(string), want) {
				t.Fatalf("message %d: got %.20s", r*perRound+i, f["text"])
			}
		}
	}
	const n = rounds * perRound
	t.Logf("reader got %d messages in %v", n, time.Since(start))

	// Now read the stalled socket: after what was buffered, the server has
	// closed it: with a policy-violation close frame when the frame still
	// fit in the socket buffer, else by dropping the TCP connection.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stalled.SetReadLimit(1 << 20)
	got := 0
	for {
		_, _, err := stalled.Read(ctx)
		if err == nil {
			got++
			continue
		}
		if ctx.Err() != nil {
			t.Fatalf("stalled client still connected after reading %d frames", got)
		}
		status := websocket.CloseStatus(err)
		if status != websocket.StatusPolicyViolation && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			t.Fatalf("stalled client: %v (status %v), want a policy close or a dropped connection", err, status)
		}
		if got >= n {
			t.Fatalf("stalled client received all %d messages: it was never too slow", got)
		}
		t.Logf("stalled client closed after %d of %d frames: %v", got, n, err)
		break
	}
	if got := metric(t, base, "chat_gateway_slow_clients_total"); got != 1 {
		t.Errorf("slow clients metric = %v, want 1", got)
	}
	if got := metric(t, base, "chat_gateway_messages_out_total"); got != n {
		t.Errorf("messages out metric = %v, want %d", got, n)
	}
}

// TestStoreFailureReported: when JetStream cannot store a message, the
// sender gets an error frame naming the message, and the socket stays open.
func TestStoreFailureReported(t *testing.T) {
	s := natstest.Start(t)
	base := startGateway(t, s, func(c *Config) { c.PublishTimeout = time.Second })
	c := dial(t, base, "/ws/chat/lobby/alice")
	c.next("history")
	nc := natstest.Connect(t, s)
	if _, err := nc.Request("$JS.API.STREAM.DELETE.CHAT", nil, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	c.say("lost?", "c-9")
	f := c.next("error")
	if f["code"] != "unavailable" || f["client_id"] != "c-9" {
		t.Errorf("got %v", f)
	}
}

// TestBatchedFrames: a client that asks for batches gets, when it falls
// behind, several newline-separated frames per WebSocket message, and
// every frame once, in order.
func TestBatchedFrames(t *testing.T) {
	s := natstest.Start(t)
	base := startGateway(t, s, func(c *Config) { c.SendQueue = 4096 })
	nc := natstest.Connect(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/ws/chat/lobby/alice?batch=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(1 << 20)
	if _, data, err := conn.Read(ctx); err != nil || !strings.HasPrefix(string(data), `{"type":"history"`) {
		t.Fatalf("first message %q, %v; want the history frame", data, err)
	}
	const n = 2000
	for i := range n {
		nc.Publish(chat.RoomSubject("lobby"), []byte(fmt.Sprintf(`{"text":"%d"}`, i)))
	}
	nc.Flush()
	next, messages, maxPerMessage := 0, 0, 0
	for next < n {
		_, data, err := conn.Read(ctx)
		if err != nil {
			t.Fatalf("after %d frames: %v", next, err)
		}
		messages++
		frames := strings.Split(string(data), "\n")
		maxPerMessage = max(maxPerMessage, len(frames))
		for _, raw := range frames {
			var f map[string]any
			if err := json.Unmarshal([]byte(raw), &f); err != nil {
				t.Fatalf("bad frame %q: %v", raw, err)
			}
			if f["type"] != "message" {
				continue
			}
			if f["text"] != fmt.Sprint(next) {
				t.Fatalf("got %v, want %d", f["text"], next)
			}
			next++
		}
	}
	if maxPerMessage < 2 {
		t.Errorf("%d messages for %d frames: never batched", messages, n)
	}
	t.Logf("%d frames in %d WebSocket messages, up to %d per message", n, messages, maxPerMessage)
}
