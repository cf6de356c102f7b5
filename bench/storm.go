package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/natschat/chat/shared/chat"
)

// S7, the reconnect storm: every client of a running chat loses its socket
// at once when the server restarts, and comes back as the page does
// (web/static/room.js): after a backoff with jitter, with ?since=<the last
// seq it saw>&epoch=<its epoch>, taking the history frame that answers as
// what it missed. Publishers keep sending throughout; what falls due while
// they are offline waits, as what a person types offline waits in the
// page, and goes with its client_id once they are back.

// storm is S7's plan.
type storm struct {
	clients, rooms int
	rate           float64 // messages per second, all publishers (one per room)
	before, after  time.Duration
	// target: every client resumed this soon after the restart began.
	target time.Duration
	// wait bounds the wait for the last resumes.
	wait time.Duration
}

// restarter stops the server and starts it again (same ports, same data),
// returning once the new one is ready, with its pid.
type restarter func(ctx context.Context) (pid int, err error)

// shellRestart runs command with sh -c: its output ends with the new
// server's pid; what it says on stderr goes to stderr.
func shellRestart(command string, stderr io.Writer) restarter {
	return func(ctx context.Context) (int, error) {
		cmd := exec.CommandContext(ctx, "sh", "-c", command)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, stderr
		// A server started in the background that kept the output open
		// must not hold the scenario up.
		cmd.WaitDelay = 2 * time.Second
		if err := cmd.Run(); err != nil {
			return 0, fmt.Errorf("restart command %q: %w", command, err)
		}
		words := strings.Fields(out.String())
		if len(words) == 0 {
			return 0, fmt.Errorf("restart command %q printed no pid", command)
		}
		last := words[len(words)-1]
		pid, err := strconv.Atoi(last)
		if err != nil || pid <= 0 {
			return 0, fmt.Errorf("restart command %q: its output ends with %q, not a pid", command, last)
		}
		return pid, nil
	}
}

// backoff is the page's wait before reconnect attempt retry (0 first):
// 500 ms doubling up to 15 s, each between 75% and 125% of that.
func backoff(retry int) time.Duration {
	d := min(15*time.Second, 500*time.Millisecond<<min(retry, 5))
	return time.Duration(float64(d) * (0.75 + rand.Float64()/2))
}

// follower is the part of a member that outlives its connection: its
// place in the room (the last seq it received and the stream's epoch) and
// its reconnects. Its read loop (run) owns the fields above mu.
type follower struct {
	url string // the member's WebSocket URL, without since and epoch
	// ctx ends the reconnects (shut).
	ctx    context.Context
	cancel context.CancelFunc

	lastSeq    uint64
	epoch      int64
	outOfOrder int64 // new deliveries with a seq not above the last one
	resets     int64 // history frames with reset: the resume was refused
	resumeMsgs int64 // messages the resume's history frame carried
	retried    int64 // messages refused as unavailable or unconfirmed, sent again
	refusals   int64 // reconnect attempts that failed
	// After the first loss: connections closed by the server before
	// their history frame (a failed resume) and after it, and why the
	// first of them was.
	failedResumes, dropsAfter int64
	why                       error

	mu       sync.Mutex
	conn     *websocket.Conn // the current connection
	connNo   int             // connections opened, the current one's number
	live     bool            // the current connection's history frame came
	stopping bool

	// Read by the scenario while the loop runs: connections lost (closed
	// by the server), the first loss and the first history frame after it
	// (Unix ns).
	drops     atomic.Int64
	droppedAt atomic.Int64
	resumedAt atomic.Int64
}

func newFollower() *follower {
	ctx, cancel := context.WithCancel(context.Background())
	return &follower{ctx: ctx, cancel: cancel}
}

// start runs m's read loop on conn, its first connection to url, and on
// every later one until the scenario shuts the follower down,
// reconnecting whenever one ends.
func (f *follower) start(m *member, url string, conn *websocket.Conn) {
	f.url = url
	f.attach(conn) // before shut can be called
	go f.run(m, conn)
}

func (f *follower) run(m *member, conn *websocket.Conn) {
	defer close(m.done)
	for {
		err := m.read(conn)
		if f.detach() {
			m.readErr = err
			return
		}
		now := time.Now().UnixNano()
		if f.drops.Add(1) == 1 {
			f.droppedAt.Store(now)
		} else {
			if f.resumedAt.Load() == 0 {
				f.failedResumes++
			} else {
				f.dropsAfter++
			}
			if f.why == nil {
				f.why = err
			}
		}
		// m.conn stays the first connection: handle needs it only
		// before the member joined.
		if conn = f.redial(); conn == nil {
			m.readErr = err
			return
		}
	}
}

