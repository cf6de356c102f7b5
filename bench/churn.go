package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/natschat/chat/shared/chat"
)

// churn is S9: a room with stable members while others join and leave.
// The gateway sends a member the whole online list once, then deltas (who
// joined, who left): what a stable member receives per second should
// follow the churn, not the size of the room. One row per room size.
type churn struct {
	sizes    []int         // stable members, one room (and row) per size
	rate     float64       // joins plus leaves per second, all churners together
	dwell    time.Duration // how long a churner stays
	duration time.Duration // how long churners keep joining
	// settle bounds the wait for every roster to hold the stable
	// members, before and after the churn.
	settle time.Duration
}

// maxChurnRatio is S9's target: a stable member of the largest room
// receives at most this many times the presence bytes per second of one
// in the smallest.
const maxChurnRatio = 1.25

// runChurn runs one room per size and compares their figures with the
// first's.
func (b *bench) runChurn(ctx context.Context, c churn) []*result {
	var rows []*result
	for i, n := range c.sizes {
		if ctx.Err() != nil {
			break
		}
		rows = append(rows, b.churnRoom(ctx, i, n, c))
	}
	if len(rows) == 0 {
		return rows
	}
	base := rows[0]
	for _, r := range rows[1:] {
		if base.PresencePerMember <= 0 || r.PresencePerMember <= 0 {
			continue
		}
		ratio := r.PresencePerMember / base.PresencePerMember
		r.Figure += fmt.Sprintf(", x%.2f of n=%d", ratio, c.sizes[0])
		r.Target = verdict(ratio <= maxChurnRatio, fmt.Sprintf("<=%gx n=%d", maxChurnRatio, c.sizes[0]))
	}
	return rows
}

// churnRoom connects n stable members, waits until each has everyone in
// its roster, then lets churners join at rate/2 per second for
// c.duration, each leaving c.dwell after it joined: rate x duration joins
// and leaves. It counts the presence bytes the stable members receive from
// the first churner's join until every roster is back to the stable
// members, per member and per second of the churn's duration, and checks
// that each roster is exactly them.
func (b *bench) churnRoom(ctx context.Context, row, n int, c churn) *result {
	r := &result{Name: fmt.Sprintf("S9/%d", n)}
	b.plans++
	rs := &roomState{name: fmt.Sprintf("%s-%dS9-%d", b.tag, b.plans, row)}
	// Names of one width per row: every churner's name costs the same
	// bytes in a delta whatever the room's size.
	for i := range n {
		m := newMember(rs, fmt.Sprintf("s%d-%d", row, i), nil)
		m.presence = new(presenceTally)
		rs.members = append(rs.members, m)
	}
	stable := rs.members
	joins := int(c.rate / 2 * c.duration.Seconds())
	b.log.Info("scenario starting", "scenario", r.Name, "stable", n, "churners", joins, "rate", c.rate, "dwell", c.dwell)
	ok := b.connect(ctx, stable, r)
	defer closeAll(stable)
	var want []string
	for _, m := range stable {
		if ok[m] {
			want = append(want, m.user)
		}
	}
	slices.Sort(want)
	if !waitRosters(ctx, stable, ok, len(want), c.settle) {
		r.problem("the stable members' rosters did not reach the %d of them within %v", len(want), c.settle)
	}
	for _, m := range stable {
		m.presence.bytes.Store(0)
		m.presence.frames.Store(0)
	}

	u := startUsage(b.serverPID)
	start := time.Now()
	gap := time.Duration(2 / c.rate * float64(time.Second))
	churners := make([]*member, 0, joins)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		fails int
		first error
	)
	for i := range joins {
		due := start.Add(time.Duration(i) * gap)
		sleep(ctx, time.Until(due))
		if ctx.Err() != nil {
			break
		}
		m := newMember(rs, fmt.Sprintf("c%d-%04d", row, i), nil)
		m.presence = new(presenceTally)
		churners = append(churners, m)
		wg.Go(func() {
			if err := b.join(ctx, m); err != nil {
				mu.Lock()
				fails++
				if first == nil {
					first = err
				}
				mu.Unlock()
				return
			}
			sleep(ctx, time.Until(due.Add(c.dwell)))
			m.conn.CloseNow()
		})
	}
	lastJoin := time.Since(start)
	wg.Wait()
	defer closeAll(churners)
	if !waitRosters(ctx, stable, ok, len(want), c.settle) {
		r.problem("the stable members' rosters were not back to the %d of them %v after the last churner left", len(want), c.settle)
	}
	window := time.Since(start)
	u.stop(r)
	r.Dropped = dropped(stable, ok, r)
	closeAll(stable)
	closeAll(churners)

	r.Conns = len(stable) + len(churners)
	r.ConnectErrs += fails
	if first != nil {
		r.problem("%d of %d churners did not join; first: %v", fails, len(churners), first)
	}
	r.Sent = 2 * int64(len(churners)-fails)
	r.PerSec = float64(r.Sent) / c.duration.Seconds()
	if lastJoin > c.duration+c.duration/10 {
		r.note("the churners fell behind: the last joined %v after the first, not within %v", lastJoin.Round(time.Millisecond), c.duration)
	}

	var bytes, frames, firstBytes int64
	var wrong, bad, lists int
	var firstWrong string
	for _, m := range stable {
		if !ok[m] {
			continue
		}
		p := m.presence
		bytes += p.bytes.Load()
		frames += p.frames.Load()
		firstBytes += int64(p.firstBytes)
		bad += p.bad
		lists += p.lists
		if got := p.roster.Users(); !slices.Equal(got, want) {
			wrong++
			if firstWrong == "" {
				firstWrong = fmt.Sprintf("%s has %s", m.user, rosterDiff(got, want))
			}
		}
	}
	if wrong > 0 {
		r.problem("%d of %d stable members' rosters are not the stable members after the churn; first: %s", wrong, len(want), firstWrong)
	}
	if bad > 0 {
		r.problem("%d presence frames did not decode or were a delta before the whole list", bad)
	}
	if lists > 0 {
		r.problem("%d whole lists after the first: every later presence frame should be a delta", lists)
	}
	if len(want) == 0 {
		r.problem("no stable member joined")
		return r
	}
	members := float64(len(want))
	r.PresencePerMember = float64(bytes) / members / c.duration.Seconds()
	r.Figure = fmt.Sprintf("%.0f B/member/s", r.PresencePerMember)
	var churnerFirst int64
	for _, m := range churners {
		churnerFirst += int64(m.presence.firstBytes)
	}
	r.note("%d churners joined over %v, each for %v (%.0f joins+leaves/s, deliv/s column); a stable member received %.1f presence deltas and %.0f B per second of that (figure), counted until every roster was back to the %d stable members, %v after the first join",
		len(churners)-fails, c.duration, c.dwell, r.PerSec, float64(frames)/members/c.duration.Seconds(), r.PresencePerMember, len(want), window.Round(time.Millisecond))
	r.note("left out of the figure, the first presence frame (the whole list): %.0f B on average for a stable member, %.0f B for a churner",
		float64(firstBytes)/members, float64(churnerFirst)/float64(max(1, len(churners))))
	return r
}

