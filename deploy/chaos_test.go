//go:build chaos

package deploy

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uptrace/bun/driver/pgdriver"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/stream"
	"github.com/natschat/chat/shared/testkit"
)

// The chaos suite, `make chaos` (build tag chaos; not part of make test).
// The whole chat runs as separate processes on loopback (chaosStack) under
// a steady load: senders that behave like the web page, two per room (one
// on each gateway), and listeners that resume with ?since= at every phase.
// One fault after another is injected while the load runs; after each, the
// suite waits until the chat has recovered: every sender has a new message
// acknowledged, the database holds every acknowledged message and every
// client has caught up. At the end it prints one table and fails on any
// message lost or duplicated, any gap or duplicate a client saw, any
// "not sent" that was stored after all, and any SMS not sent exactly once.

const (
	chaosRooms = 5
	// loadBefore is how long the load runs before each fault.
	loadBefore = 4 * time.Second
	// down is how long a killed process stays down.
	down = 3 * time.Second
	// recoverWithin bounds the wait for recovery after each fault.
	recoverWithin = 2 * time.Minute
)

// fault is one scripted failure: inject, wait down, heal.
type fault struct {
	name   string
	inject func() error
	down   time.Duration
	heal   func()
	// settle: the load pauses and everything is stored before the fault
	// (deleting the stream destroys what history has not read yet: that
	// is the operator's doing, not a loss of the chat's).
	settle bool
	// during checks the chat while the fault lasts.
	during func() error
}

type phaseResult struct {
	fault     string
	start     time.Time
	down      time.Duration
	recovered time.Duration // after the heal; -1: not within recoverWithin
	problem   string
}

type chaosRun struct {
	t         *testing.T
	s         *chaosStack
	db        *sql.DB
	gate      *gate
	senders   []*sender
	listeners []*chatClient
	gateways  []string
	sms       []string // recipients of the /sms commands, one per phase
	wg        sync.WaitGroup
}

func TestChaos(t *testing.T) {
	s := newChaosStack(t)
	db := sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(s.db.URL)))
	t.Cleanup(func() { db.Close() })
	_, js := s.admin()
	x := &chaosRun{t: t, s: s, db: db, gate: newGate(),
		gateways: []string{s.procs["gateway-1"].addr, s.procs["gateway-2"].addr}}
	for r := range chaosRooms {
		room := fmt.Sprintf("chaos-%d", r)
		for i, gw := range x.gateways {
			x.senders = append(x.senders, &sender{c: newChatClient(t, gw, room, fmt.Sprintf("s%d-%d", r, i+1)), gate: x.gate})
			x.listeners = append(x.listeners, newChatClient(t, gw, room, fmt.Sprintf("l%d-%d", r, i+1)))
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, sd := range x.senders {
		x.wg.Go(func() { sd.run(ctx) })
	}

	restart := func(name string) func() { return func() { s.restart(name) } }
	kill9 := func(name string) func() error { return func() error { s.kill9(name); return nil } }
	term := func(name string) func() error { return func() error { return s.terminate(name) } }
	jsCtx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), 30*time.Second)
	}
	faults := []fault{
		{name: "none (baseline)"},
		{name: "history kill -9", inject: kill9("history"), down: down, heal: restart("history")},
		{name: "history SIGTERM", inject: term("history"), down: down, heal: restart("history")},
		{name: "gateway-1 kill -9", inject: kill9("gateway-1"), down: down, heal: restart("gateway-1")},
		{name: "gateway-2 SIGTERM", inject: term("gateway-2"), down: down, heal: restart("gateway-2")},
		{name: "bot kill -9", inject: kill9("bot"), down: down, heal: restart("bot")},
		{name: "bot SIGTERM", inject: term("bot"), down: down, heal: restart("bot")},
		{name: "sms-worker kill -9", inject: kill9("sms-worker"), down: down, heal: restart("sms-worker")},
		{name: "sms-worker SIGTERM", inject: term("sms-worker"), down: down, heal: restart("sms-worker")},
		// As long as the outage that once made the gateway report 671 stored
		// messages as failed.
		{name: "nats-server kill -9 for 8 s, restarted on its store", inject: func() error { s.killNATS(); return nil }, down: 8 * time.Second, heal: s.restartNATS},
		{name: "Postgres refuses connections (15 s)", inject: func() error { s.db.Cut(t); return nil }, down: 15 * time.Second, heal: func() { s.db.Restore(t) }},
		{name: "history consumer deleted", inject: func() error {
			c, done := jsCtx()
			defer done()
			return js.DeleteConsumer(c, stream.Chat, "history")
		}},
		{name: "CHAT stream deleted", settle: true, inject: func() error {
			c, done := jsCtx()
			defer done()
			return js.DeleteStream(c, stream.Chat)
		}},
		{name: "JetStream store full", inject: func() error {
			n := s.fillStore(js)
			t.Logf("the store refused more after %d MiB of filler", n>>20)
			return nil
		}, down: 5 * time.Second, heal: func() { s.emptyStore(js) }, during: x.storeFullVisible},
	}
	var results []phaseResult
	for i, f := range faults {
		r := x.phase(i, f)
		t.Logf("phase %d, %s: recovered in %v %s", i, f.name, r.recovered.Round(time.Millisecond), r.problem)
		results = append(results, r)
	}

	// The end: no new message; the last ones settle.
	x.gate.pause()
	testkit.WaitFor(t, "senders idle", func() bool { return x.gate.busy.Load() == 0 })
	cancel()
	x.wg.Wait()
	testkit.WaitForState(t, recoverWithin, "everything stored and seen", x.caughtUp)
	x.report(results)
}

