package chat

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// goldenFrames is one of every WebSocket frame, pinned in testdata/ by
// TestGolden: browsers and integrations depend on these shapes.
func goldenFrames() map[string]any {
	ts := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	msg := Message{Room: "lobby", Seq: 42, User: "alice", Text: "hi", Kind: KindUser, ClientID: "c-1", TS: ts, Auth: AuthAccount}
	return map[string]any{
		"frame_in_message.json":    ClientFrame{Type: FrameMessage, Text: "hi", ClientID: "c-1"},
		"frame_in_history.json":    ClientFrame{Type: FrameHistory, Before: 42, Limit: 50},
		"frame_message.json":       MessageFrame{Type: FrameMessage, Message: msg},
		"frame_history.json":       HistoryFrame{Type: FrameHistory, Messages: []Message{msg}, HasMore: true, Epoch: 1764000000000000},
		"frame_history_reset.json": HistoryFrame{Type: FrameHistory, Messages: []Message{}, Reset: true, Epoch: 1764001800000000},
		"frame_error.json":         ErrorFrame{Type: FrameError, Code: CodeTooLong, Message: "message text is longer than 4000 characters", ClientID: "c-1"},
		"frame_notice.json":        NoticeFrame{Type: FrameNotice, Text: "SMS to bob queued", ClientID: "c-2"},
		"frame_notice_help.json":   NoticeFrame{Type: FrameNotice, Text: "/now  the time", Commands: []Command{{Name: "now", Usage: "/now", Help: "the time"}}},
		"frame_presence.json":      PresenceFrame{Type: FramePresence, Users: []string{"alice", "bob"}, Guests: []string{"bob"}},
		"frame_presence_delta.json": PresenceFrame{Type: FramePresence, Delta: true, Joined: []string{"carol", "dave"}, Left: []string{"bob"},
			Guests: []string{"dave", "erin"}, SignedIn: []string{"frank"}},
		"frame_error_muted.json": ErrorFrame{Type: FrameError, Code: CodeMuted, Message: "you are muted in this room until 12:10 UTC", ClientID: "c-3", Until: ts.Add(10 * time.Minute)},
	}
}

// TestDecodeFramesReadsEveryGoldenFrame decodes the golden file of every
// server frame, one at a time and all batched in one WebSocket message, and
// gets back what it was encoded from.
func TestDecodeFramesReadsEveryGoldenFrame(t *testing.T) {
	var batch [][]byte
	var want []ServerFrame
	for file := range goldenFrames() {
		if strings.HasPrefix(file, "frame_in_") {
			continue
		}
		indented, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		var data bytes.Buffer
		if err := json.Compact(&data, indented); err != nil {
			t.Fatal(err)
		}
		frames, err := DecodeFrames(data.Bytes())
		if err != nil || len(frames) != 1 {
			t.Fatalf("%s: DecodeFrames = %v, %v", file, frames, err)
		}
		// Encoded again, the decoded frame has every field of the golden
		// file: nothing was lost in decoding.
		var golden, again map[string]any
		reencoded, _ := json.Marshal(frames[0])
		json.Unmarshal(data.Bytes(), &golden)
		json.Unmarshal(reencoded, &again)
		for k, v := range golden {
			if !reflect.DeepEqual(again[k], v) {
				t.Errorf("%s: field %q decoded as %v, want %v", file, k, again[k], v)
			}
		}
		batch = append(batch, data.Bytes())
		want = append(want, frames[0])
	}
	got, err := DecodeFrames(bytes.Join(batch, []byte("\n")))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("batched frames decode differently:\ngot  %+v\nwant %+v", got, want)
	}
}