// redial reconnects as the page does, until it succeeds (nil: shut down).
func (f *follower) redial() *websocket.Conn {
	for retry := 0; ; retry++ {
		t := time.NewTimer(backoff(retry))
		select {
		case <-t.C:
		case <-f.ctx.Done():
			t.Stop()
			return nil
		}
		ctx, cancel := context.WithTimeout(f.ctx, 15*time.Second)
		conn, _, err := websocket.Dial(ctx, f.resumeURL(), nil)
		cancel()
		if err != nil {
			if f.ctx.Err() != nil {
				return nil
			}
			f.refusals++
			continue
		}
		conn.SetReadLimit(1 << 20)
		if !f.attach(conn) {
			conn.CloseNow()
			return nil
		}
		return conn
	}
}

// resumeURL is where the member reconnects: after the last seq it saw, in
// its epoch, as the page asks (nothing seen: a fresh join).
func (f *follower) resumeURL() string {
	if f.lastSeq == 0 {
		return f.url
	}
	sep := "?"
	if strings.Contains(f.url, "?") {
		sep = "&"
	}
	u := f.url + sep + "since=" + strconv.FormatUint(f.lastSeq, 10)
	if f.epoch != 0 {
		u += "&epoch=" + strconv.FormatInt(f.epoch, 10)
	}
	return u
}

// attach makes conn the current connection, not live until its history
// frame; false when the follower is shut down.
func (f *follower) attach(conn *websocket.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopping {
		return false
	}
	f.conn, f.live = conn, false
	f.connNo++
	return true
}

// detach marks the current connection ended and reports whether the
// follower is shut down.
func (f *follower) detach() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.live = false
	return f.stopping
}

// liveConn is the current connection and its number once its history
// frame came, else nil.
func (f *follower) liveConn() (*websocket.Conn, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.live || f.stopping {
		return nil, 0
	}
	return f.conn, f.connNo
}

// shut ends the follower: no more reconnects, the connection closed.
func (f *follower) shut() {
	f.mu.Lock()
	f.stopping = true
	conn := f.conn
	f.mu.Unlock()
	f.cancel()
	if conn != nil {
		conn.CloseNow()
	}
}

var seqField = []byte(`"seq":`)

// handle is member.handle for a follower: message frames also move its
// place on, history frames are decoded (one per connection) for their
// messages and epoch, and a message refused as unavailable or unconfirmed
// is sent again instead of counting as an error.
func (f *follower) handle(m *member, line []byte, now int64) {
	kind, rest := m.peer.read(line)
	switch kind {
	case frameMessage, frameOther:
		if !bytes.Equal(frameType(line), messageFrame) {
			return
		}
		fresh := kind == frameMessage && m.deliverText(rest, now)
		if i := bytes.Index(line, seqField); i >= 0 {
			if seq, _, ok := parseUint(line[i+len(seqField):], ','); ok {
				f.advance(uint64(seq), fresh)
			}
		}
	case frameJoined:
		f.history(m, line, now)
		m.markJoined()
	case frameError, frameRateLimited:
		if !f.retry(m, line) {
			m.refused(kind, line)
		}
	}
}

// advance moves the member's place to seq; a new delivery at or below it
// came out of order.
func (f *follower) advance(seq uint64, fresh bool) {
	if fresh && seq <= f.lastSeq {
		f.outOfOrder++
	}
	f.lastSeq = max(f.lastSeq, seq)
}

