package bot

import (
	"errors"
	"strings"
	"testing"
	"unicode"

	"github.com/natschat/chat/shared/chat"
)

// FuzzParseRequest: any payload on bot.cmd is either a well-formed command
// (valid names, a lower-case command name, words without spaces) or an
// invalid refusal with a bounded message. The seed corpus
// (testdata/fuzz/FuzzParseRequest) runs as a normal test.
func FuzzParseRequest(f *testing.F) {
	for _, seed := range []string{
		`{"id":"1","room":"lobby","user":"alice","text":"/now"}`,
		`{"id":"2","room":"lobby","user":"alice","text":"/sms bob"}`,
		`{"room":"lobby","user":"alice","text":"  /HeLp  "}`,
		`{"room":"lobby","user":"alice","text":"/sms\u0000bob"}`,
		`{"room":"lobby","user":"alice","text":"/\u202enow"}`,
		`{"room":"lobby","user":"alice","text":"/sms\u00a0bob"}`,
		`{"room":"a.b","user":"alice","text":"/now"}`,
		`{"room":"lobby","user":"","text":"/now"}`,
		`{"id":1}`, `/now`, `null`, `[]`, ``,
	} {
		f.Add([]byte(seed))
	}
	b := newBot(nil, nil)
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := parseRequest(data)
		if err != nil {
			var r *refusal
			if !errors.As(err, &r) || r.code != chat.CodeInvalid || len(r.msg) > 300 {
				t.Fatalf("got %v, want a short invalid refusal", err)
			}
			return
		}
		if chat.ValidateName("room", req.Room) != nil || chat.ValidateName("user", req.User) != nil || chat.ValidateText(req.Text) != nil {
			t.Errorf("accepted %+v", req.BotRequest)
		}
		if req.name == "" || req.name != strings.ToLower(req.name) {
			t.Errorf("command name %q", req.name)
		}
		for _, w := range append([]string{req.name}, req.args...) {
			if w == "" || strings.ContainsFunc(w, unicode.IsSpace) {
				t.Errorf("word %q of %q", w, req.Text)
			}
		}
		// Unknown commands and wrong arities are refused without running
		// anything, with a bounded message.
		if cmd, ok := b.byName[req.name]; !ok || len(req.args) != len(cmd.args) {
			_, err := b.run(t.Context(), &req)
			var r *refusal
			if !errors.As(err, &r) || len(r.msg) > 300 {
				t.Errorf("%q: got %v, want a short refusal", req.Text, err)
			}
		}
	})
}
