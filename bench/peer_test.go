package main

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
)

// TestCentrifugoCommands: what the tool sends Centrifugo is its JSON
// protocol: connect and subscribe on two lines of one message, and a
// publish whose data carries the bench text.
func TestCentrifugoCommands(t *testing.T) {
	type command struct {
		ID        uint32    `json:"id"`
		Connect   *struct{} `json:"connect"`
		Subscribe *struct {
			Channel string `json:"channel"`
		} `json:"subscribe"`
		Publish *struct {
			Channel string `json:"channel"`
			Data    struct {
				Text string `json:"text"`
			} `json:"data"`
		} `json:"publish"`
	}
	var p centrifugoPeer
	lines := strings.Split(string(p.hello("b1-1S1-0")), "\n")
	if len(lines) != 2 {
		t.Fatalf("hello has %d lines, want connect and subscribe: %q", len(lines), lines)
	}
	var connect, subscribe command
	if err := json.Unmarshal([]byte(lines[0]), &connect); err != nil || connect.ID != connectID || connect.Connect == nil {
		t.Errorf("first line %s: got %+v, %v; want a connect with id %d", lines[0], connect, err, connectID)
	}
	if err := json.Unmarshal([]byte(lines[1]), &subscribe); err != nil || subscribe.ID != subscribeID || subscribe.Subscribe == nil || subscribe.Subscribe.Channel != "bench:b1-1S1-0" {
		t.Errorf("second line %s: got %+v, %v; want a subscribe to bench:b1-1S1-0 with id %d", lines[1], subscribe, err, subscribeID)
	}

	b := p.appendMessage(nil, "b1-1S1-0", 12, 345, 1700000000123456789)
	var pub command
	if err := json.Unmarshal(b, &pub); err != nil {
		t.Fatalf("publish %s: %v", b, err)
	}
	if pub.ID != firstPublishID+345 || pub.Publish == nil || pub.Publish.Channel != "bench:b1-1S1-0" || pub.Publish.Data.Text != "b1|12|345|1700000000123456789" {
		t.Errorf("publish %s decoded as %+v", b, pub)
	}
}

// TestCentrifugoReplies: one WebSocket message of several replies and
// pushes, as Centrifugo writes them, is split into its lines and each is
// told apart; a publication gives back the bench text it carried.
func TestCentrifugoReplies(t *testing.T) {
	var p centrifugoPeer
	published := p.appendMessage(nil, "r", 7, 9, 1700000000000000001)
	// The data as Centrifugo passes it through: the publish's "data" value.
	var cmd struct {
		Publish struct {
			Data json.RawMessage `json:"data"`
		} `json:"publish"`
	}
	if err := json.Unmarshal(published, &cmd); err != nil {
		t.Fatal(err)
	}
	push := `{"push":{"channel":"bench:r","pub":{"data":` + string(cmd.Publish.Data) + `,"offset":4}}}`

	message := strings.Join([]string{
		`{"id":1,"connect":{"client":"c1","version":"6.9.1","ping":25,"pong":true}}`,
		`{"id":2,"subscribe":{}}`,
		push,
		`{"id":12,"publish":{}}`,
		`{}`,
		`{"id":13,"error":{"code":103,"message":"permission denied"}}`,
		`{"push":{"channel":"bench:r","unsubscribe":{"code":2500,"reason":"server unsubscribe"}}}`,
		`{"push":{"disconnect":{"code":3001,"reason":"shutdown"}}}`,
		`{"push":{"channel":"bench:r","pub":{"data":{"text":"hello"}}}}`,
		`{"id":1,"subscribe":{}}`,
	}, "\n") + "\n"
	want := []frameKind{frameOther, frameJoined, frameMessage, frameOther, framePing, frameError, frameError, frameError, frameOther, frameOther}
	var got []frameKind
	eachLine([]byte(message), func(line []byte) {
		kind, rest := p.read(line)
		got = append(got, kind)
		switch kind {
		case frameMessage:
			pub, n, ts, ok := parseText(rest)
			if !ok || pub != 7 || n != 9 || ts != 1700000000000000001 {
				t.Errorf("publication %s: got %d %d %d %v, want 7 9 1700000000000000001", line, pub, n, ts, ok)
			}
		case framePing:
			if !bytes.Equal(rest, []byte(`{}`)) {
				t.Errorf("pong %q, want {}", rest)
			}
		case frameError:
			if !bytes.Equal(rest, line) {
				t.Errorf("error %s came back as %q", line, rest)
			}
		}
	})
	if len(got) != len(want) {
		t.Fatalf("got %d lines %v, want %d %v", len(got), got, len(want), want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d: got kind %d, want %d", i, got[i], want[i])
		}
	}
}

