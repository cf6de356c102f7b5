package gateway

import (
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/testkit"
	"github.com/natschat/chat/shared/testkit/natstest"
	"github.com/natschat/chat/shared/testkit/wstest"
)

// TestStreamStartsOver: the CHAT stream is deleted under a running chat.
// The gateway re-creates it, an open room resynchronises (its client gets
// a reset, then every new message although the new sequences are lower
// than the old ones), sending works again without a restart, and a
// browser resuming with a seq of the old stream gets a reset instead of
// nothing.
func TestStreamStartsOver(t *testing.T) {
	s := natstest.Start(t)
	base := startGateway(t, s, nil)
	nc := natstest.Connect(t, s)
	alice := wstest.Dial(t, base+"/ws/chat/lobby/alice")
	h := alice.Next(chat.FrameHistory)
	oldEpoch := h.Epoch
	publishN(t, nc, "lobby", 0, 20)
	var oldLast uint64
	for range 20 {
		oldLast = alice.Next(chat.FrameMessage).Seq
	}

	if _, err := nc.Request("$JS.API.STREAM.DELETE.CHAT", nil, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the gateway re-creates CHAT", func() bool {
		m, err := nc.Request("$JS.API.STREAM.INFO.CHAT", nil, time.Second)
		return err == nil && m.Header.Get("Nats-Service-Error-Code") == "" && len(m.Data) > 0 && !hasAPIError(m)
	})

	f := alice.Next(chat.FrameHistory)
	if !f.Reset || f.Epoch == 0 || f.Epoch == oldEpoch {
		t.Fatalf("after the stream started over: %v, want a reset with a new epoch", f)
	}
	// Sending works again, and the room delivers the new stream's messages.
	alice.Say("after the reset", "c-1")
	if m := alice.Next(chat.FrameMessage); m.ClientID != "c-1" || m.Seq >= oldLast {
		t.Fatalf("got %v, want c-1 with a seq of the new stream", m)
	}
	publishN(t, nc, "lobby", 100, 5)
	for i := range 5 {
		if m := alice.Next(chat.FrameMessage); m.Text != fmt.Sprintf("m%d", 100+i) {
			t.Fatalf("message %d: got %v", i, m)
		}
	}

	// A browser that was away resumes with the old stream's seq and epoch.
	bob := wstest.Dial(t, base+"/ws/chat/lobby/bob?since="+strconv.FormatUint(oldLast, 10)+"&epoch="+strconv.FormatInt(oldEpoch, 10))
	r := bob.Next(chat.FrameHistory)
	if !r.Reset || len(texts(r)) != 6 {
		t.Fatalf("resume across the reset: reset %v, %d messages %v; want a reset with the 6 new messages", r.Reset, len(texts(r)), texts(r))
	}
}

func hasAPIError(m *nats.Msg) bool {
	var resp struct {
		Error *jetstream.APIError `json:"error"`
	}
	return jsonUnmarshal(m.Data, &resp) != nil || resp.Error != nil
}

// TestForgedFeedSequenceIgnored: a message published straight on
// chat.feed.<room> claiming a sequence far past the stream's is checked
// against the stream and dropped; it neither reaches browsers nor freezes
// the room.
func TestForgedFeedSequenceIgnored(t *testing.T) {
	s := natstest.Start(t)
	base := startGateway(t, s, nil)
	nc := natstest.Connect(t, s)
	alice := wstest.Dial(t, base+"/ws/chat/lobby/alice")
	alice.Next(chat.FrameHistory)
	publishN(t, nc, "lobby", 0, 1)
	last := alice.Next(chat.FrameMessage).Seq

	forged := nats.NewMsg(chat.FeedSubject("lobby"))
	forged.Header.Set(jetstream.SequenceHeader, "999999999")
	forged.Header.Set(jetstream.LastSequenceHeader, strconv.FormatUint(last, 10))
	forged.Data = []byte(`{"user":"mallory","text":"forged"}`)
	if err := nc.PublishMsg(forged); err != nil {
		t.Fatal(err)
	}
	publishN(t, nc, "lobby", 1, 3)
	for i := range 3 {
		m := alice.Next(chat.FrameMessage)
		if m.Text != fmt.Sprintf("m%d", 1+i) {
			t.Fatalf("got %v, want m%d (the forged message must not arrive)", m, 1+i)
		}
	}
	if got := metric(t, base, "chat_gateway_forged_feed_total"); got != 1 {
		t.Errorf("forged feed messages counted: %v, want 1", got)
	}
	// A new joiner gets the real messages.
	bob := wstest.Dial(t, base+"/ws/chat/lobby/bob")
	if got := texts(bob.Next(chat.FrameHistory)); len(got) != 4 || got[3] != "m3" {
		t.Errorf("joiner got %v", got)
	}
}

func jsonUnmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }
