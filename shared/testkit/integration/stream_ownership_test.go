package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natschat/chat/shared/config"
	"github.com/natschat/chat/shared/stream"
	"github.com/natschat/chat/shared/testkit/natstest"
)

// logBuffer captures a logger's JSON records.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) logger() *slog.Logger { return slog.New(slog.NewJSONHandler(b, nil)) }

// records are the logged records with the given level.
func (b *logBuffer) records(t *testing.T, level string) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if r["level"] == level {
			out = append(out, r)
		}
	}
	return out
}

func newJS(t *testing.T) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(natstest.Connect(t, natstest.Start(t)))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// drifted is CHAT as someone with the rights to change it left it.
func drifted() jetstream.StreamConfig {
	cfg := stream.ChatConfig(stream.Options{})
	cfg.MaxMsgsPerSubject = 1
	cfg.MaxBytes = 5 << 20 // the owner's tuning: not the others' business
	cfg.RePublish = nil
	cfg.Description = "changed by hand"
	return cfg
}

func streamConfig(t *testing.T, js jetstream.JetStream, name string) jetstream.StreamConfig {
	t.Helper()
	s, err := js.Stream(testContext(t), name)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().Config
}

// TestOwnerUpdatesDrift: Ensure, the owner's call, brings a changed stream
// back to the definition.
func TestOwnerUpdatesDrift(t *testing.T) {
	js := newJS(t)
	ctx := testContext(t)
	if _, err := js.CreateStream(ctx, drifted()); err != nil {
		t.Fatal(err)
	}
	want := stream.ChatConfig(stream.Options{ChatMaxBytes: 64 << 20})
	if _, err := stream.Ensure(ctx, js, want); err != nil {
		t.Fatal(err)
	}
	got := streamConfig(t, js, stream.Chat)
	if got.MaxMsgsPerSubject != want.MaxMsgsPerSubject || got.MaxBytes != want.MaxBytes || got.RePublish == nil || got.Description != want.Description {
		t.Errorf("after Ensure: per subject %d, max bytes %d, republish %v, description %q; want the definition %d, %d, %v, %q",
			got.MaxMsgsPerSubject, got.MaxBytes, got.RePublish, got.Description,
			want.MaxMsgsPerSubject, want.MaxBytes, want.RePublish, want.Description)
	}
}

// TestUseCreatesMissing: a service that is not the owner creates a missing
// stream with the definition, and an identical stream draws no warning.
func TestUseCreatesMissing(t *testing.T) {
	js := newJS(t)
	var logs logBuffer
	for _, def := range []jetstream.StreamConfig{stream.ChatConfig(stream.Options{}), stream.SMSConfig(stream.Options{})} {
		if _, err := stream.Use(testContext(t), js, def, logs.logger()); err != nil {
			t.Fatal(err)
		}
		got := streamConfig(t, js, def.Name)
		if got.Retention != def.Retention || got.MaxMsgSize != def.MaxMsgSize || got.Duplicates != def.Duplicates || strings.Join(got.Subjects, ",") != strings.Join(def.Subjects, ",") {
			t.Errorf("%s created as %+v, want %+v", def.Name, got, def)
		}
		// Again, now that it exists: as the server reports it, it does not
		// differ from the definition.
		if _, err := stream.Use(testContext(t), js, def, logs.logger()); err != nil {
			t.Fatal(err)
		}
	}
	if got := logs.records(t, "INFO"); len(got) != 2 || got[0]["msg"] != "stream created" || got[0]["owner"] != "history" || got[1]["owner"] != "sms-worker" {
		t.Errorf("info records %v, want one stream created for each stream, naming its owner", got)
	}
	if warns := logs.records(t, "WARN"); len(warns) != 0 {
		t.Errorf("warnings for streams as defined: %v", warns)
	}
}

// TestUseLeavesDriftAlone: a service that is not the owner uses a changed
// stream as it is and says which fields differ, except the ones the owner's
// configuration tunes.
func TestUseLeavesDriftAlone(t *testing.T) {
	js := newJS(t)
	ctx := testContext(t)
	if _, err := js.CreateStream(ctx, drifted()); err != nil {
		t.Fatal(err)
	}
	var logs logBuffer
	if _, err := stream.Use(ctx, js, stream.ChatConfig(stream.Options{}), logs.logger()); err != nil {
		t.Fatal(err)
	}
	got := streamConfig(t, js, stream.Chat)
	if got.MaxMsgsPerSubject != 1 || got.RePublish != nil || got.MaxBytes != 5<<20 {
		t.Errorf("Use changed the stream: %+v", got)
	}
	warns := logs.records(t, "WARN")
	if len(warns) != 1 {
		t.Fatalf("got warnings %v, want one", warns)
	}
	fields, _ := warns[0]["fields"].(string)
	for _, want := range []string{"max_msgs_per_subject=1 (want 100000)", "republish=none (want chat.room.*>chat.feed.{{wildcard(1)}})"} {
		if !strings.Contains(fields, want) {
			t.Errorf("warning fields %q lack %q", fields, want)
		}
	}
	if strings.Contains(fields, "max_bytes") || warns[0]["stream"] != "CHAT" || warns[0]["owner"] != "history" {
		t.Errorf("warning %v: want CHAT, its owner, and not the owner's max_bytes", warns[0])
	}
}

// TestChatBoundedInBytes: CHAT keeps at most its byte bound, discarding the
// oldest messages, and publishing goes on.
func TestChatBoundedInBytes(t *testing.T) {
	if got := stream.ChatConfig(stream.Options{}).MaxBytes; got != stream.DefaultChatMaxBytes {
		t.Errorf("default max bytes %d, want %d", got, stream.DefaultChatMaxBytes)
	}
	js := newJS(t)
	ctx := testContext(t)
	const bound = 256 << 10
	s, err := stream.Ensure(ctx, js, stream.ChatConfig(stream.Options{ChatMaxBytes: bound}))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Repeat("x", 8<<10)
	const n = 100
	for i := range n {
		if _, err := js.Publish(ctx, "chat.room.lobby", []byte(`{"text":"`+text+`"}`)); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Bytes > bound || info.State.LastSeq != n || info.State.FirstSeq == 1 {
		t.Errorf("state %+v: want at most %d bytes, the last message kept and the first ones discarded", info.State, bound)
	}
}

func TestSettingsCheck(t *testing.T) {
	for replicas, valid := range map[int]bool{0: false, 1: true, 3: true, 5: true, 6: false} {
		c := config.NewChecker("SVC")
		stream.Settings{Replicas: replicas}.Check(c)
		if err := c.Err(); (err == nil) != valid {
			t.Errorf("%d replicas: got %v, want valid %v", replicas, err, valid)
		} else if err != nil && !strings.Contains(err.Error(), "SVC_STREAM_REPLICAS (or STREAM_REPLICAS) must be from 1 to 5") {
			t.Errorf("%d replicas: message %q", replicas, err)
		}
	}
}
