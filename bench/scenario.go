package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// bench runs scenarios against one running stack.
type bench struct {
	wsBase    string // ws://host:port of the gateway
	natsURL   string
	serverPID int    // 0: server figures unknown
	peer      peer   // the server's protocol
	peerName  string // chat or centrifugo
	tag       string // unique per run, in room names, so runs never mix
	plans     int    // plans made: numbers the rooms of each scenario anew
	log       *slog.Logger

	// connRate is the gateway's per-connection frame rate (GATEWAY_RATE) if
	// the user says it is limited; faster publishers are then spread over
	// more connections.
	connRate float64
	window   int // unechoed messages an unpaced publisher may have
	dialers  int // connections opened at once
	// drainMax bounds the wait for the last deliveries after publishing.
	drainMax time.Duration
	// uniform and stampWrite: see pacing.
	uniform, stampWrite bool
	// restart restarts the server, for S7 (nil: S7 is skipped).
	restart restarter
}

// traffic is a scenario where publishers send to rooms whose every member,
// publishers included, receives and checks every message.
type traffic struct {
	rooms    int
	subs     int     // members per room that only listen
	pubs     int     // members per room that also publish
	rate     float64 // messages per second of each publisher; 0: window-bound
	duration time.Duration
}

func (t traffic) String() string {
	rate := "window-bound"
	if t.rate > 0 {
		rate = fmt.Sprintf("%g msg/s each", t.rate)
	}
	return fmt.Sprintf("%d room(s) x (%d listeners + %d publishers at %s) for %v", t.rooms, t.subs, t.pubs, rate, t.duration)
}

// runTraffic connects every member, publishes for t.duration, waits for the
// last deliveries, and tallies what each member received.
func (b *bench) runTraffic(ctx context.Context, name string, t traffic) *result {
	r := &result{Name: name}
	t = b.spreadRate(t, r)
	b.log.Info("scenario starting", "scenario", name, "plan", t.String())
	rooms := b.plan(name, t)
	members := allMembers(rooms)
	r.Conns = len(members)
	ok := b.connect(ctx, members, r)
	defer closeAll(members)

	u := startUsage(b.serverPID)
	start := time.Now()
	pc := pacing{rate: t.rate, window: b.window, until: start.Add(t.duration), uniform: b.uniform, stampWrite: b.stampWrite}
	var wg sync.WaitGroup
	for _, m := range members {
		if m.pub != nil && ok[m] {
			wg.Go(func() { m.pub.run(ctx, m, pc) })
		}
	}
	wg.Wait()
	sendTime := time.Since(start)
	b.drain(ctx, rooms, ok)
	// Before closing: closing thousands of sockets is not the scenario's
	// work, and its CPU would blur the tool's saturation figure.
	u.stop(r)
	r.Dropped = dropped(members, ok, r)
	closeAll(members)

	tally(rooms, ok, r)
	if last := lastDelivery(members, ok); last > start.UnixNano() {
		r.PerSec = float64(r.Delivered) / time.Duration(last-start.UnixNano()).Seconds()
	}
	if t.rate > 0 {
		want := t.rate * float64(t.pubs*t.rooms) * t.duration.Seconds()
		if float64(r.Sent) < 0.95*want {
			r.Behind = true
			r.note("publishers fell behind: sent %d of %.0f messages (%.0f msg/s)", r.Sent, want, float64(r.Sent)/sendTime.Seconds())
		}
	}
	for _, m := range members {
		if m.pub != nil && m.pub.err != nil {
			r.problem("%v", m.pub.err)
			break
		}
	}
	checkCorrectness(r)
	return r
}

// spreadRate splits a publisher faster than the gateway's per-connection
// limit over as many connections as it takes.
func (b *bench) spreadRate(t traffic, r *result) traffic {
	limit := 0.9 * b.connRate
	if limit <= 0 || t.rate <= limit {
		return t
	}
	k := int(math.Ceil(t.rate / limit))
	r.note("%g msg/s per publisher is over the per-connection limit %g: each publisher is spread over %d connections", t.rate, b.connRate, k)
	t.pubs *= k
	t.rate /= float64(k)
	return t
}