// phase runs one fault under load and measures the recovery.
func (x *chaosRun) phase(i int, f fault) phaseResult {
	t := x.t
	r := phaseResult{fault: f.name, start: time.Now()}
	for _, l := range x.listeners {
		l.bounce() // resumes with ?since=
	}
	// One /sms per phase, sent as the fault strikes, by a user of its own
	// (the /sms limits are per user).
	to := fmt.Sprintf("rcpt-%d", i)
	x.sms = append(x.sms, to)
	op := newChatClient(t, x.gateways[i%2], "chaos-ops", fmt.Sprintf("op-%d", i))
	time.Sleep(loadBefore)
	if f.settle {
		x.gate.pause()
		testkit.WaitFor(t, "senders idle", func() bool { return x.gate.busy.Load() == 0 })
		testkit.WaitForState(t, recoverWithin, "everything stored and seen before "+f.name, x.caughtUp)
	}
	injected := time.Now()
	var problems []string
	if f.inject != nil {
		if err := f.inject(); err != nil {
			problems = append(problems, err.Error())
		}
	}
	x.gate.resume()
	var cmd sync.WaitGroup
	cmd.Go(func() {
		id := fmt.Sprintf("sms-%d", i)
		op.command("/sms "+to, id, func() bool { return op.hasNotice(id) })
	})
	if f.down > 0 {
		time.Sleep(f.down)
	}
	if f.during != nil {
		if err := f.during(); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if f.heal != nil {
		f.heal()
	}
	healed := time.Now()
	r.down = healed.Sub(injected)
	cmd.Wait()
	r.recovered = -1
	deadline := healed.Add(recoverWithin)
	for time.Now().Before(deadline) {
		ok, _ := x.recoveredSince(healed)
		if ok {
			r.recovered = time.Since(healed)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r.recovered < 0 {
		_, why := x.recoveredSince(healed)
		problems = append(problems, "not recovered: "+why)
		t.Errorf("%s: not recovered within %v: %s", f.name, recoverWithin, why)
	}
	r.problem = strings.Join(problems, "; ")
	return r
}

// recoveredSince: every sender has had a message sent after t
// acknowledged, and everything is stored and seen.
func (x *chaosRun) recoveredSince(t time.Time) (bool, string) {
	for _, s := range x.senders {
		if !s.ackedSince(t) {
			return false, s.c.user + " has no new message acknowledged"
		}
	}
	return x.caughtUp()
}

// caughtUp: the database holds every acknowledged message, and every
// client has received the newest stored message of its room.
func (x *chaosRun) caughtUp() (bool, string) {
	acked := 0
	for _, s := range x.senders {
		for _, m := range s.snapshot() {
			if !m.acked.IsZero() {
				acked++
			}
		}
	}
	tops, total, err := x.newest()
	if err != nil {
		return false, err.Error()
	}
	if total < acked {
		return false, fmt.Sprintf("%d of %d acknowledged messages stored", total, acked)
	}
	for _, c := range x.clients() {
		top := tops[c.room]
		c.mu.Lock()
		epoch, last := c.epoch, c.last
		c.mu.Unlock()
		if epoch != top.epoch || last < top.seq {
			return false, fmt.Sprintf("%s in %s at seq %d of epoch %d; newest stored: %d of epoch %d", c.user, c.room, last, epoch, top.seq, top.epoch)
		}
	}
	return true, ""
}

type position struct {
	epoch int64
	seq   uint64
}

// newest is the newest stored (epoch, seq) per room, and the number of
// user messages stored in the load's rooms.
func (x *chaosRun) newest() (map[string]position, int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rows, err := x.db.QueryContext(ctx, `SELECT room, epoch, max(seq), count(*) FROM messages
		WHERE room LIKE 'chaos-_' AND kind = 'user' GROUP BY room, epoch`)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	tops := map[string]position{}
	total := 0
	for rows.Next() {
		var room string
		var p position
		var n int
		if err := rows.Scan(&room, &p.epoch, &p.seq, &n); err != nil {
			return nil, 0, err
		}
		total += n
		if p.epoch > tops[room].epoch {
			tops[room] = p
		}
	}
	return tops, total, rows.Err()
}

// clients is every connection of the load: senders and listeners.
func (x *chaosRun) clients() []*chatClient {
	out := append([]*chatClient{}, x.listeners...)
	for _, s := range x.senders {
		out = append(out, s.c)
	}
	return out
}

// storeFullVisible: with the store full, the gateways say so on /readyz.
func (x *chaosRun) storeFullVisible() error {
	for _, gw := range x.gateways {
		_, body, err := testkit.Get("http://" + gw + "/readyz")
		if err != nil {
			return fmt.Errorf("readyz of %s: %w", gw, err)
		}
		if !strings.Contains(body, "storage is full") {
			return fmt.Errorf("%s /readyz says %q while the store is full", gw, body)
		}
	}
	return nil
}

// row is one stored message of the load.
type row struct {
	room           string
	epoch          int64
	seq            uint64
	user, text, id string
}

func (x *chaosRun) rows() []row {
	t := x.t
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rs, err := x.db.QueryContext(ctx, `SELECT room, epoch, seq, "user", text, client_id FROM messages
		WHERE room LIKE 'chaos-_' AND kind = 'user' ORDER BY room, epoch, seq`)
	if err != nil {
		t.Fatalf("read the stored messages: %v", err)
	}
	defer rs.Close()
	var out []row
	for rs.Next() {
		var r row
		if err := rs.Scan(&r.room, &r.epoch, &r.seq, &r.user, &r.text, &r.id); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// report prints the table and fails the test on any loss or duplicate.
func (x *chaosRun) report(results []phaseResult) {
	t := x.t
	stored := x.rows()
	byText := map[string]int{}
	byID := map[string]int{}
	bySeq := map[string]int{}
	storedID := map[string]bool{}
	for _, r := range stored {
		byText[r.text]++
		byID[r.room+"/"+r.user+"/"+r.id]++
		bySeq[fmt.Sprintf("%s/%d/%d", r.room, r.epoch, r.seq)]++
		storedID[r.user+"/"+r.id] = true
	}

	type tally struct{ sent, acked, gaveUp, told, toldStored, unsure, lost int }
	perPhase := make([]tally, len(results))
	var all tally
	known := map[string]bool{}
	phaseOf := func(at time.Time) int {
		i := sort.Search(len(results), func(i int) bool { return results[i].start.After(at) }) - 1
		return max(i, 0)
	}
	var lost []string
	for _, s := range x.senders {
		for _, m := range s.snapshot() {
			known[m.text] = true
			p := &perPhase[phaseOf(m.started)]
			for _, tl := range []*tally{p, &all} {
				tl.sent++
				tl.unsure += m.unsure
				tl.told += len(m.told)
				if !m.acked.IsZero() {
					tl.acked++
				}
				if m.gaveUp {
					tl.gaveUp++
				}
				for _, id := range m.told {
					if storedID[s.c.user+"/"+id] {
						tl.toldStored++
					}
				}
				if !m.acked.IsZero() && byText[m.text] == 0 {
					tl.lost++
				}
			}
			if !m.acked.IsZero() && byText[m.text] == 0 {
				lost = append(lost, m.text)
			}
		}
	}
	dupText, dupID, dupSeq, unknown := 0, 0, 0, 0
	for text, n := range byText {
		if n > 1 {
			dupText += n - 1
		}
		if !known[text] {
			unknown++
		}
	}
	for _, n := range byID {
		if n > 1 {
			dupID += n - 1
		}
	}
	for _, n := range bySeq {
		if n > 1 {
			dupSeq += n - 1
		}
	}

	// What each client saw, against the database: per run of seqs
	// between resets, every stored message of its room and epoch from the
	// first one it got, once, in order.
	rowsOf := map[string][]row{} // room/epoch
	for _, r := range stored {
		k := fmt.Sprintf("%s/%d", r.room, r.epoch)
		rowsOf[k] = append(rowsOf[k], r)
	}
	gaps, seenDups, mismatched, resets, badResets := 0, 0, 0, 0, 0
	var clientProblems []string
	for _, c := range x.clients() {
		c.mu.Lock()
		segs := append([]segment{}, c.segments...)
		problems := append([]string{}, c.problems...)
		resets += c.resets
		if c.resets > 1 {
			badResets += c.resets - 1 // one stream deletion: one reset
		}
		c.mu.Unlock()
		seenDups += len(problems)
		for _, p := range problems {
			clientProblems = append(clientProblems, c.user+": "+p)
		}
		for _, seg := range segs {
			if len(seg.msgs) == 0 {
				continue
			}
			got := map[uint64]chat.Message{}
			for _, m := range seg.msgs {
				got[m.Seq] = m
			}
			missing := 0
			for _, r := range rowsOf[fmt.Sprintf("%s/%d", c.room, seg.epoch)] {
				if r.seq < seg.msgs[0].Seq {
					continue
				}
				m, ok := got[r.seq]
				if !ok {
					missing++
					continue
				}
				if m.Text != r.text {
					mismatched++
					clientProblems = append(clientProblems, fmt.Sprintf("%s: seq %d is %q, stored %q", c.user, r.seq, m.Text, r.text))
				}
			}
			if missing > 0 {
				clientProblems = append(clientProblems, fmt.Sprintf("%s: %d stored messages of epoch %d missing after seq %d", c.user, missing, seg.epoch, seg.msgs[0].Seq))
			}
			gaps += missing
		}
	}

	// Each SMS sent once: one confirmation stored, one "sms sent" logged.
	smsProblems := 0
	var smsNotes []string
	for _, to := range x.sms {
		n := queryInt(t, x.db, "SELECT count(*) FROM messages WHERE text LIKE $1", "An SMS has been sent to "+to+" %")
		logged := 0
		for _, p := range x.s.processes() {
			if !strings.HasPrefix(p.Name, "sms-worker") {
				continue
			}
			for _, line := range p.Lines() {
				if strings.Contains(line, `"msg":"sms sent"`) && strings.Contains(line, `"to":"`+to+`"`) {
					logged++
				}
			}
		}
		if n != 1 || logged != 1 {
			smsProblems++
			smsNotes = append(smsNotes, fmt.Sprintf("%s: %d confirmations, sent %d times", to, n, logged))
		}
	}
	violations := 0
	for _, p := range x.s.processes() {
		if violation.MatchString(p.Output()) {
			violations++
			t.Errorf("%s logged a permission violation:\n%s", p.Name, grepLines(p.Output(), violation))
		}
	}

	var b strings.Builder
	fmt.Fprintf(&b, "\nchaos: %d rooms, %d senders, %d listeners, 2 gateways, history on Postgres, bot, sms-worker, accounts; one nats-server\n\n",
		chaosRooms, len(x.senders), len(x.listeners))
	fmt.Fprintf(&b, "| fault | down | recovered in | sent | acked | told unconfirmed | told not sent | told not sent but stored | lost |\n")
	fmt.Fprintf(&b, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for i, r := range results {
		p := perPhase[i]
		rec := "not recovered"
		if r.recovered >= 0 {
			rec = fmt.Sprintf("%.1f s", r.recovered.Seconds())
		}
		name := r.fault
		if r.problem != "" {
			name += " (" + r.problem + ")"
		}
		fmt.Fprintf(&b, "| %s | %.1f s | %s | %d | %d | %d | %d | %d | %d |\n", name, r.down.Seconds(), rec, p.sent, p.acked, p.unsure, p.told, p.toldStored, p.lost)
	}
	fmt.Fprintf(&b, "\n| total | |\n| --- | ---: |\n")
	for _, kv := range []struct {
		k string
		v int
	}{
		{"messages sent (distinct texts)", all.sent},
		{"acknowledged", all.acked},
		{"not delivered within 2 min", all.gaveUp},
		{"told unconfirmed (resent with the same client_id)", all.unsure},
		{"told not sent (retyped with a new client_id)", all.told},
		{"told not sent but stored", all.toldStored},
		{"stored rows", len(stored)},
		{"acknowledged but not stored (lost)", all.lost},
		{"duplicates by text", dupText},
		{"duplicates by client_id", dupID},
		{"duplicates by (room, epoch, seq)", dupSeq},
		{"stored but never sent", unknown},
		{"clients: stored messages missing (gaps)", gaps},
		{"clients: duplicates or out of order", seenDups},
		{"clients: text differs from the stored one", mismatched},
		{"clients: resets (one per client for the stream deletion)", resets},
		{"SMS not sent exactly once", smsProblems},
		{"processes with a permission violation", violations},
	} {
		fmt.Fprintf(&b, "| %s | %d |\n", kv.k, kv.v)
	}
	fmt.Print(b.String())
	if path := os.Getenv("CHAOS_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Error(err)
		}
	}

	for _, check := range []struct {
		what string
		n    int
	}{
		{"messages not delivered", all.gaveUp}, {"messages told not sent but stored", all.toldStored},
		{"acknowledged messages lost", all.lost}, {"duplicates by text", dupText}, {"duplicates by client_id", dupID},
		{"duplicates by (room, epoch, seq)", dupSeq}, {"stored messages never sent", unknown},
		{"gaps seen by clients", gaps}, {"duplicates seen by clients", seenDups}, {"texts differing", mismatched},
		{"resets beyond one per client", badResets}, {"SMS not sent exactly once", smsProblems},
	} {
		if check.n > 0 {
			t.Errorf("%d %s", check.n, check.what)
		}
	}
	for i, p := range clientProblems {
		if i == 20 {
			t.Errorf("... %d more client problems", len(clientProblems)-i)
			break
		}
		t.Error(p)
	}
	for _, n := range smsNotes {
		t.Error(n)
	}
	if len(lost) > 0 {
		t.Errorf("lost: %v", lost[:min(len(lost), 20)])
	}
	for _, r := range results {
		if r.problem != "" {
			t.Errorf("%s: %s", r.fault, r.problem)
		}
	}
}
