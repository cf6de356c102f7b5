package chat

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestValidateTextRule is the text rule of the design (Trust and limits):
// 1 to 4,000 characters, no control characters but newline and tab, and
// something visible.
func TestValidateTextRule(t *testing.T) {
	valid := map[string]string{
		"word":                       "hello",
		"newline and tab":            "line 1\n\tline 2",
		"longest":                    strings.Repeat("é", MaxTextLen),
		"emoji":                      "👍🏽 ok",
		"right to left":              "مرحبا",
		"zero-width inside a word":   "a\u200bb",
		"joiner inside an emoji":     "👩\u200d💻",
		"direction mark beside text": "\u202eevil",
		"padded":                     "  x  ",
	}
	for name, text := range valid {
		t.Run("valid/"+name, func(t *testing.T) {
			if err := ValidateText(text); err != nil {
				t.Errorf("ValidateText(%+q) = %v, want nil", text, err)
			}
		})
	}

	invalid := []struct {
		name, text string
		mention    string // what the error message must say
	}{
		{"empty", "", "empty"},
		{"spaces", "   ", "visible"},
		{"newlines and tabs only", "\n\t\n", "visible"},
		{"no-break space", "\u00a0", "visible"},
		{"ideographic space", "\u3000", "visible"},
		{"NUL", "\x00", "U+0000"},
		{"NUL inside", "a\x00b", "U+0000"},
		{"ANSI escape", "\x1b[31mred", "U+001B"},
		{"carriage return", "a\rb", "U+000D"},
		{"bell", "ding\a", "U+0007"},
		{"DEL", "a\x7f", "U+007F"},
		{"C1 next line", "a\u0085b", "U+0085"},
		{"C1 CSI", "\u009b31m", "U+009B"},
		{"zero-width space", "\u200b", "visible"},
		{"zero-width run", "\u200b\u200c\u200d\u2060\ufeff", "visible"},
		{"bidi overrides", "\u202a\u202b\u202c\u202d\u202e", "visible"},
		{"bidi isolates", "\u2066\u2067\u2068\u2069", "visible"},
		{"direction marks", "\u200e\u200f\u061c", "visible"},
		{"mixed invisible", " \u200b\t\u202e\n\ufeff ", "visible"},
		{"not UTF-8", "a\xffb", "UTF-8"},
	}
	for _, tt := range invalid {
		t.Run("invalid/"+tt.name, func(t *testing.T) {
			err := ValidateText(tt.text)
			if !errors.Is(err, ErrBadMessage) {
				t.Fatalf("ValidateText(%+q) = %v, want ErrBadMessage", tt.text, err)
			}
			if errors.Is(err, ErrTextTooLong) {
				t.Errorf("ValidateText(%+q) = %v, want an error other than too long", tt.text, err)
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("ValidateText(%+q) = %q, want it to mention %q", tt.text, err, tt.mention)
			}
		})
	}

	for name, text := range map[string]string{
		"one too many":               strings.Repeat("é", MaxTextLen+1),
		"too long with a control":    strings.Repeat("x", MaxTextLen) + "\x00",
		"too long and only spaces":   strings.Repeat(" ", MaxTextLen+1),
		"4,001 four-byte characters": strings.Repeat("𝄞", MaxTextLen+1),
	} {
		t.Run("too long/"+name, func(t *testing.T) {
			if err := ValidateText(text); !errors.Is(err, ErrTextTooLong) {
				t.Errorf("ValidateText(%d runes) = %v, want ErrTextTooLong", len([]rune(text)), err)
			}
		})
	}
}

// TestParseMessageRefusesBadText: the text rule applies to what NATS
// publishers send, and a text is never altered on its way in.
func TestParseMessageRefusesBadText(t *testing.T) {
	for _, in := range []string{
		`{"text":"\u0000"}`,
		`{"text":"a\u0000b"}`,
		`{"text":"\u001b[2J"}`,
		`{"text":"\u200b\u200b"}`,
		`{"text":"\u202e"}`,
		`{"text":"\r\n"}`,
		"{\"text\":\"caf\xe9\"}", // Latin-1, not UTF-8: JSON would store U+FFFD
	} {
		if m, err := ParseMessage([]byte(in), arrival); !errors.Is(err, ErrBadMessage) {
			t.Errorf("ParseMessage(%s) = %+q, %v, want ErrBadMessage", in, m.Text, err)
		}
	}
	m, err := ParseMessage([]byte(`{"text":"a\u200bb\t\u202ec"}`), arrival)
	if err != nil || m.Text != "a\u200bb\t\u202ec" {
		t.Errorf("got %+q, %v, want the text exactly as sent", m.Text, err)
	}
}

// TestParseMessageTimestamps: a publisher's ts is kept unless it is absurd
// (before 2000, or more than MaxClockSkew after arrival), when the arrival
// time replaces it.
func TestParseMessageTimestamps(t *testing.T) {
	tests := []struct {
		name string
		ts   string
		want time.Time
	}{
		{"none", ``, arrival},
		{"past", `2026-01-02T03:04:05Z`, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
		{"slightly ahead", arrival.Add(4 * time.Minute).Format(time.RFC3339Nano), arrival.Add(4 * time.Minute)},
		{"at the skew limit", arrival.Add(MaxClockSkew).Format(time.RFC3339Nano), arrival.Add(MaxClockSkew)},
		{"past the skew limit", arrival.Add(MaxClockSkew + time.Second).Format(time.RFC3339Nano), arrival},
		{"year 9999", `9999-12-31T23:59:59Z`, arrival},
		{"first instant of 2000", `2000-01-01T00:00:00Z`, time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"1999", `1999-12-31T23:59:59Z`, arrival},
		{"year 1", `0001-01-01T00:00:01Z`, arrival},
		{"unix zero", `1970-01-01T00:00:00Z`, arrival},
		{"zone offset", `2026-06-01T12:00:00+02:00`, time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)},
		{"offset hides the future", arrival.Add(time.Hour).In(time.FixedZone("west", -3*3600)).Format(time.RFC3339), arrival},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := `{"text":"x"}`
			if tt.ts != "" {
				in = `{"text":"x","ts":"` + tt.ts + `"}`
			}
			m, err := ParseMessage([]byte(in), arrival)
			if err != nil {
				t.Fatal(err)
			}
			if !m.TS.Equal(tt.want) || m.TS.Location() != time.UTC {
				t.Errorf("ts %q: got %v, want %v in UTC", tt.ts, m.TS, tt.want)
			}
		})
	}
}