func TestEachLine(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"a", "a"},
		{"a\nb", "a|b"},
		{"a\nb\n", "a|b"},
		{"a\n\nb", "a|b"},
		{"", ""},
	} {
		var got []string
		eachLine([]byte(tt.in), func(l []byte) { got = append(got, string(l)) })
		if strings.Join(got, "|") != tt.want {
			t.Errorf("eachLine(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestCeilingSearch: after the first miss the ramp is bisected until a
// server that holds up to 1,234 msg/s is told from one 10% faster.
func TestCeilingSearch(t *testing.T) {
	c := ceiling{start: 500, factor: 1.5, resolution: 0.05, steps: 12}
	for _, limit := range []float64{1234, 1.1 * 1234, 400, 1e9} {
		var tried []float64
		held, missed := c.search(func(rate float64) bool {
			tried = append(tried, rate)
			return rate <= limit
		})
		switch {
		case limit < c.start:
			if held != 0 || missed != c.start {
				t.Errorf("limit %g: got held %g missed %g, want nothing held and %g missed", limit, held, missed, c.start)
			}
		case limit > 1e8:
			if missed != 0 || len(tried) != c.steps {
				t.Errorf("limit %g: got missed %g after %d steps, want none missed in %d", limit, missed, len(tried), c.steps)
			}
		default:
			if held > limit || missed <= limit || missed/held > 1+c.resolution {
				t.Errorf("limit %g: got held %g, missed %g (tried %v); want them around the limit within %g", limit, held, missed, tried, c.resolution)
			}
			if len(tried) > 10 {
				t.Errorf("limit %g: %d steps %v, want a few", limit, len(tried), tried)
			}
		}
	}
}

func TestSpread(t *testing.T) {
	med, cell := spread([]float64{4.7, 3.1, 9.25})
	if med != 4.7 || cell != "4.70 [3.10-9.25]" {
		t.Errorf("got %v %q", med, cell)
	}
	if _, cell := spread([]float64{3500}); cell != "3500" {
		t.Errorf("one value: got %q", cell)
	}
	if r := ratioCell(6.6, 4.7); r != "1.40" {
		t.Errorf("ratio %q", r)
	}
	if r := ratioCell(1, 0); r != "-" {
		t.Errorf("ratio over 0: %q", r)
	}
	if math.IsNaN(med) {
		t.Fatal("NaN")
	}
}

// TestComparison: one table, a line per figure, both peers and the ratio;
// a failed run's figures are left out, and said so in its status.
func TestComparison(t *testing.T) {
	run := func(peer string, p99 float64, status string) runFile {
		return runFile{Peer: peer, Results: []record{
			{Scenario: "S1", Status: status, Expected: 10, Delivered: 10, P99ms: p99, PerSec: 1000, ToolCPUs: 0.1, ToolBusy: 0.1},
			{Scenario: "S6", Status: map[string]string{"chat": "ok", "centrifugo": "skipped"}[peer]},
		}}
	}
	var out bytes.Buffer
	printComparison(&out, []runFile{
		run("chat", 6, "ok"), run("chat", 7, "ok"), run("chat", 100, "FAIL"),
		run("centrifugo", 4, "ok"), run("centrifugo", 5, "UNTRUSTED"),
	})
	text := out.String()
	for _, want := range []string{"chat (runs: 3)", "centrifugo (runs: 2)", "chat/centrifugo", "ok 2, FAIL 1", "ok 1, UNTRUSTED 1", "skipped"} {
		if !strings.Contains(text, want) {
			t.Errorf("table lacks %q:\n%s", want, text)
		}
	}
	var p99 string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, "p99 ms") {
			p99 = strings.Join(strings.Fields(l), " ")
		}
	}
	// chat: 6 and 7 (the failed run left out); centrifugo: 4 and 5; the
	// lower middle of an even count is the median.
	if p99 != "p99 ms 6.00 [6.00-7.00] 4.00 [4.00-5.00] 1.50 lower" {
		t.Errorf("p99 line %q", p99)
	}
}
