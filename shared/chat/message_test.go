package chat

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var arrival = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func TestParseMessageDefaults(t *testing.T) {
	m, err := ParseMessage([]byte(`{"text":"hi"}`), arrival)
	if err != nil {
		t.Fatal(err)
	}
	want := Message{User: DefaultUser, Text: "hi", Kind: KindUser, TS: arrival}
	if m != want {
		t.Errorf("got %+v, want %+v", m, want)
	}
}

func TestParseMessageKeepsFields(t *testing.T) {
	in := `{"user":"ops","text":"hello","kind":"bot","client_id":"c1","ts":"2026-01-02T03:04:05Z","auth":"guest"}`
	m, err := ParseMessage([]byte(in), arrival)
	if err != nil {
		t.Fatal(err)
	}
	want := Message{User: "ops", Text: "hello", Kind: KindBot, ClientID: "c1", TS: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Auth: AuthGuest}
	if m != want {
		t.Errorf("got %+v, want %+v", m, want)
	}
}

func TestParseMessageRejects(t *testing.T) {
	tests := map[string]string{
		"not json":        `hello`,
		"no text":         `{"user":"ops"}`,
		"blank text":      `{"text":"   "}`,
		"text too long":   `{"text":"` + strings.Repeat("é", MaxTextLen+1) + `"}`,
		"text wrong type": `{"text":42}`,
		"bad user":        `{"text":"x","user":"a.b"}`,
		"bad kind":        `{"text":"x","kind":"admin"}`,
		"bad auth":        `{"text":"x","auth":"admin"}`,
		"bad ts":          `{"text":"x","ts":"yesterday"}`,
		"array":           `["text"]`,
		"long client id":  `{"text":"x","client_id":"` + strings.Repeat("c", MaxClientIDLen+1) + `"}`,
		"huge payload":    `{"text":"x","pad":"` + strings.Repeat("p", MaxPayload) + `"}`,
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := ParseMessage([]byte(in), arrival)
			if !errors.Is(err, ErrBadMessage) {
				t.Errorf("ParseMessage(%.40q) = %v, want ErrBadMessage", in, err)
			}
		})
	}
}

func TestParseMessageAcceptsLongestText(t *testing.T) {
	text := strings.Repeat("é", MaxTextLen)
	b, _ := json.Marshal(Message{Text: text})
	if _, err := ParseMessage(b, arrival); err != nil {
		t.Fatalf("4,000-character message refused: %v", err)
	}
}

// TestGolden pins the JSON shape of every payload: other programs (browsers,
// the nats CLI, scripts) depend on these field names.
func TestGolden(t *testing.T) {
	ts := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	msg := Message{Room: "lobby", Seq: 42, User: "alice", Text: "hi", Kind: KindUser, ClientID: "c-1", TS: ts, Auth: AuthAccount}
	payloads := map[string]any{
		"message.json":             msg,
		"bot_request.json":         BotRequest{ID: "r1", Room: "lobby", User: "alice", Text: "/sms bob", Auth: AuthAccount},
		"bot_reply_ok.json":        BotReply{OK: true, Notice: "SMS to bob queued"},
		"bot_reply_help.json":      BotReply{OK: true, Notice: "/now  the time", Commands: []Command{{Name: "now", Usage: "/now", Help: "the time"}}},
		"bot_reply_error.json":     BotReply{OK: false, Code: "unknown_command", Error: "unknown command /nope: try /help"},
		"sms_task.json":            SMSTask{ID: "t1", Room: "lobby", From: "alice", To: "bob", RequestedAt: ts},
		"history_request.json":     HistoryRequest{Before: 100, Limit: 50},
		"history_response.json":    HistoryResponse{Messages: []Message{msg}, HasMore: true, StoredThrough: 42, Epoch: EpochOf(ts), PreviousEpoch: EpochOf(ts.Add(-time.Hour))},
		"rooms_response.json":      RoomsResponse{Rooms: []Room{{Name: "lobby", Messages: 3, CreatedAt: ts, LastMessageAt: ts}}},
		"presence.json":            Presence{Room: "lobby", User: "alice", Event: PresenceJoin, Gateway: "gw1", TS: ts},
		"presence_here.json":       Presence{Room: "lobby", Users: []string{"alice", "bob"}, Guests: []string{"bob"}, Event: PresenceHere, Gateway: "gw1", TS: ts},
		"presence_join_guest.json": Presence{Room: "lobby", User: "bob", Guest: true, Event: PresenceJoin, Gateway: "gw1", TS: ts},
	}
	for file, v := range goldenFrames() {
		payloads[file] = v
	}
	for file, v := range goldenAuth() {
		payloads[file] = v
	}
	for file, v := range payloads {
		t.Run(file, func(t *testing.T) {
			got, err := json.MarshalIndent(v, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			path := filepath.Join("testdata", file)
			if os.Getenv("UPDATE_GOLDEN") != "" {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden file (UPDATE_GOLDEN=1 writes it): %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s changed:\ngot:\n%s\nwant:\n%s", file, got, want)
			}
		})
	}
}