// plan builds the rooms and members of t; publishers come first in a room.
// Rooms are new every time: a reused room would replay history and its
// client ids would be taken for resends and de-duplicated. Every member
// has a user name of its own, u<k> with k unique in the plan, as people
// have: no connection shares a name with another (a server may treat the
// connections of one user differently).
func (b *bench) plan(name string, t traffic) []*roomState {
	b.plans++
	rooms := make([]*roomState, t.rooms)
	nextPub, nextUser := 0, 0
	for i := range rooms {
		rs := &roomState{name: fmt.Sprintf("%s-%d%s-%d", b.tag, b.plans, name, i), firstPub: nextPub}
		for j := range t.pubs + t.subs {
			var p *publisher
			if j < t.pubs {
				p = &publisher{id: nextPub, echo: make(chan struct{}, 1)}
				nextPub++
				rs.pubs = append(rs.pubs, p)
			}
			rs.members = append(rs.members, newMember(rs, fmt.Sprintf("u%d", nextUser), p))
			nextUser++
		}
		rooms[i] = rs
	}
	return rooms
}

func allMembers(rooms []*roomState) []*member {
	var all []*member
	for _, r := range rooms {
		all = append(all, r.members...)
	}
	return all
}

// connect opens every member's WebSocket, b.dialers at a time, and waits for
// each to receive its history frame: from then on the gateway delivers it
// every live message. It returns the members that joined.
func (b *bench) connect(ctx context.Context, members []*member, r *result) map[*member]bool {
	var (
		mu    sync.Mutex
		ok    = make(map[*member]bool, len(members))
		first error
		fails atomic.Int64
	)
	sem := make(chan struct{}, b.dialers)
	var wg sync.WaitGroup
	for _, m := range members {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			err := b.join(ctx, m)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				fails.Add(1)
				if first == nil {
					first = err
				}
				return
			}
			ok[m] = true
		})
	}
	wg.Wait()
	r.ConnectErrs = int(fails.Load())
	if first != nil {
		r.problem("%d of %d connections failed; first: %v", r.ConnectErrs, len(members), first)
	}
	return ok
}

func (b *bench) join(ctx context.Context, m *member) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := m.dial(ctx, b.wsBase, b.peer); err != nil {
		return err
	}
	select {
	case <-m.joined:
		return nil
	case <-m.done:
		if m.firstError != "" {
			return fmt.Errorf("refused before joining: %s", m.firstError)
		}
		return fmt.Errorf("connection closed before joining: %w", m.readErr)
	case <-ctx.Done():
		return fmt.Errorf("not joined (no history frame or subscribe reply): %w", ctx.Err())
	}
}

