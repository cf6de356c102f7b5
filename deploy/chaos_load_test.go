//go:build chaos

package deploy

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/natschat/chat/shared/chat"
)

// The load of the chaos suite: senders that behave like the web page, each
// on its own connection, one message at a time.

// sent is one message a user meant to send: its text is unique, and each
// try of it has a client_id. A try the chat reported as not sent (a
// definite error) is retyped as a new try with a new client_id, as a user
// would retype it: if the chat stored the first try anyway, the text is
// stored twice and the suite catches the lie.
type sent struct {
	text    string
	started time.Time
	ids     []string  // client_ids tried, in order
	told    []string  // client_ids told "not sent" (a definite error)
	unsure  int       // "unconfirmed" answers, resent with the same client_id
	acked   time.Time // zero: never acknowledged
	ackedID string
	gaveUp  bool
}

// gate pauses every sender between two messages.
type gate struct {
	mu     sync.Mutex
	open   chan struct{} // closed while senders may go on
	busy   atomic.Int32  // senders inside a message
	closed bool
}

func newGate() *gate {
	g := &gate{open: make(chan struct{})}
	close(g.open)
	return g
}

func (g *gate) pause() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.closed {
		g.open, g.closed = make(chan struct{}), true
	}
}

func (g *gate) resume() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		close(g.open)
		g.closed = false
	}
}

// enter waits until the gate is open and counts the sender as busy.
func (g *gate) enter(ctx context.Context) bool {
	for {
		g.mu.Lock()
		open := g.open
		g.mu.Unlock()
		select {
		case <-ctx.Done():
			return false
		case <-open:
		}
		g.busy.Add(1)
		g.mu.Lock()
		ok := !g.closed
		g.mu.Unlock()
		if ok {
			return true
		}
		g.busy.Add(-1) // closed meanwhile
	}
}

func (g *gate) leave() { g.busy.Add(-1) }

// sender sends message after message on one client until ctx ends.
type sender struct {
	c    *chatClient
	gate *gate

	mu   sync.Mutex
	msgs []*sent
}

const (
	// sendPause is the pause between two messages of a sender.
	sendPause = 60 * time.Millisecond
	// resendAfter is how long the page waits for an ack before it sends
	// the message again with the same client_id.
	resendAfter = 10 * time.Second
	// giveUpAfter is when a message counts as not delivered.
	giveUpAfter = 2 * time.Minute
)

func (s *sender) run(ctx context.Context) {
	for i := 0; ; i++ {
		if !s.gate.enter(ctx) {
			return
		}
		s.send(ctx, fmt.Sprintf("%s-%d", s.c.user, i))
		s.gate.leave()
		select {
		case <-ctx.Done():
			return
		case <-time.After(sendPause):
		}
	}
}

// send delivers one message as the page does: resent with the same
// client_id when no ack came within resendAfter, when the connection was
// made again meanwhile, or a moment after an "unconfirmed" answer; retyped
// with a new client_id after a definite "not sent".
func (s *sender) send(ctx context.Context, text string) {
	m := &sent{text: text, started: time.Now()}
	s.mu.Lock()
	s.msgs = append(s.msgs, m)
	s.mu.Unlock()
	deadline := m.started.Add(giveUpAfter)
	try := func() string {
		id := fmt.Sprintf("%s#%d", text, len(m.ids)+1)
		s.mu.Lock()
		m.ids = append(m.ids, id)
		s.mu.Unlock()
		return id
	}
	id := try()
	for ctx.Err() == nil {
		_, _, dials := s.c.outcome(id)
		s.c.write(text, id)
		resendAt := time.Now().Add(resendAfter)
		for {
			seq, code, nowDials := s.c.outcome(id)
			if seq == 0 {
				// An earlier try told "not sent" may be stored after all.
				for _, old := range m.ids {
					if sq, _, _ := s.c.outcome(old); sq > 0 {
						seq, id = sq, old
					}
				}
			}
			now := time.Now()
			if seq > 0 {
				s.mu.Lock()
				m.acked, m.ackedID = now, id
				s.mu.Unlock()
				return
			}
			if now.After(deadline) || ctx.Err() != nil {
				s.mu.Lock()
				m.gaveUp = ctx.Err() == nil
				s.mu.Unlock()
				return
			}
			if code == chat.CodeUnconfirmed {
				s.mu.Lock()
				m.unsure++
				s.mu.Unlock()
				resendAt = now.Add(time.Second)
				s.c.clearError(id)
				continue
			}
			if code != "" {
				s.mu.Lock()
				m.told = append(m.told, id)
				s.mu.Unlock()
				time.Sleep(300 * time.Millisecond) // an outage is not hammered
				id = try()
				break
			}
			if now.After(resendAt) || nowDials != dials {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// snapshot copies the sender's records.
func (s *sender) snapshot() []sent {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]sent, len(s.msgs))
	for i, m := range s.msgs {
		out[i] = *m
		out[i].ids = append([]string(nil), m.ids...)
		out[i].told = append([]string(nil), m.told...)
	}
	return out
}

// ackedSince reports whether a message started at or after t was acked.
func (s *sender) ackedSince(t time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.msgs) - 1; i >= 0; i-- {
		m := s.msgs[i]
		if m.started.Before(t) {
			return false
		}
		if !m.acked.IsZero() {
			return true
		}
	}
	return false
}