// history takes a history frame: its messages are deliveries like any
// (a resume's are what the member missed), then the connection is live
// and the member's publisher, if any, sends what is still unechoed.
func (f *follower) history(m *member, line []byte, now int64) {
	var h chat.HistoryFrame
	if err := json.Unmarshal(line, &h); err != nil {
		m.foreign++
		return
	}
	if h.Epoch != 0 {
		f.epoch = h.Epoch
	}
	if h.Reset {
		// As the page does: the place starts over. The run fails on
		// it (the store survives a restart: a resume must work), and
		// what the reset frame repeats is not counted twice.
		f.resets++
		f.lastSeq = 0
	}
	for _, msg := range h.Messages {
		text, ok := strings.CutPrefix(msg.Text, "b1|")
		if !ok {
			f.advance(msg.Seq, false)
			continue
		}
		pub, n, sentAt, ok := parseText([]byte(text + `"`))
		if !ok {
			m.foreign++
			continue
		}
		if h.Reset && m.has(pub, n) {
			f.advance(msg.Seq, false)
			continue
		}
		f.advance(msg.Seq, m.deliver(pub, n, now, sentAt))
	}
	if f.drops.Load() > 0 && f.resumedAt.Load() == 0 {
		f.resumeMsgs += int64(len(h.Messages))
		f.resumedAt.Store(now)
	}
	f.mu.Lock()
	f.live = true
	f.mu.Unlock()
	if m.pub != nil {
		m.pub.outbox.poke()
	}
}

// retry sends a message again that the gateway refused as unavailable or
// could not confirm (as around a restart), reporting whether it did.
func (f *follower) retry(m *member, line []byte) bool {
	var sf chat.ServerFrame
	if json.Unmarshal(line, &sf) != nil || (sf.Code != chat.CodeUnavailable && sf.Code != chat.CodeUnconfirmed) || m.pub == nil {
		return false
	}
	pubID, n, ok := strings.Cut(sf.ClientID, "-")
	id, err1 := strconv.Atoi(pubID)
	k, err2 := strconv.ParseInt(n, 10, 64)
	if !ok || err1 != nil || err2 != nil || id != m.pub.id {
		return false
	}
	f.retried++
	m.pub.outbox.again(k)
	return true
}

// has reports whether m received message n of publisher pub.
func (m *member) has(pub, n int) bool {
	slot := pub - m.room.firstPub
	if m.seen == nil || slot < 0 || slot >= len(m.seen) || n < 0 || n/64 >= len(m.seen[slot]) {
		return false
	}
	return m.seen[slot][n/64]&(1<<(n%64)) != 0
}

// outbox holds a storm publisher's messages until their echo comes back.
// Like the page's unacknowledged messages, one without echo is written
// again, with the same client_id, on the next connection once it is live:
// the gateway stores it once however often it comes (JetStream's
// de-duplication of the client_id). Every message made counts as sent.
type outbox struct {
	pub  *publisher
	wake chan struct{}

	mu     sync.Mutex
	stamps []int64 // per message n: its send time, kept for a resend
	acked  []bool
	wrote  []int // per n: the connection it was last written on (0: to write)
	first  int   // every message below it is acked
}

func newOutbox(p *publisher) *outbox {
	return &outbox{pub: p, wake: make(chan struct{}, 1)}
}

// poke makes run write what is waiting.
func (o *outbox) poke() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// ack records the echo of message n.
func (o *outbox) ack(n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if n < len(o.acked) {
		o.acked[n] = true
	}
	for o.first < len(o.acked) && o.acked[o.first] {
		o.first++
	}
}

// again has message n written again in a second.
func (o *outbox) again(n int64) {
	o.mu.Lock()
	if n >= 0 && n < int64(len(o.wrote)) {
		o.wrote[n] = 0
	}
	o.mu.Unlock()
	time.AfterFunc(time.Second, o.poke)
}

// unacked counts the messages still without echo.
func (o *outbox) unacked() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, a := range o.acked[o.first:] {
		if !a {
			n++
		}
	}
	return n
}

// run makes messages at rate per second (Poisson arrivals) until quiet is
// closed, and writes every unacked one not yet written on the current
// live connection, until ctx is done.
func (o *outbox) run(ctx context.Context, m *member, rate float64, quiet <-chan struct{}) {
	gap := func() time.Duration { return time.Duration(rand.ExpFloat64() / rate * float64(time.Second)) }
	timer := time.NewTimer(gap())
	defer timer.Stop()
	making := true
	var buf []byte
	for {
		select {
		case <-timer.C:
			select {
			case <-quiet:
				making = false
			default:
			}
			if making {
				o.mu.Lock()
				o.stamps = append(o.stamps, time.Now().UnixNano())
				o.acked = append(o.acked, false)
				o.wrote = append(o.wrote, 0)
				o.mu.Unlock()
				o.pub.sent.Add(1)
				timer.Reset(gap())
			}
		case <-o.wake:
		case <-ctx.Done():
			return
		}
		buf = o.flush(ctx, m, buf)
	}
}

// flush writes, in order, every unacked message not written on the live
// connection yet. A failed write stops it: the read loop sees the
// connection end, and the next one gets them.
func (o *outbox) flush(ctx context.Context, m *member, buf []byte) []byte {
	conn, no := m.follow.liveConn()
	if conn == nil {
		return buf
	}
	type todo struct{ n, stamp int64 }
	var list []todo
	o.mu.Lock()
	for n := o.first; n < len(o.stamps); n++ {
		if !o.acked[n] && o.wrote[n] != no {
			list = append(list, todo{int64(n), o.stamps[n]})
		}
	}
	o.mu.Unlock()
	for _, t := range list {
		buf = m.peer.appendMessage(buf[:0], m.room.name, o.pub.id, t.n, t.stamp)
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := conn.Write(wctx, websocket.MessageText, buf)
		cancel()
		if err != nil {
			return buf
		}
		o.mu.Lock()
		o.wrote[t.n] = no
		o.mu.Unlock()
	}
	return buf
}

// runStorm is S7: s.clients clients over s.rooms rooms, one publisher per
// room; after s.before the server is restarted, and every client must
// resume with nothing lost, none twice, in order.
func (b *bench) runStorm(ctx context.Context, s storm) *result {
	if b.peerName != "chat" {
		return skipped("S7", "resuming with ?since= is the chat's protocol")
	}
	if b.restart == nil {
		return skipped("S7", "no -restart-cmd: chatbench cannot restart a server it did not start (bash bench/run.sh -scenario S7 gives it one)")
	}
	r := &result{Name: "S7"}
	s.rooms = max(1, min(s.rooms, s.clients/2))
	t := traffic{rooms: s.rooms, subs: max(1, s.clients/s.rooms-1), pubs: 1, rate: s.rate / float64(s.rooms)}
	rooms := b.plan("S7", t)
	members := allMembers(rooms)
	r.Conns = len(members)
	checkNoFile(r, len(members))
	for _, m := range members {
		m.follow = newFollower()
		if m.pub != nil {
			m.pub.outbox = newOutbox(m.pub)
		}
	}
	b.log.Info("scenario starting", "scenario", "S7", "clients", len(members), "rooms", s.rooms, "rate", s.rate)
	ok := b.connect(ctx, members, r)
	defer shutAll(members)

	pctx, stopPubs := context.WithCancel(ctx)
	defer stopPubs()
	quiet := make(chan struct{})
	var pubs sync.WaitGroup
	start := time.Now()
	for _, m := range members {
		if m.pub != nil && ok[m] {
			pubs.Go(func() { m.pub.outbox.run(pctx, m, t.rate, quiet) })
		}
	}
	sleep(ctx, s.before)

	// The storm: from the moment the old server is told to stop.
	b.log.Info("restarting the server", "scenario", "S7")
	t0 := time.Now()
	tool := startUsage(0)
	pid, err := b.restart(ctx)
	readyIn := time.Since(t0)
	var cpuReady time.Duration
	if err != nil {
		r.problem("%v", err)
	} else {
		b.serverPID = pid
		cpuReady, _ = procCPU(pid)
		b.log.Info("server restarted", "pid", pid, "ready_in", readyIn.Round(time.Millisecond))
	}
	resumed := b.awaitResumes(ctx, members, ok, t0.Add(s.wait), err == nil)
	tool.stop(r)
	if err == nil {
		r.ServerKnown = true
		r.ServerCPU, _ = procCPU(pid)
	}

	sleep(ctx, s.after)
	close(quiet)
	b.awaitEchoes(ctx, members, ok)
	b.drain(ctx, rooms, ok)
	if err == nil {
		_, r.ServerPeakRSS, _ = procMem(pid)
	}
	stopPubs()
	pubs.Wait()
	shutAll(members)

	tally(rooms, ok, r)
	if last := lastDelivery(members, ok); last > start.UnixNano() {
		r.PerSec = float64(r.Delivered) / time.Duration(last-start.UnixNano()).Seconds()
	}
	delivery := r.Lat
	r.Lat = histogram{}
	b.stormFigures(r, s, members, ok, t0, resumed)
	r.note("delivery latency p50 %s, p99 %s, max %s (what was sent while the server was down waited for it)",
		ms(delivery.quantile(0.5)), ms(delivery.quantile(0.99)), ms(delivery.max))
	if err == nil {
		r.note("new server pid %d answered /readyz %.2fs after the restart began, having used %.2fs of CPU; srv_cpu is its CPU until every client resumed, start-up included, srv_peak_rss its peak",
			pid, readyIn.Seconds(), cpuReady.Seconds())
	}
	checkCorrectness(r)
	return r
}

