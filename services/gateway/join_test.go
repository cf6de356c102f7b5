package gateway

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/natschat/chat/shared/chat"
)

// fakeSource plays the history service and the CHAT stream for one room,
// so that every branch of the join decision can be tested without NATS.
// Other rooms interleave in the stream: the room's sequences are every
// third one.
type fakeSource struct {
	stream []chat.Message // the room's messages in the stream, in seq order
	first  uint64         // the oldest sequence the stream still holds
	// history has the rows up to has; it reports storedThrough.
	has, storedThrough uint64
	historyDown        bool
	streamDown         bool
	epoch              int64 // of history's answers (0: none given)

	historyCalls int
	streamRead   int // messages handed out by streamEach
}

func newFakeSource(n int) *fakeSource {
	s := &fakeSource{first: 1}
	for i := 1; i <= n; i++ {
		s.stream = append(s.stream, chat.Message{Room: "r", Seq: uint64(3 * i), User: "u", Text: fmt.Sprintf("m%d", 3*i), Kind: chat.KindUser})
	}
	s.has, s.storedThrough = s.last(), s.last()
	return s
}

func (s *fakeSource) last() uint64 { return s.stream[len(s.stream)-1].Seq }

func (s *fakeSource) history(_ context.Context, _ string, req chat.HistoryRequest) (chat.HistoryResponse, error) {
	s.historyCalls++
	if s.historyDown {
		return chat.HistoryResponse{}, errors.New("history request: nats: no responders available for request")
	}
	limit := min(max(req.Limit, 1), 500)
	var rows []chat.Message
	for _, m := range s.stream {
		if m.Seq <= s.has && m.Seq > req.After && (req.Before == 0 || m.Seq < req.Before) {
			rows = append(rows, m)
		}
	}
	more := len(rows) > limit
	switch {
	case more && req.After > 0:
		rows = rows[:limit]
	case more:
		rows = rows[len(rows)-limit:]
	}
	return chat.HistoryResponse{Messages: rows, HasMore: more, StoredThrough: s.storedThrough, Epoch: s.epoch}, nil
}

func (s *fakeSource) streamEach(_ context.Context, _ string, from, to uint64, each func([]chat.Message, uint64) error) error {
	if s.streamDown {
		return errors.New("read room r from stream: nats: timeout")
	}
	var batch []chat.Message
	for _, m := range s.stream {
		if m.Seq < max(from, s.first) || m.Seq > to {
			continue
		}
		batch = append(batch, m)
		s.streamRead++
		if len(batch) == 256 {
			if err := each(batch, m.Seq); err != nil {
				return err
			}
			batch = nil
		}
	}
	if len(batch) > 0 {
		return each(batch, batch[len(batch)-1].Seq)
	}
	return nil
}

func (s *fakeSource) firstSeq(context.Context) (uint64, error) {
	if s.streamDown {
		return 0, errors.New("chat stream info: nats: timeout")
	}
	return s.first, nil
}

// seqs counts from..to in steps of 3: the room's sequences when from is
// one of them.
func seqs(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s += 3 {
		out = append(out, s)
	}
	return out
}

func seqsOf(msgs []chat.Message) []uint64 {
	out := []uint64{}
	for _, m := range msgs {
		out = append(out, m.Seq)
	}
	return out
}

