package gateway

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/testkit/natstest"
)

// benchQuery is what benchmark clients add to the WebSocket URL.
const benchQuery = "?batch=1"

// messageType is in every message frame whatever its field order: the
// benchmark counts frames without decoding them, so that its clients
// leave the CPU to the gateway.
var messageType = []byte(`"type":"` + string(chat.FrameMessage) + `"`)

func benchMessage(seq uint64) chat.Message {
	return chat.Message{
		Room: "lobby", Seq: seq, User: "alice", Kind: chat.KindUser, ClientID: "c-42",
		Text: "b1|0|12345|1700000000123456789 hello, world",
		TS:   time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC),
	}
}

// BenchmarkEncodeMessage is the once-per-message-per-gateway cost of a frame.
func BenchmarkEncodeMessage(b *testing.B) {
	m := benchMessage(1)
	b.ReportAllocs()
	for b.Loop() {
		encodeMessage(m)
	}
}

// BenchmarkFanout measures the whole delivery path of one gateway: messages
// published on NATS, stored and republished by JetStream, fanned out by the
// room and written to n real WebSocket clients on loopback, which count
// them. It reports deliveries per second.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{10, 100} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) {
			benchFanout(b, n)
		})
	}
}

func benchFanout(b *testing.B, n int) {
	s := natstest.Start(b)
	base := startGateway(b, s, func(c *Config) { c.SendQueue = 4096 })
	nc := natstest.Connect(b, s)
	var received atomic.Int64
	var ready sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range n {
		conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+fmt.Sprintf("/ws/chat/bench/u%d%s", i, benchQuery), nil)
		if err != nil {
			b.Fatal(err)
		}
		conn.SetReadLimit(1 << 24)
		defer conn.CloseNow()
		ready.Add(1)
		go func() {
			first := true
			for {
				_, data, err := conn.Read(ctx)
				if err != nil {
					return
				}
				if first {
					first = false
					ready.Done()
				}
				received.Add(int64(bytes.Count(data, messageType)))
			}
		}()
	}
	ready.Wait()
	payload := []byte(`{"user":"p","text":"hello, world, a message of a typical length"}`)
	b.ResetTimer()
	for i := range b.N {
		if err := nc.Publish(chat.RoomSubject("bench"), payload); err != nil {
			b.Fatal(err)
		}
		// A bounded window, like a real publisher: do not outrun the
		// clients' send queues.
		for int64(i-64)*int64(n) > received.Load() {
			time.Sleep(50 * time.Microsecond)
		}
	}
	want := int64(b.N) * int64(n)
	deadline := time.Now().Add(30 * time.Second)
	for received.Load() < want {
		if time.Now().After(deadline) {
			b.Fatalf("received %d of %d deliveries", received.Load(), want)
		}
		time.Sleep(100 * time.Microsecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(want)/b.Elapsed().Seconds(), "deliveries/s")
}