func TestDecodeFramesFields(t *testing.T) {
	frames, err := DecodeFrames([]byte(`{"type":"error","code":"too_long","message":"long","client_id":"c"}` + "\n" +
		`{"type":"presence","users":["a","b"],"left":["c"]}` + "\n" +
		`{"type":"message","room":"r","seq":7,"user":"u","text":"t","kind":"user","ts":"2026-11-24T12:00:00Z"}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(frames) != 3 {
		t.Fatalf("got %d frames, want 3", len(frames))
	}
	if f := frames[0]; f.Code != CodeTooLong || f.Error != "long" || f.ClientID != "c" {
		t.Errorf("error frame decoded as %+v", f)
	}
	if f := frames[1]; !reflect.DeepEqual(f.Users, []string{"a", "b"}) || !reflect.DeepEqual(f.Left, []string{"c"}) {
		t.Errorf("presence frame decoded as %+v", f)
	}
	if f := frames[2]; f.Seq != 7 || f.Room != "r" || f.Text != "t" {
		t.Errorf("message frame decoded as %+v", f)
	}
}

func TestDecodeFramesRefusesGarbage(t *testing.T) {
	for _, in := range []string{`nope`, `{"seq":1}`, `{"type":"message"}` + "\n" + `[1]`} {
		if _, err := DecodeFrames([]byte(in)); err == nil {
			t.Errorf("DecodeFrames(%q) succeeded", in)
		}
	}
}

func TestParseClientFrame(t *testing.T) {
	good := map[string]ClientFrame{
		`{"type":"message","text":"hi","client_id":"c1"}`: {Type: FrameMessage, Text: "hi", ClientID: "c1"},
		`{"type":"message","text":"hi","extra":1}`:        {Type: FrameMessage, Text: "hi"},
		`{"type":"history","before":9,"limit":5}`:         {Type: FrameHistory, Before: 9, Limit: 5},
		`{"type":"history"}`:                              {Type: FrameHistory},
	}
	for in, want := range good {
		got, err := ParseClientFrame([]byte(in))
		if err != nil || got != want {
			t.Errorf("ParseClientFrame(%s) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	bad := map[string]Code{
		`nope`: CodeInvalid,
		`{"type":"message","text":"` + strings.Repeat("é", MaxTextLen+1) + `"}`: CodeTooLong,
		`{"type":"message","text":"   "}`:                                       CodeInvalid,
		`{"type":"message"}`:                                                    CodeInvalid,
		`{"type":"message","text":42}`:                                          CodeInvalid,
		`{"type":"history","limit":-1}`:                                         CodeInvalid,
		`{"type":"dance"}`:                                                      CodeInvalid,
		`{"text":"no type"}`:                                                    CodeInvalid,
		`{"type":"message","text":"x","client_id":"` + strings.Repeat("c", 129) + `"}`: CodeInvalid,
	}
	for in, code := range bad {
		_, err := ParseClientFrame([]byte(in))
		var fe *Refusal
		if !errors.As(err, &fe) || fe.Code != code || fe.Message == "" {
			t.Errorf("ParseClientFrame(%.50s) = %v, want a %s Refusal", in, err, code)
		}
	}
}

// FuzzParseClientFrame: any bytes give a frame or a FrameError, never a
// panic; an accepted frame encodes to one that is accepted the same.
func FuzzParseClientFrame(f *testing.F) {
	for _, seed := range []string{
		`{"type":"message","text":"hi","client_id":"c1"}`, `{"type":"history","before":9,"limit":5}`,
		`{"type":"message","text":"\u0000"}`, `{"type":"message","text":"\u202e"}`, `[]`, `{"type":"message","text":"a\nb"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := ParseClientFrame(data)
		if err != nil {
			var fe *Refusal
			if !errors.As(err, &fe) || fe.Code == "" {
				t.Fatalf("error %v is not a Refusal with a code", err)
			}
			return
		}
		data, _ = json.Marshal(fr)
		again, err := ParseClientFrame(data)
		if err != nil || again != fr {
			t.Fatalf("round trip of %+v: %+v, %v", fr, again, err)
		}
	})
}