// drain waits until every expected delivery arrived, no delivery arrived for
// a while, or b.drainMax passed.
func (b *bench) drain(ctx context.Context, rooms []*roomState, ok map[*member]bool) {
	var want int64
	for _, rs := range rooms {
		var sent int64
		for _, p := range rs.pubs {
			sent += p.sent.Load()
		}
		for _, m := range rs.members {
			if ok[m] {
				want += sent
			}
		}
	}
	deadline := time.Now().Add(b.drainMax)
	var last int64 = -1
	lastChange := time.Now()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var got int64
		for _, rs := range rooms {
			for _, m := range rs.members {
				got += m.delivered.Load()
			}
		}
		now := time.Now()
		if got != last {
			last, lastChange = got, now
		}
		if got >= want || now.After(deadline) || now.Sub(lastChange) > time.Second {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

// dropped counts the members whose connection ended before the scenario
// closed it, and notes why the first one ended.
func dropped(members []*member, ok map[*member]bool, r *result) int {
	n := 0
	var why error
	for _, m := range members {
		if !ok[m] {
			continue
		}
		select {
		case <-m.done:
			n++
			if why == nil {
				why = m.readErr
			}
		default:
		}
	}
	if n > 0 {
		r.problem("the server closed %d connections during the run; first: %v", n, why)
	}
	return n
}

// closeAll closes every connection and waits for the read loops to end, so
// their state can be read.
func closeAll(members []*member) {
	for _, m := range members {
		if m.conn != nil {
			m.conn.CloseNow()
		}
	}
	for _, m := range members {
		if m.conn != nil {
			<-m.done
		}
	}
}

// tally compares what every member received with what was sent to its room.
func tally(rooms []*roomState, ok map[*member]bool, r *result) {
	var rateLimited, foreign int64
	var firstError string
	for _, rs := range rooms {
		for _, p := range rs.pubs {
			r.Sent += p.sent.Load()
		}
		for _, m := range rs.members {
			if !ok[m] {
				continue
			}
			for slot, p := range rs.pubs {
				sent := p.sent.Load()
				got := m.unique(slot, sent)
				r.Expected += sent
				r.Delivered += got
				r.Lost += sent - got
			}
			r.Dups += m.dups
			r.Lat.merge(m.hist)
			r.Rejected += m.errorFrames
			rateLimited += m.rateLimited
			foreign += m.foreign
			if firstError == "" {
				firstError = m.firstError
			}
		}
	}
	if r.Rejected > 0 {
		r.problem("the gateway answered %d messages with an error frame; first: %s", r.Rejected, firstError)
	}
	if rateLimited > 0 {
		r.note("%d messages were rate-limited: start the gateway with a higher GATEWAY_RATE and GATEWAY_BURST (bench/run.sh does), or pass -conn-rate", rateLimited)
	}
	if foreign > 0 {
		r.problem("%d deliveries carried another room's or a malformed bench text", foreign)
	}
}

func lastDelivery(members []*member, ok map[*member]bool) int64 {
	var last int64
	for _, m := range members {
		if ok[m] {
			last = max(last, m.lastAt.Load())
		}
	}
	return last
}

func checkCorrectness(r *result) {
	if r.Lost > 0 {
		r.problem("%d of %d deliveries lost (%.1f%%)", r.Lost, r.Expected, 100*float64(r.Lost)/float64(r.Expected))
	}
	if r.Dups > 0 {
		r.problem("%d duplicated deliveries", r.Dups)
	}
	if r.Expected == 0 && r.ConnectErrs == 0 {
		r.problem("nothing was sent")
	}
}

// ceiling is S4: one room, the rate raised by factor per step until a step
// misses (p99 over maxP99, a loss, publishers behind), then bisected
// between the last rate held and the first missed until they are within
// resolution of each other, so peers 10% apart are told apart.
type ceiling struct {
	subs, pubs int
	start      float64 // messages per second of the first step, all publishers
	factor     float64
	resolution float64 // e.g. 0.05: bisect until missed/held <= 1.05
	steps      int     // most steps of the ramp (the bisection adds a few)
	step       time.Duration
	maxP99     time.Duration
}

// search tries rates, c.start times c.factor per step, until one is not
// held, then bisects between the highest held and the lowest missed until
// they are within c.resolution. It returns both (0 when none).
func (c ceiling) search(try func(rate float64) bool) (held, missed float64) {
	rate := c.start
	for range c.steps {
		if !try(rate) {
			missed = rate
			break
		}
		held = rate
		rate = math.Round(rate * c.factor)
	}
	// On a log scale: the ramp is geometric, and so is "10% apart".
	for held > 0 && missed > 0 && missed/held > 1+c.resolution {
		mid := math.Round(math.Sqrt(held * missed))
		if mid <= held || mid >= missed {
			break
		}
		if try(mid) {
			held = mid
		} else {
			missed = mid
		}
	}
	return held, missed
}

func (b *bench) runCeiling(ctx context.Context, c ceiling) *result {
	var best, failed *result
	var trail []string
	i := 0
	try := func(rate float64) bool {
		t := traffic{rooms: 1, subs: c.subs, pubs: c.pubs, rate: rate / float64(c.pubs), duration: c.step}
		r := b.runTraffic(ctx, fmt.Sprintf("S4s%d", i), t)
		i++
		reason := ceilingMiss(r, c.maxP99)
		b.log.Info("ceiling step", "rate", rate, "deliveries_per_s", int(r.PerSec), "p99", r.Lat.quantile(0.99), "lost", r.Lost, "tool_saturated", r.ToolSaturated, "miss", reason)
		if reason != "" {
			failed = r
			failed.Notes = append([]string{fmt.Sprintf("%.0f msg/s not held: %s", rate, reason)}, failed.Notes...)
			trail = append(trail, fmt.Sprintf("%.0f missed", rate))
			return false
		}
		best = r
		trail = append(trail, fmt.Sprintf("%.0f held", rate))
		return true
	}
	held, _ := c.search(func(rate float64) bool { return ctx.Err() == nil && try(rate) })
	if best == nil {
		if failed == nil {
			failed = &result{}
			failed.problem("no step ran")
		}
		failed.Name = "S4"
		failed.problem("not even the first step (%.0f msg/s) held", c.start)
		return failed
	}
	best.Name = "S4"
	best.HeldRate = held
	best.Figure = fmt.Sprintf("held %.0f msg/s x %d", held, c.subs+c.pubs)
	best.Target = verdict(best.PerSec >= 500_000, fmt.Sprintf(">=500k deliv/s at p99<=%v", c.maxP99))
	best.note("steps (msg/s, all publishers): %s", strings.Join(trail, ", "))
	if failed != nil {
		best.Notes = append(best.Notes, failed.Notes...)
		best.Notes = append(best.Notes, failed.Problems...)
		if failed.ToolSaturated {
			best.ToolBound = true
			best.note("chatbench's CPU was saturated at a missed step: the ceiling may be the tool's, not the server's")
		}
	} else {
		best.note("the ramp reached its last step without missing: raise -s4-steps")
	}
	return best
}

// ceilingMiss says why a step does not count as held, or "" if it does.
func ceilingMiss(r *result, maxP99 time.Duration) string {
	switch {
	case r.failed():
		return r.Problems[0]
	case r.Lat.quantile(0.99) > maxP99:
		return fmt.Sprintf("p99 %v over %v", r.Lat.quantile(0.99), maxP99)
	case r.Behind:
		return "publishers fell behind the rate"
	}
	return ""
}

// runIdle is S5: n idle connections over rooms rooms; the server's RSS
// growth divided by the connections is the memory an idle connection costs.
func (b *bench) runIdle(ctx context.Context, n, rooms int, settle time.Duration) *result {
	r := &result{Name: "S5"}
	t := traffic{rooms: rooms, subs: n / rooms}
	rs := b.plan("S5", t)
	members := allMembers(rs)
	r.Conns = len(members)
	checkNoFile(r, len(members))
	var rss0 int64
	if b.serverPID > 0 {
		var err error
		if rss0, _, err = procMem(b.serverPID); err != nil {
			r.problem("%v", err)
		}
	}
	self0, _, _ := procMem(os.Getpid())
	u := startUsage(b.serverPID)
	b.log.Info("scenario starting", "scenario", "S5", "connections", len(members), "rooms", rooms)
	start := time.Now()
	ok := b.connect(ctx, members, r)
	b.log.Info("idle connections open", "joined", len(ok), "in", time.Since(start).Round(time.Millisecond))
	r.PerSec = float64(len(ok)) / time.Since(start).Seconds()
	sleep(ctx, settle)
	r.Dropped = dropped(members, ok, r)
	if b.serverPID > 0 && len(ok) > 0 {
		// From the peak (VmHWM, reset when the scenario started), not
		// the RSS once settled: what connecting them took counts too,
		// as the machine must have it.
		rss1, peak, err := procMem(b.serverPID)
		if err != nil {
			r.problem("%v", err)
		}
		per := float64(max(peak, rss1)-rss0) / float64(len(ok))
		r.KBPerConn = per / 1024
		r.Figure = fmt.Sprintf("%.1f KB/conn", per/1024)
		r.Target = verdict(per <= 12*1024, "<=12KB/conn")
		r.note("server RSS %.1f MB -> %.1f MB (peak %.1f MB) for %d idle connections", float64(rss0)/(1<<20), float64(rss1)/(1<<20), float64(peak)/(1<<20), len(ok))
	} else {
		r.Figure = "no -server-pid"
	}
	if self1, _, err := procMem(os.Getpid()); err == nil && len(ok) > 0 {
		r.note("chatbench itself: %.1f KB per connection; deliv/s column is connections opened per second", float64(self1-self0)/float64(len(ok))/1024)
	}
	u.stop(r)
	closeAll(members)
	return r
}

// skipped is the row of a scenario the peer cannot run.
func skipped(name, why string) *result {
	r := &result{Name: name, Skipped: true}
	r.note("skipped: %s", why)
	return r
}

func verdict(met bool, target string) string {
	if met {
		return "met " + target
	}
	return "MISSED " + target
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
