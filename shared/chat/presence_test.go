package chat

import (
	"errors"
	"strings"
	"testing"
)

func TestParsePresence(t *testing.T) {
	good := map[string]string{
		"join":             `{"room":"lobby","event":"join","gateway":"gw-1","user":"alice","ts":"2026-11-24T12:00:00Z"}`,
		"leave":            `{"room":"lobby","event":"leave","gateway":"gw-1","user":"alice","ts":"2026-11-24T12:00:00Z"}`,
		"here":             `{"room":"lobby","event":"here","gateway":"gw-1","users":["alice","bob"],"ts":"2026-11-24T12:00:00Z"}`,
		"here with guests": `{"room":"lobby","event":"here","gateway":"gw-1","users":["alice","bob"],"guests":["bob"],"ts":"2026-11-24T12:00:00Z"}`,
		"guest join":       `{"room":"lobby","event":"join","gateway":"gw-1","user":"bob","guest":true,"ts":"2026-11-24T12:00:00Z"}`,
		"sync":             `{"room":"lobby","event":"sync","gateway":"gw-1","ts":"2026-11-24T12:00:00Z"}`,
	}
	for name, in := range good {
		t.Run(name, func(t *testing.T) {
			if _, err := ParsePresence([]byte(in)); err != nil {
				t.Errorf("ParsePresence(%s) = %v", in, err)
			}
		})
	}
	bad := map[string]string{
		"not json":        `hello`,
		"no gateway":      `{"event":"join","user":"alice"}`,
		"gateway spaces":  `{"event":"join","gateway":"g w","user":"alice"}`,
		"unknown event":   `{"event":"boo","gateway":"gw","user":"alice"}`,
		"html user":       `{"event":"join","gateway":"gw","user":"<img src=x onerror=alert(1)>"}`,
		"user with space": `{"event":"join","gateway":"gw","user":"a b"}`,
		"long user":       `{"event":"join","gateway":"gw","user":"` + strings.Repeat("a", 300) + `"}`,
		"bidi and nul":    `{"event":"join","gateway":"gw","user":"\u202eevil\u0000"}`,
		"no user":         `{"event":"leave","gateway":"gw"}`,
		"bad here user":   `{"event":"here","gateway":"gw","users":["alice","a.b"]}`,
		"bad guest":       `{"event":"here","gateway":"gw","users":["alice"],"guests":["<b>"]}`,
		"too many guests": `{"event":"here","gateway":"gw","users":["alice"],"guests":["a","b"]}`,
		"too many":        `{"event":"here","gateway":"gw","users":[` + strings.Repeat(`"u",`, MaxPresenceUsers) + `"u"]}`,
		"users wrong":     `{"event":"here","gateway":"gw","users":"alice"}`,
	}
	for name, in := range bad {
		t.Run(name, func(t *testing.T) {
			if _, err := ParsePresence([]byte(in)); !errors.Is(err, ErrBadMessage) {
				t.Errorf("ParsePresence(%.60s) = %v, want ErrBadMessage", in, err)
			}
		})
	}
}