// waitRosters waits until the roster of every member that joined holds
// size users, or timeout passes.
func waitRosters(ctx context.Context, members []*member, ok map[*member]bool, size int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		settled := true
		for _, m := range members {
			if ok[m] && m.presence.size.Load() != int64(size) {
				settled = false
				break
			}
		}
		if settled {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		sleep(ctx, 20*time.Millisecond)
	}
}

// rosterDiff says how the sorted list got differs from want.
func rosterDiff(got, want []string) string {
	var extra, missing []string
	for _, u := range got {
		if _, found := slices.BinarySearch(want, u); !found {
			extra = append(extra, u)
		}
	}
	for _, u := range want {
		if _, found := slices.BinarySearch(got, u); !found {
			missing = append(missing, u)
		}
	}
	return fmt.Sprintf("%d users: extra %s, missing %s", len(got), shortList(extra), shortList(missing))
}

func shortList(users []string) string {
	if len(users) > 5 {
		return fmt.Sprintf("[%s ...] (%d)", strings.Join(users[:5], " "), len(users))
	}
	return "[" + strings.Join(users, " ") + "]"
}

// presenceTally is what one member makes of its presence frames: the
// first (the whole list) and the deltas after it, applied to a roster.
// The read loop owns it; the atomics are read while it runs, the rest
// once the read loop ended.
type presenceTally struct {
	// bytes and frames count the frames after the first; the scenario
	// resets them when the churn starts.
	bytes, frames atomic.Int64
	// size is the roster's length after the last frame, so the scenario
	// sees every roster settle.
	size atomic.Int64

	firstBytes int // the first frame, the whole list
	lists      int // whole lists after the first
	bad        int // frames that did not decode, or a delta before the list
	roster     chat.Roster
}

func (t *presenceTally) add(line []byte) {
	var f chat.ServerFrame
	if err := json.Unmarshal(line, &f); err != nil {
		t.bad++
		return
	}
	switch {
	case t.firstBytes == 0 && f.Delta:
		t.bad++ // nothing to apply it to
		return
	case t.firstBytes == 0:
		t.firstBytes = len(line)
	default:
		if !f.Delta {
			t.lists++
		}
		t.bytes.Add(int64(len(line)))
		t.frames.Add(1)
	}
	t.roster.Apply(f)
	t.size.Store(int64(t.roster.Len()))
}