// TestJoinerFirst covers every branch of the first frame of a connection.
// The room holds 3,000 messages (seq 3, 6, ..., 9000); a join gets 50, a
// resume at most 1,000.
func TestJoinerFirst(t *testing.T) {
	const onJoin, resumeMax = 50, 1000
	recentOf := func(s *fakeSource, n int) []chat.Message { return slices.Clone(s.stream[len(s.stream)-n:]) }
	tests := []struct {
		name   string
		setup  func(s *fakeSource) (recent []chat.Message, upTo uint64)
		since  uint64
		resume bool
		epoch  int64 // the client's; 2 (the current one) when 0; -1 for none

		want     []uint64
		hasMore  bool
		reset    bool
		wantErr  bool
		noSource bool // answered from recent: no history call, no stream read
		// historyIgnored: history answered, but every message came from
		// the stream.
		historyIgnored bool
		maxReadFrom    int // at most this many messages read from the stream (0: not checked)
	}{
		{
			name:  "fresh join served from recent",
			setup: func(s *fakeSource) ([]chat.Message, uint64) { return recentOf(s, 100), s.last() },
			want:  seqs(8853, 9000), hasMore: true, noSource: true,
		},
		{
			name:  "fresh join, room just started here: history",
			setup: func(s *fakeSource) ([]chat.Message, uint64) { return recentOf(s, 3), s.last() },
			want:  seqs(8853, 9000), hasMore: true,
		},
		{
			name:  "fresh join in an empty room",
			setup: func(s *fakeSource) ([]chat.Message, uint64) { return nil, 0 },
			want:  []uint64{},
		},
		{
			name:   "resume since inside the recent cache",
			setup:  func(s *fakeSource) ([]chat.Message, uint64) { return recentOf(s, 100), s.last() },
			since:  8970,
			resume: true,
			want:   seqs(8973, 9000), noSource: true,
		},
		{
			name:   "resume since older than the recent cache",
			setup:  func(s *fakeSource) ([]chat.Message, uint64) { return recentOf(s, 100), s.last() },
			since:  6000,
			resume: true,
			want:   seqs(6003, 9000),
		},
		{
			name:   "resume since newer than the room",
			setup:  func(s *fakeSource) ([]chat.Message, uint64) { return recentOf(s, 100), 8700 },
			since:  9000,
			resume: true,
			want:   []uint64{}, noSource: true,
		},
		{
			name:   "resume with nothing missed",
			setup:  func(s *fakeSource) ([]chat.Message, uint64) { return nil, s.last() },
			since:  9000,
			resume: true,
			want:   []uint64{}, noSource: true,
		},
		{
			name:   "resume too far behind: reset with the newest",
			setup:  func(s *fakeSource) ([]chat.Message, uint64) { return recentOf(s, 100), s.last() },
			since:  3,
			resume: true,
			want:   seqs(8853, 9000), hasMore: true, reset: true,
		},
		{
			name:   "resume from another epoch: reset, although since is in range",
			setup:  func(s *fakeSource) ([]chat.Message, uint64) { return recentOf(s, 100), s.last() },
			since:  8970,
			resume: true,
			epoch:  1,
			want:   seqs(8853, 9000), hasMore: true, reset: true,
		},
		{
			name:   "resume without an epoch beyond the stream's end: reset",
			setup:  func(s *fakeSource) ([]chat.Message, uint64) { return recentOf(s, 100), s.last() },
			since:  50_000,
			resume: true,
			epoch:  -1,
			want:   seqs(8853, 9000), hasMore: true, reset: true,
		},
		{
			name:   "resume without an epoch inside the stream",
			setup:  func(s *fakeSource) ([]chat.Message, uint64) { return recentOf(s, 100), s.last() },
			since:  8970,
			resume: true,
			epoch:  -1,
			want:   seqs(8973, 9000), noSource: true,
		},
		{
			name: "history lagging: stored rows, then the stream",
			setup: func(s *fakeSource) ([]chat.Message, uint64) {
				s.has, s.storedThrough = 8940, 8940
				return nil, s.last()
			},
			want: seqs(8853, 9000), hasMore: true,
		},
		{
			name: "history lagging with rows above stored_through: those come from the stream",
			setup: func(s *fakeSource) ([]chat.Message, uint64) {
				s.has, s.storedThrough = 8990, 8940
				// The rows above stored_through may sit beside a gap: the
				// stream is the truth for them.
				for i := range s.stream {
					if s.stream[i].Seq > 8940 {
						s.stream[i].Text = "from the stream"
					}
				}
				return nil, s.last()
			},
			since:  8900,
			resume: true,
			want:   seqs(8901, 9000),
		},
		{
			name: "history down: the join reads only the stream's tail",
			setup: func(s *fakeSource) ([]chat.Message, uint64) {
				s.historyDown = true
				return nil, s.last()
			},
			want: seqs(8853, 9000), hasMore: true, maxReadFrom: 400,
		},
		{
			name: "history down, resume inside the stream",
			setup: func(s *fakeSource) ([]chat.Message, uint64) {
				s.historyDown = true
				return nil, s.last()
			},
			since:  8000,
			resume: true,
			want:   seqs(8001, 9000),
		},
		{
			name: "history down, resume older than the stream holds: reset",
			setup: func(s *fakeSource) ([]chat.Message, uint64) {
				s.historyDown, s.first = true, 8500
				return nil, s.last()
			},
			since:  8400,
			resume: true,
			want:   seqs(8853, 9000), hasMore: true, reset: true,
		},
		{
			name: "stream ahead of the feed: the backlog stops at upTo",
			setup: func(s *fakeSource) ([]chat.Message, uint64) {
				s.has, s.storedThrough = 8700, 8700
				return nil, 8850
			},
			want: seqs(8703, 8850), hasMore: true,
		},
		{
			name: "stream ahead of the feed on resume",
			setup: func(s *fakeSource) ([]chat.Message, uint64) {
				s.historyDown = true
				return nil, 8850
			},
			since:  8800,
			resume: true,
			want:   seqs(8802, 8850),
		},
		{
			name: "history still in the stream's previous epoch: the stream answers",
			setup: func(s *fakeSource) ([]chat.Message, uint64) {
				s.epoch = 1
				return nil, s.last()
			},
			want: seqs(8853, 9000), hasMore: true, historyIgnored: true,
		},
		{
			name: "history and stream down",
			setup: func(s *fakeSource) ([]chat.Message, uint64) {
				s.historyDown, s.streamDown = true, true
				return nil, s.last()
			},
			wantErr: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := newFakeSource(3000)
			recent, upTo := tc.setup(src)
			j := joiner{backlog: backlog{src: src, epoch: func() int64 { return 2 }}, onJoin: onJoin, resumeMax: resumeMax,
				epoch: func() int64 { return 2 }, reaches: func(_ context.Context, seq uint64) bool { return seq <= src.last() }}
			epoch := tc.epoch
			switch {
			case epoch == -1:
				epoch = 0
			case epoch == 0 && tc.resume:
				epoch = 2
			}
			f, err := j.first(context.Background(), "r", position{since: tc.since, resume: tc.resume, epoch: epoch}, upTo, recent)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("got %d messages, want an error", len(f.Messages))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := seqsOf(f.Messages); !slices.Equal(got, tc.want) {
				t.Errorf("got seqs %v, want %v", short(got), short(tc.want))
			}
			for _, m := range f.Messages {
				if m.Seq > upTo {
					t.Errorf("backlog has seq %d beyond upTo %d: the feed delivers it live", m.Seq, upTo)
				}
				if m.Text == "from the stream" && m.Seq <= src.storedThrough {
					t.Errorf("seq %d came from the stream although stored", m.Seq)
				}
			}
			if f.Epoch != 2 {
				t.Errorf("epoch %d, want 2", f.Epoch)
			}
			if f.HasMore != tc.hasMore || f.Reset != tc.reset {
				t.Errorf("has_more %v reset %v, want %v %v", f.HasMore, f.Reset, tc.hasMore, tc.reset)
			}
			if tc.noSource && (src.historyCalls > 0 || src.streamRead > 0) {
				t.Errorf("%d history calls and %d stream reads, want none", src.historyCalls, src.streamRead)
			}
			if tc.historyIgnored && (src.historyCalls == 0 || src.streamRead < len(tc.want)) {
				t.Errorf("%d history calls, %d messages read from the stream: want history asked and ignored", src.historyCalls, src.streamRead)
			}
			if tc.maxReadFrom > 0 && src.streamRead > tc.maxReadFrom {
				t.Errorf("read %d messages from the stream for a join of %d", src.streamRead, onJoin)
			}
		})
	}
}

