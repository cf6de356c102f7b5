package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natschat/chat/shared/chat"
)

// largeHistory is S8: one room with many stored messages, then the time a
// join takes to get its history frame and the time a scroll-back page
// takes, with random cursors over the whole room so old rows are read.
type largeHistory struct {
	messages int // stored in the room before measuring
	joins    int // joins timed, one after the other
	pages    int // scroll-back requests timed, one after the other
	limit    int // messages per page
}

// joinBacklog is the gateway's default GATEWAY_HISTORY_ON_JOIN: the
// messages a join's history frame carries.
const joinBacklog = 50

// S8's fill publishes with up to fillWindow unacknowledged messages, and
// keeps the history consumer at most fillMaxLag messages behind (less if
// the stream keeps fewer per room): a message the stream discards before
// history stored it would be lost.
const (
	fillWindow = 4096
	fillMaxLag = 50_000
)

// runLargeHistory returns three rows: the fill, the joins and the pages.
func (b *bench) runLargeHistory(ctx context.Context, lh largeHistory) []*result {
	room := b.tag + "-S8"
	fill := &result{Name: "S8/fill", Conns: 1}
	stored, ok := b.fillRoom(ctx, room, lh.messages, fill)
	if !ok || ctx.Err() != nil {
		return []*result{fill}
	}
	join := b.timeJoins(ctx, room, stored, lh.joins)
	page := b.timePages(ctx, room, stored, lh.pages, lh.limit)
	return []*result{fill, join, page}
}

// storedRoom is where each message of the fill went: seqs[n] is the stream
// sequence of message n, sorted the same sequences in order.
type storedRoom struct {
	seqs, sorted []uint64
}

// fillRoom publishes total messages to room with JetStream acks (on
// chat.room.<room>, as an operator with the nats CLI would) and waits
// until the history consumer has acked everything the stream holds.
func (b *bench) fillRoom(ctx context.Context, room string, total int, r *result) (storedRoom, bool) {
	var sr storedRoom
	nc, err := nats.Connect(b.natsURL, nats.Name("chatbench"))
	if err != nil {
		r.ConnectErrs = 1
		r.problem("connect to NATS at %s: %v", b.natsURL, err)
		return sr, false
	}
	defer nc.Close()
	acks := &fillAcks{seqs: make([]uint64, total)}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(fillWindow),
		jetstream.WithPublishAsyncAckHandler(acks.acked), jetstream.WithPublishAsyncErrHandler(acks.failed))
	if err != nil {
		r.problem("jetstream: %v", err)
		return sr, false
	}
	st, err := js.Stream(ctx, chatStream)
	if err != nil {
		r.problem("stream %s: %v (is the gateway running on this NATS?)", chatStream, err)
		return sr, false
	}
	cons, err := findHistoryConsumer(ctx, st)
	if err != nil {
		r.Figure = "history not running"
		r.problem("consumer %s: %v: S8 needs the history service", historyConsumer, err)
		return sr, false
	}
	info, err := st.Info(ctx)
	if err != nil {
		r.problem("stream %s info: %v", chatStream, err)
		return sr, false
	}
	first := info.State.LastSeq
	maxLag := int64(fillMaxLag)
	if per := info.Config.MaxMsgsPerSubject; per > 0 {
		maxLag = min(maxLag, per/2)
	}

	b.log.Info("scenario starting", "scenario", "S8", "messages", total, "max_history_lag", maxLag)
	u := startUsage(b.serverPID)
	start := time.Now()
	// How far history got, sampled while publishing: the publisher waits
	// while it is more than maxLag ahead.
	var stored atomic.Int64
	var wg sync.WaitGroup
	sctx, stopSampling := context.WithCancel(ctx)
	wg.Go(func() {
		for sctx.Err() == nil {
			if _, floor, err := consumerLag(sctx, st, cons); err == nil && floor > first {
				stored.Store(int64(floor - first))
			}
			sleep(sctx, 50*time.Millisecond)
		}
	})
	subject := chat.RoomSubject(room)
	var pauses int
	var pubErr error
	for n := range total {
		if int64(n)-stored.Load() > maxLag {
			pauses++
			for int64(n)-stored.Load() > maxLag/2 && ctx.Err() == nil {
				sleep(ctx, 10*time.Millisecond)
			}
		}
		if ctx.Err() != nil {
			pubErr = ctx.Err()
			break
		}
		// A buffer of its own: the client keeps the message until its ack.
		data := append(make([]byte, 0, 96), `{"user":"bench","kind":"user","text":"b1|0|`...)
		data = strconv.AppendInt(data, int64(n), 10)
		data = append(data, '|')
		data = strconv.AppendInt(data, time.Now().UnixNano(), 10)
		data = append(data, `"}`...)
		if _, err := js.PublishAsync(subject, data, jetstream.WithStallWait(10*time.Second)); err != nil {
			pubErr = fmt.Errorf("publish to %s: %w", subject, err)
			break
		}
		r.Sent++
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		r.problem("%d publishes still unacknowledged 30s after the last", js.PublishAsyncPending())
	}
	published := time.Since(start)
	stopSampling()
	wg.Wait()
	if pubErr != nil {
		r.problem("%v", pubErr)
	}
	acks.mu.Lock()
	acked, failed, firstErr := acks.n, acks.errs, acks.first
	acks.mu.Unlock()
	if failed > 0 {
		r.problem("%d publishes failed; first: %v", failed, firstErr)
	}
	last, err := lastSeq(ctx, st)
	if err != nil {
		r.problem("%v", err)
		return sr, false
	}
	r.Expected = int64(acked)
	caughtUp, ackEnd, err := waitCaughtUp(ctx, st, cons, last, 2*time.Minute)
	if err != nil {
		r.problem("%v", err)
	}
	took := time.Since(start)
	u.stop(r)
	r.Delivered = int64(min(ackEnd, last) - first)
	r.Lost = max(0, r.Expected-r.Delivered)
	r.PerSec = float64(r.Delivered) / took.Seconds()
	if caughtUp < 0 {
		r.problem("history acked %d of %d messages, not caught up 2m after the last publish", r.Delivered, r.Expected)
		return sr, false
	}
	r.Figure = fmt.Sprintf("%d stored in %.1fs", r.Delivered, took.Seconds())
	r.note("published %d messages in %v (%.0f msg/s, up to %d unacknowledged), paused %d times for history more than %d behind; history acked the last %v later: %.0f rows/s from the first publish (deliv/s column)",
		r.Sent, published.Round(time.Millisecond), float64(r.Sent)/published.Seconds(), fillWindow, pauses, maxLag, caughtUp.Round(time.Millisecond), r.PerSec)
	if r.failed() {
		return sr, false
	}
	sr.seqs = acks.seqs
	sr.sorted = slices.Clone(acks.seqs)
	slices.Sort(sr.sorted)
	if sr.sorted[0] == 0 {
		r.problem("some messages have no acknowledged sequence")
		return sr, false
	}
	return sr, true
}

// fillAcks records the stream sequence of every message of the fill. The
// handlers run on the client's ack goroutine.
type fillAcks struct {
	mu    sync.Mutex
	seqs  []uint64 // by message number
	n     int
	errs  int
	first error
}

func (a *fillAcks) acked(_ jetstream.JetStream, m *nats.Msg, ack *jetstream.PubAck) {
	n, ok := messageNumber(m.Data)
	a.mu.Lock()
	defer a.mu.Unlock()
	if !ok || n >= len(a.seqs) {
		a.errs++
		if a.first == nil {
			a.first = fmt.Errorf("ack for a message not of this fill: %.80s", m.Data)
		}
		return
	}
	a.seqs[n] = ack.Sequence
	a.n++
}

func (a *fillAcks) failed(_ jetstream.JetStream, _ *nats.Msg, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.errs++
	if a.first == nil {
		a.first = err
	}
}

// messageNumber reads n from a message whose text is b1|0|<n>|<ts>.
func messageNumber(data []byte) (int, bool) {
	i := bytes.Index(data, textMarker)
	if i < 0 {
		return 0, false
	}
	pub, n, _, ok := parseText(data[i+len(textMarker):])
	return n, ok && pub == 0
}

// timeJoins opens joins WebSockets to room one after the other, each timed
// from the dial to its history frame, and checks that every frame carries
// the room's newest messages.
func (b *bench) timeJoins(ctx context.Context, room string, sr storedRoom, joins int) *result {
	r := &result{Name: "S8/join", Conns: joins}
	b.log.Info("scenario starting", "scenario", "S8/join", "joins", joins)
	u := startUsage(b.serverPID)
	start := time.Now()
	var tally pageTally
	var firstErr error
	for i := range joins {
		if ctx.Err() != nil {
			break
		}
		f, took, err := b.joinOnce(ctx, room, fmt.Sprintf("j%d", i))
		if err != nil {
			r.ConnectErrs++
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		r.Sent++
		r.Lat.record(took)
		sr.check(f, ^uint64(0), joinBacklog, &tally)
	}
	r.PerSec = float64(r.Sent) / time.Since(start).Seconds()
	u.stop(r)
	if firstErr != nil {
		r.problem("%d of %d joins failed; first: %v", r.ConnectErrs, joins, firstErr)
	}
	tally.report(r, "join history frames")
	p99 := r.Lat.quantile(0.99)
	r.Figure = fmt.Sprintf("%d joins over %d msgs", r.Sent, len(sr.seqs))
	r.Target = verdict(!r.failed() && p99 > 0 && p99 < 20*time.Millisecond, "join p99<20ms")
	r.note("each join a new socket to the room (no other member), timed from the dial to its history frame of the newest %d messages; deliv/s column: joins per second", joinBacklog)
	return r
}

func (b *bench) joinOnce(ctx context.Context, room, user string) (chat.ServerFrame, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	start := time.Now()
	conn, err := b.dialRaw(ctx, room, user)
	if err != nil {
		return chat.ServerFrame{}, 0, err
	}
	defer conn.CloseNow()
	return readHistory(ctx, conn, start)
}

// timePages joins room once, then asks for pages pages of limit messages
// one after the other, each before a random seq of the whole room, timed
// from the write of the request to its reply.
func (b *bench) timePages(ctx context.Context, room string, sr storedRoom, pages, limit int) *result {
	r := &result{Name: "S8/page", Conns: 1}
	b.log.Info("scenario starting", "scenario", "S8/page", "pages", pages, "limit", limit)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	conn, err := b.dialRaw(ctx, room, "p0")
	if err == nil {
		jctx, jcancel := context.WithTimeout(ctx, 15*time.Second)
		_, _, err = readHistory(jctx, conn, time.Now())
		jcancel()
	}
	if err != nil {
		r.ConnectErrs = 1
		r.problem("join: %v", err)
		return r
	}
	defer conn.CloseNow()
	lo, hi := sr.sorted[0], sr.sorted[len(sr.sorted)-1]
	u := startUsage(b.serverPID)
	start := time.Now()
	var tally pageTally
	for range pages {
		if ctx.Err() != nil {
			break
		}
		// From the oldest message's seq + 1 (a page of one) to past the
		// newest (the newest page): every row is as likely to be read.
		before := lo + 1 + rand.N(hi-lo+1)
		req, _ := json.Marshal(chat.ClientFrame{Type: chat.FrameHistory, Before: before, Limit: limit})
		pctx, pcancel := context.WithTimeout(ctx, 15*time.Second)
		sent := time.Now()
		err := conn.Write(pctx, websocket.MessageText, req)
		var f chat.ServerFrame
		var took time.Duration
		if err == nil {
			f, took, err = readHistory(pctx, conn, sent)
		}
		pcancel()
		if err != nil {
			r.problem("page before %d: %v", before, err)
			break
		}
		r.Sent++
		r.Lat.record(took)
		sr.check(f, before, limit, &tally)
	}
	r.PerSec = float64(r.Sent) / time.Since(start).Seconds()
	u.stop(r)
	tally.report(r, "pages")
	r.Figure = fmt.Sprintf("%d pages of %d, random before", r.Sent, limit)
	r.note("one socket, one request at a time, timed from the write of {\"type\":\"history\",\"before\":<seq>,\"limit\":%d} to its reply; deliv/s column: pages per second", limit)
	return r
}

// dialRaw opens a member's WebSocket without the read loop of member:
// S8 reads its history frames itself.
func (b *bench) dialRaw(ctx context.Context, room, user string) (*websocket.Conn, error) {
	url := b.peer.url(b.wsBase, room, user)
	conn, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", url, err)
	}
	conn.SetReadLimit(1 << 20)
	return conn, nil
}

// readHistory reads conn until a history frame comes and returns it, with
// the time from start until the WebSocket message that carried it was
// read. Other frames (presence) are skipped; an error frame ends the wait.
func readHistory(ctx context.Context, conn *websocket.Conn, start time.Time) (chat.ServerFrame, time.Duration, error) {
	for {
		_, data, err := conn.Read(ctx)
		took := time.Since(start)
		if err != nil {
			return chat.ServerFrame{}, 0, fmt.Errorf("no history frame: %w", err)
		}
		var found []byte
		eachLine(data, func(line []byte) {
			switch typ := frameType(line); {
			case found != nil:
			case bytes.Equal(typ, historyFrame), bytes.Equal(typ, errorFrame):
				found = line
			}
		})
		if found == nil {
			continue
		}
		var f chat.ServerFrame
		if err := json.Unmarshal(found, &f); err != nil {
			return f, 0, fmt.Errorf("decode history frame: %w", err)
		}
		if f.Type == chat.FrameError {
			return f, 0, fmt.Errorf("error frame: %s: %s", f.Code, f.Error)
		}
		return f, took, nil
	}
}

// pageTally counts what S8's history frames held against what the fill
// stored.
type pageTally struct {
	expected, right int64
	wrong           int64 // in a frame and not the message stored there
	noMore          int   // frames that said has_more false with older messages stored
}

// check compares a history frame with the newest limit messages below
// before that the fill stored: the same sequences in order, each with the
// text of the message published at it.
func (sr storedRoom) check(f chat.ServerFrame, before uint64, limit int, t *pageTally) {
	end, _ := slices.BinarySearch(sr.sorted, before)
	from := max(0, end-limit)
	want := sr.sorted[from:end]
	t.expected += int64(len(want))
	k := 0
	for _, m := range f.Messages {
		for k < len(want) && want[k] < m.Seq {
			k++
		}
		n, ok := messageNumber([]byte(`"text":"` + m.Text + `"`))
		if k < len(want) && want[k] == m.Seq && ok && n < len(sr.seqs) && sr.seqs[n] == m.Seq {
			t.right++
			k++
			continue
		}
		t.wrong++
	}
	// has_more may be true when nothing older exists (an empty page then
	// says so), never false when something does.
	if from > 0 && !f.HasMore {
		t.noMore++
	}
}

// report puts the counts in r's columns (expected, delivered: the right
// messages, lost: the missing) and makes any fault a problem.
func (t *pageTally) report(r *result, what string) {
	r.Expected, r.Delivered, r.Lost = t.expected, t.right, t.expected-t.right
	if r.Lost > 0 {
		r.problem("%d of %d messages missing from the %s", r.Lost, t.expected, what)
	}
	if t.wrong > 0 {
		r.problem("%d messages in the %s are not the ones stored there", t.wrong, what)
	}
	if t.noMore > 0 {
		r.problem("%d of the %s said has_more false with older messages stored", t.noMore, what)
	}
	if t.expected == 0 && !r.failed() {
		r.problem("no %s read", what)
	}
}
