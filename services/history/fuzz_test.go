package history

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzHistoryRequest: any payload on history.room.<room> decodes to a
// bounded query or to an error that does not echo the payload. The seed
// corpus (testdata/fuzz/FuzzHistoryRequest) runs as a normal test.
func FuzzHistoryRequest(f *testing.F) {
	for _, seed := range []string{
		``, `{}`, `{"limit":5}`, `{"before":120,"limit":20}`, `{"after":120}`, `{"epoch":1795521600000000}`,
		`{"limit":-1}`, `{"before":-5}`, `{"after":"x"}`, `[1]`, `garbage`, `{"limit":100000}`,
		`{"after":18446744073709551615}`, `{"limit":1e3}`, `{"epoch":-1}`, "\x00", `null`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := parseHistoryRequest(data)
		if err != nil {
			msg := err.Error()
			if !strings.HasPrefix(msg, "invalid request: ") || len(msg) > 200 {
				t.Errorf("error %q: want a short invalid request message", msg)
			}
			return
		}
		if req.Limit < 1 || req.Limit > maxHistoryLimit || req.Epoch < 0 {
			t.Errorf("accepted %+v", req)
		}
		// The decoded request, sent again, is the same request.
		b, _ := json.Marshal(req)
		again, err := parseHistoryRequest(b)
		if err != nil || again != req {
			t.Errorf("%s decodes to %+v, %v; want %+v", b, again, err, req)
		}
	})
}
