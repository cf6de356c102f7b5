package chat

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// The fuzz targets below run their seed corpus (testdata/fuzz/<name>) as
// ordinary tests; `go test -fuzz FuzzParseMessage` explores further. Each
// checks properties that must hold for any input, not just "no panic".

func FuzzParseMessage(f *testing.F) {
	for _, seed := range []string{
		`{"text":"hi"}`,
		`{"user":"ops","text":"hello","kind":"bot","client_id":"c1","ts":"2026-01-02T03:04:05Z"}`,
		`{"text":"a\u0000b"}`,
		`{"text":"\u202e\u200b"}`,
		`{"text":"x","ts":"9999-12-31T23:59:59Z"}`,
		`{"text":"x","ts":"2000-01-01T00:00:00+23:59"}`,
		`{"text":"x","room":"other","seq":99}`,
		`{"text":"x","user":"a.b"}`,
		`{"text":"x","kind":"system","user":"system"}`,
		`{"text":42}`,
		`[]`,
		`null`,
		``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseMessage(data, arrival)
		if err != nil {
			if !errors.Is(err, ErrBadMessage) {
				t.Fatalf("error %v does not wrap ErrBadMessage", err)
			}
			return
		}
		if err := ValidateText(m.Text); err != nil {
			t.Errorf("accepted text %+q: %v", m.Text, err)
		}
		if err := ValidateName("user", m.User); err != nil {
			t.Errorf("accepted user %q: %v", m.User, err)
		}
		if m.Kind != KindUser && m.Kind != KindBot && m.Kind != KindSystem {
			t.Errorf("accepted kind %q", m.Kind)
		}
		if len(m.ClientID) > MaxClientIDLen {
			t.Errorf("accepted a %d-byte client_id", len(m.ClientID))
		}
		if m.Room != "" || m.Seq != 0 {
			t.Errorf("room %q and seq %d came from the payload", m.Room, m.Seq)
		}
		if m.TS.Location() != time.UTC || m.TS.Before(minTS) || m.TS.After(arrival.Add(MaxClockSkew)) {
			t.Errorf("accepted ts %v", m.TS)
		}
		// Stored exactly as sent: a text without escapes is in the payload
		// byte for byte (invalid UTF-8 would have become U+FFFD).
		var raw struct {
			Text json.RawMessage `json:"text"`
		}
		if json.Unmarshal(data, &raw) == nil && !bytes.Contains(raw.Text, []byte(`\`)) && !bytes.Contains(data, []byte(m.Text)) {
			t.Errorf("text %+q is not in the payload as sent", m.Text)
		}
		// What a service publishes on after parsing parses to the same.
		again, err := ParseMessage(mustMarshal(t, m), arrival)
		if err != nil || again != m {
			t.Errorf("re-encoded message parses to %+v, %v; want %+v", again, err, m)
		}
	})
}

// spaceLike is every character the text rule counts as showing nothing,
// spelled out independently of isInvisible.
const spaceLike = "\u200b\u200c\u200d\u2060\ufeff\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"

func FuzzValidateText(f *testing.F) {
	for _, seed := range []string{
		"hi", "a\nb\tc", " ", "\x00", "a\x00b", "\x1b[31m", "\u0085", "\u200b", "\u202eevil",
		"\u00a0\u3000", "a\xffb", "\ufffd", strings.Repeat("é", MaxTextLen), strings.Repeat(" ", MaxTextLen+1),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		err := ValidateText(text)
		runes := utf8.RuneCountInString(text)
		valid := utf8.ValidString(text)
		switch {
		case err == nil:
			if !valid || runes < 1 || runes > MaxTextLen {
				t.Fatalf("accepted %+q: %d runes, valid UTF-8 %v", text, runes, valid)
			}
			if strings.ContainsFunc(text, func(r rune) bool {
				return r != '\n' && r != '\t' && unicode.Is(unicode.Cc, r)
			}) {
				t.Errorf("accepted %+q with a control character", text)
			}
			if !strings.ContainsFunc(text, func(r rune) bool {
				return !unicode.IsSpace(r) && !strings.ContainsRune(spaceLike, r)
			}) {
				t.Errorf("accepted %+q with nothing visible", text)
			}
			// Stored exactly as sent: JSON, the way it travels, keeps it.
			var back string
			if err := json.Unmarshal(mustMarshal(t, text), &back); err != nil || back != text {
				t.Errorf("%+q comes back from JSON as %+q (%v)", text, back, err)
			}
		case !errors.Is(err, ErrBadMessage):
			t.Fatalf("error %v does not wrap ErrBadMessage", err)
		case errors.Is(err, ErrTextTooLong) != (valid && runes > MaxTextLen):
			t.Errorf("%+q (%d runes, valid UTF-8 %v): got %v", text, runes, valid, err)
		}
	})
}

func FuzzValidateName(f *testing.F) {
	for _, seed := range []string{"lobby", "a-b_c", "", "a.b", "*", ">", "a b", "é", "a\nb", strings.Repeat("x", 65)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := ValidateName("room", name)
		if err != nil {
			if !errors.Is(err, ErrInvalidName) {
				t.Fatalf("error %v does not wrap ErrInvalidName", err)
			}
			// The name is quoted in the message: bounded, one line.
			if msg := err.Error(); len(msg) > 400 || strings.ContainsAny(msg, "\n\r") {
				t.Errorf("error message %q", msg)
			}
			return
		}
		if len(name) < 1 || len(name) > MaxNameLen {
			t.Errorf("accepted a %d-byte name", len(name))
		}
		for _, c := range []byte(name) {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				t.Fatalf("accepted %q with byte %q", name, c)
			}
		}
		// One subject token, and the room comes back out of every subject.
		for _, subject := range []string{RoomSubject(name), FeedSubject(name), HistorySubject(name), PresenceSubject(name)} {
			if got, ok := RoomFromSubject(subject); !ok || got != name || strings.Count(subject, ".") != 2 {
				t.Errorf("subject %q gives room %q, %v", subject, got, ok)
			}
		}
	})
}

func FuzzDecodeFrames(f *testing.F) {
	for _, seed := range []string{
		`{"type":"message","room":"r","seq":7,"user":"u","text":"t","kind":"user","ts":"2026-11-24T12:00:00Z"}`,
		`{"type":"history","messages":[{"seq":1,"text":"a"}],"has_more":true}` + "\n" + `{"type":"presence","users":["a"]}`,
		`{"type":"error","code":"invalid","message":"no"}` + "\n",
		`{"type":"notice","text":"x","commands":[{"name":"now","usage":"/now","help":"h"}]}`,
		"\n\n", `{}`, `{"type":""}`, `null`, `{"type":1}`, `{"type":"message","ts":"yesterday"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		frames, err := DecodeFrames(data)
		if len(frames) > strings.Count(string(data), "\n")+1 {
			t.Fatalf("%d frames from %d lines", len(frames), strings.Count(string(data), "\n")+1)
		}
		for _, fr := range frames {
			if fr.Type == "" {
				t.Errorf("frame without a type: %+v", fr)
			}
		}
		if err != nil {
			return
		}
		// A frame encoded again decodes to one frame of the same type.
		for _, fr := range frames {
			b, err := json.Marshal(fr)
			if err != nil {
				continue // e.g. a ts JSON can hold but Go cannot format back
			}
			again, err := DecodeFrames(b)
			if err != nil || len(again) != 1 || again[0].Type != fr.Type {
				t.Errorf("frame %s decodes again to %+v, %v", b, again, err)
			}
		}
	})
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