// short prints the ends of a long sequence list.
func short(s []uint64) string {
	if len(s) <= 6 {
		return fmt.Sprint(s)
	}
	return fmt.Sprintf("%v...%v (%d)", s[:3], s[len(s)-3:], len(s))
}

// TestMembersRecentIsBounded: the recent cache keeps at most 2*keep
// messages and keepBytes, and stays in seq order ending at the newest.
func TestMembersRecentIsBounded(t *testing.T) {
	m := newMembers(50, 20_000, newMetrics(&hub{rooms: map[string]*room{}}))
	for i := 1; i <= 1000; i++ {
		text := "short"
		if i%10 == 0 {
			text = string(make([]byte, 3000))
		}
		m.deliver(chat.Message{Room: "r", Seq: uint64(i), User: "u", Text: text, Kind: chat.KindUser, TS: time.Now()})
		if len(m.recent) > 100 || (m.recentBytes > 20_000 && len(m.recent) > 1) {
			t.Fatalf("after %d messages: %d kept, %d bytes", i, len(m.recent), m.recentBytes)
		}
	}
	if last := m.recent[len(m.recent)-1].Seq; last != 1000 || m.lastDelivered() != 1000 {
		t.Errorf("newest kept %d, last delivered %d, want 1000", last, m.lastDelivered())
	}
	if !slices.IsSortedFunc(m.recent, func(a, b chat.Message) int { return int(a.Seq) - int(b.Seq) }) {
		t.Error("recent is out of order")
	}
	total := 0
	for _, r := range m.recent {
		total += messageSize(r)
	}
	if total != m.recentBytes {
		t.Errorf("recentBytes %d, counted %d", m.recentBytes, total)
	}
}