// awaitResumes waits until every member that joined resumed after the
// restart, or until deadline (at once when the restart failed), and
// returns how many did.
func (b *bench) awaitResumes(ctx context.Context, members []*member, ok map[*member]bool, deadline time.Time, restarted bool) int {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		n := 0
		for _, m := range members {
			if ok[m] && m.follow.resumedAt.Load() > 0 {
				n++
			}
		}
		if n == len(ok) || !restarted || time.Now().After(deadline) {
			return n
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return n
		}
	}
}

// awaitEchoes waits until every publisher's messages came back to it, or
// b.drainMax passed.
func (b *bench) awaitEchoes(ctx context.Context, members []*member, ok map[*member]bool) {
	deadline := time.Now().Add(b.drainMax)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		left := 0
		for _, m := range members {
			if m.pub != nil && ok[m] {
				left += m.pub.outbox.unacked()
			}
		}
		if left == 0 || time.Now().After(deadline) {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

// stormFigures fills S7's figures: the resume time of every client (in the
// latency columns), when the old sockets closed, and what went wrong.
func (b *bench) stormFigures(r *result, s storm, members []*member, ok map[*member]bool, t0 time.Time, resumed int) {
	var (
		early, failed, again, refusals, retried, msgs, withMsgs int64
		resets, outOfOrder                                      int64
		firstDrop, lastDrop                                     int64 = math.MaxInt64, 0
		why                                                     error
	)
	for _, m := range members {
		if !ok[m] {
			continue
		}
		f := m.follow
		if at := f.droppedAt.Load(); at > 0 {
			if at < t0.UnixNano() {
				early++
			}
			firstDrop, lastDrop = min(firstDrop, at), max(lastDrop, at)
		}
		failed += f.failedResumes
		again += f.dropsAfter
		if why == nil {
			why = f.why
		}
		if at := f.resumedAt.Load(); at > 0 {
			r.Lat.record(time.Duration(at - t0.UnixNano()))
		}
		refusals += f.refusals
		retried += f.retried
		resets += f.resets
		outOfOrder += f.outOfOrder
		msgs += f.resumeMsgs
		if f.resumeMsgs > 0 {
			withMsgs++
		}
	}
	all := resumed == len(ok) && len(ok) > 0
	took := r.Lat.max
	if all {
		r.Figure = fmt.Sprintf("all %d resumed in %.1fs", resumed, took.Seconds())
	} else {
		r.Figure = fmt.Sprintf("%d of %d resumed", resumed, len(ok))
		r.problem("%d of %d clients had not resumed %v after the restart began", len(ok)-resumed, len(ok), s.wait)
	}
	r.Target = verdict(all && took <= s.target && r.Lost == 0 && r.Dups == 0, fmt.Sprintf("all resumed <=%v, 0 lost", s.target))
	r.note("p50/p95/p99/max are each client's resume time: from the restart until its history frame on the new server")
	if lastDrop > 0 {
		r.note("the old server closed the sockets %.2fs to %.2fs after it was told to stop; %d reconnect attempts failed (server down), %d resume frames carried %d messages, %d messages were refused around the restart and sent again",
			time.Duration(firstDrop-t0.UnixNano()).Seconds(), time.Duration(lastDrop-t0.UnixNano()).Seconds(), refusals, withMsgs, msgs, retried)
	}
	if early > 0 {
		r.problem("the server closed %d connections before the restart", early)
	}
	if failed+again > 0 {
		r.problem("the new server closed %d connections before their history frame (failed resumes, the client tried again) and %d after it; first: %v", failed, again, why)
	}
	if resets > 0 {
		r.problem("%d resumes were refused (history frame with reset): the client had to start over", resets)
	}
	if outOfOrder > 0 {
		r.problem("%d deliveries came out of seq order", outOfOrder)
	}
}

// shutAll ends every member's follower and waits for its read loop.
func shutAll(members []*member) {
	for _, m := range members {
		if m.follow != nil {
			m.follow.shut()
		}
	}
	for _, m := range members {
		if m.conn != nil {
			<-m.done
		}
	}
}
