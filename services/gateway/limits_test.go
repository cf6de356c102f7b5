package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/testkit"
	"github.com/natschat/chat/shared/testkit/natstest"
	"github.com/natschat/chat/shared/testkit/wstest"
)

func TestBadFramesKeepSocketOpen(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	base := startGateway(t, s, nil)
	c := wstest.Dial(t, base+"/ws/chat/lobby/alice")
	c.Next(chat.FrameHistory)

	tests := []struct {
		name  string
		frame string
		code  chat.Code
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
			c.SendRaw(websocket.MessageText, []byte(tt.frame))
			f := c.Next(chat.FrameError)
			if f.Code != tt.code || f.Error == "" {
				t.Errorf("got %+v, want code %s with a message", f, tt.code)
			}
		})
	}
	c.SendRaw(websocket.MessageBinary, []byte("x"))
	if f := c.Next(chat.FrameError); f.Code != chat.CodeInvalid {
		t.Errorf("binary frame: got %+v", f)
	}
	// The longest valid message still goes through, on the same socket.
	long := strings.Repeat("é", chat.MaxTextLen)
	c.Say(long, "ok")
	if f := c.Next(chat.FrameMessage); f.Text != long {
		t.Error("4,000-character message not delivered after the errors")
	}
}

func TestOversizedFrameClosesWith1009(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	base := startGateway(t, s, nil)
	c := wstest.Dial(t, base+"/ws/chat/lobby/alice")
	c.Next(chat.FrameHistory)
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Deadline)
	defer cancel()
	big := `{"type":"message","text":"` + strings.Repeat("x", 70<<10) + `"}`
	_ = c.Conn.Write(ctx, websocket.MessageText, []byte(big)) // the server may close before it has read it all
	err := c.WaitClosed()
	if got := websocket.CloseStatus(err); got != websocket.StatusMessageTooBig {
		t.Errorf("close status %v (%v), want 1009", got, err)
	}
}

func TestRateLimited(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	base := startGateway(t, s, func(c *Config) { c.Rate, c.Burst = 1, 3 })
	c := wstest.Dial(t, base+"/ws/chat/lobby/alice")
	c.Next(chat.FrameHistory)
	for i := range 6 {
		c.Say(fmt.Sprint("m", i), fmt.Sprint(i))
	}
	if f := c.Next(chat.FrameError); f.Code != chat.CodeRateLimited {
		t.Errorf("got %+v", f)
	}
}

func TestCrossOriginRefused(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	base := startGateway(t, s, nil)
	dial := func(base, origin string) error {
		_, err := wstest.DialHeader(t, base+"/ws/chat/lobby/alice", http.Header{"Origin": {origin}})
		return err
	}
	if err := dial(base, "https://evil.example"); err == nil {
		t.Fatal("cross-origin upgrade accepted")
	}
	if err := dial(base, base); err != nil {
		t.Errorf("same-origin upgrade refused: %v", err)
	}

	allowed := startGateway(t, s, func(c *Config) { c.AllowedOrigins = []string{"app.example"} })
	if err := dial(allowed, "https://app.example"); err != nil {
		t.Errorf("allowed origin refused: %v", err)
	}
	if err := dial(allowed, "https://evil.example"); err == nil {
		t.Error("origin outside the allowed list accepted")
	}
}

// TestStalledReaderDisconnected: a client that stops reading fills its send
// queue and is disconnected, while the others in the room get every message.
func TestStalledReaderDisconnected(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	base := startGateway(t, s, func(c *Config) { c.SendQueue = 128 })
	nc := natstest.Connect(t, s)

	// A raw socket: the test client would read it in the background.
	stalled, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(base, "http")+"/ws/chat/lobby/stalled", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.CloseNow()
	reader := wstest.Dial(t, base+"/ws/chat/lobby/reader")
	reader.Next(chat.FrameHistory)

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
			f := reader.Next(chat.FrameMessage)
			if want := fmt.Sprint(r*perRound+i, " "); !strings.HasPrefix(f.Text, want) {
				t.Fatalf("message %d: got %.20s", r*perRound+i, f.Text)
			}
		}
	}
	const n = rounds * perRound
	t.Logf("reader got %d messages in %v", n, time.Since(start))

	// Now read the stalled socket: after what was buffered, the server has
	// closed it: with a policy-violation close frame when the frame still
	// fit in the socket buffer, else by dropping the TCP connection.
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Deadline)
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
	// Counted when the connection has ended, after its close handshake.
	testkit.WaitForState(t, testkit.Deadline, "the slow client counted", func() (bool, string) {
		got := metric(t, base, "chat_gateway_slow_clients_total")
		return got == 1, fmt.Sprintf("slow clients metric = %v, want 1", got)
	})
	if got := metric(t, base, "chat_gateway_messages_out_total"); got != n {
		t.Errorf("messages out metric = %v, want %d", got, n)
	}
}

// TestStoreFailureReported: when JetStream cannot store a message, the
// sender gets an error frame naming the message, and the socket stays open.
func TestStoreFailureReported(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	base := startGateway(t, s, func(c *Config) { c.PublishTimeout = time.Second })
	c := wstest.Dial(t, base+"/ws/chat/lobby/alice")
	c.Next(chat.FrameHistory)
	nc := natstest.Connect(t, s)
	if _, err := nc.Request("$JS.API.STREAM.DELETE.CHAT", nil, testkit.Deadline); err != nil {
		t.Fatal(err)
	}
	c.Say("lost?", "c-9")
	f := c.Next(chat.FrameError)
	if f.Code != chat.CodeUnavailable || f.ClientID != "c-9" {
		t.Errorf("got %+v", f)
	}
}

// TestBatchedFrames: a client that asks for batches gets, when it falls
// behind, several newline-separated frames per WebSocket message, and
// every frame once, in order.
func TestBatchedFrames(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	base := startGateway(t, s, func(c *Config) { c.SendQueue = 4096 })
	nc := natstest.Connect(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Deadline)
	defer cancel()
	// A raw socket, to see how frames are put into WebSocket messages.
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/ws/chat/lobby/alice?batch=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(1 << 20)
	if _, data, err := conn.Read(ctx); err != nil {
		t.Fatal(err)
	} else if frames, err := chat.DecodeFrames(data); err != nil || frames[0].Type != chat.FrameHistory {
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
		frames, err := chat.DecodeFrames(data)
		if err != nil {
			t.Fatal(err)
		}
		maxPerMessage = max(maxPerMessage, len(frames))
		for _, f := range frames {
			if f.Type != chat.FrameMessage {
				continue
			}
			if f.Text != fmt.Sprint(next) {
				t.Fatalf("got %q, want %d", f.Text, next)
			}
			next++
		}
	}
	if maxPerMessage < 2 {
		t.Errorf("%d messages for %d frames: never batched", messages, n)
	}
	t.Logf("%d frames in %d WebSocket messages, up to %d per message", n, messages, maxPerMessage)
}
