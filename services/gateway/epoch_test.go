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
	"github.com/natschat/chat/shared/natstest"
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
	alice := dial(t, base, "/ws/chat/lobby/alice")
	h := alice.next("history")
	oldEpoch := int64(h["epoch"].(float64))
	publishN(t, nc, "lobby", 0, 20)
	var oldLast uint64
	for range 20 {
		oldLast = seqOf(alice.next("message"))
	}

	if _, err := nc.Request("$JS.API.STREAM.DELETE.CHAT", nil, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the gateway re-creates CHAT", func() bool {
		m, err := nc.Request("$JS.API.STREAM.INFO.CHAT", nil, time.Second)
		return err == nil && m.Header.Get("Nats-Service-Error-Code") == "" && len(m.Data) > 0 && !hasAPIError(m)
	})

	f := alice.next("history")
	if f["reset"] != true || f["epoch"] == nil || int64(f["epoch"].(float64)) == oldEpoch {
		t.Fatalf("after the stream started over: %v, want a reset with a new epoch", f)
	}
	// Sending works again, and the room delivers the new stream's messages.
	alice.say("after the reset", "c-1")
	if m := alice.next("message"); m["client_id"] != "c-1" || seqOf(m) >= oldLast {
		t.Fatalf("got %v, want c-1 with a seq of the new stream", m)
	}
	publishN(t, nc, "lobby", 100, 5)
	for i := range 5 {
		if m := alice.next("message"); m["text"] != fmt.Sprintf("m%d", 100+i) {
			t.Fatalf("message %d: got %v", i, m)
		}
	}

	// A browser that was away resumes with the old stream's seq and epoch.
	bob := dial(t, base, "/ws/chat/lobby/bob?since="+strconv.FormatUint(oldLast, 10)+"&epoch="+strconv.FormatInt(oldEpoch, 10))
	r := bob.next("history")
	if r["reset"] != true || len(texts(r)) != 6 {
		t.Fatalf("resume across the reset: reset %v, %d messages %v; want a reset with the 6 new messages", r["reset"], len(texts(r)), texts(r))
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
	alice := dial(t, base, "/ws/chat/lobby/alice")
	alice.next("history")
	publishN(t, nc, "lobby", 0, 1)
	last := seqOf(alice.next("message"))

	forged := nats.NewMsg(chat.FeedSubject("lobby"))
	forged.Header.Set(jetstream.SequenceHeader, "999999999")
	forged.Header.Set(jetstream.LastSequenceHeader, strconv.FormatUint(last, 10))
	forged.Data = []byte(`{"user":"mallory","text":"forged"}`)
	if err := nc.PublishMsg(forged); err != nil {
		t.Fatal(err)
	}
	publishN(t, nc, "lobby", 1, 3)
	for i := range 3 {
		m := alice.next("message")
		if m["text"] != fmt.Sprintf("m%d", 1+i) {
			t.Fatalf("got %v, want m%d (the forged message must not arrive)", m, 1+i)
		}
	}
	if got := metric(t, base, "chat_gateway_forged_feed_total"); got != 1 {
		t.Errorf("forged feed messages counted: %v, want 1", got)
	}
	// A new joiner gets the real messages.
	bob := dial(t, base, "/ws/chat/lobby/bob")
	if got := texts(bob.next("history")); len(got) != 4 || got[3] != "m3" {
		t.Errorf("joiner got %v", got)
	}
}

func jsonUnmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }
