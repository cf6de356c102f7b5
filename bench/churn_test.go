package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// tinyChurn is S9 in a second per room: 4 and 12 stable members, 10
// churners each staying longer than the gateway gathers presence changes
// (200 ms), so the stable members see them join and leave.
var tinyChurn = churn{sizes: []int{4, 12}, rate: 20, dwell: 400 * time.Millisecond, duration: time.Second, settle: 3 * time.Second}

func TestChurnRosters(t *testing.T) {
	b := newTestBench(t, startGateway(t))
	rows := b.runChurn(context.Background(), tinyChurn)
	if len(rows) != len(tinyChurn.sizes) {
		t.Fatalf("got %d rows, want one per size %v", len(rows), tinyChurn.sizes)
	}
	for i, r := range rows {
		if r.failed() {
			t.Fatalf("%s: problems: %v", r.Name, r.Problems)
		}
		if want := int64(2 * 10); r.Sent != want {
			t.Errorf("%s: %d joins and leaves, want %d", r.Name, r.Sent, want)
		}
		if r.PresencePerMember <= 0 || !strings.Contains(r.Figure, "B/member/s") {
			t.Errorf("%s: %.1f B/member/s, figure %q; want the deltas counted", r.Name, r.PresencePerMember, r.Figure)
		}
		if i > 0 && !strings.Contains(r.Target, "n=4") {
			t.Errorf("%s: target %q, want a comparison with n=4", r.Name, r.Target)
		}
	}
}

// TestChurnWrongDeltasFail: a relay that drops every presence delta with a
// leave in it leaves churners in the stable members' rosters, and the
// scenario says so.
func TestChurnWrongDeltasFail(t *testing.T) {
	proxy := startFilteringProxy(t, startGateway(t), func() func([]byte) bool {
		return func(f []byte) bool {
			return bytes.Equal(frameType(f), presenceFrame) && bytes.Contains(f, []byte(`"left":`))
		}
	})
	b := newTestBench(t, proxy)
	c := tinyChurn
	c.sizes, c.settle = []int{4}, time.Second
	r := b.runChurn(context.Background(), c)[0]
	if !r.failed() || !strings.Contains(strings.Join(r.Problems, "\n"), "rosters are not the stable members") {
		t.Fatalf("got problems %q, want the wrong rosters reported", r.Problems)
	}
}
