package gateway

import (
	"cmp"
	"context"
	"errors"
	"slices"

	"github.com/natschat/chat/shared/chat"
)

// Joining a room is where "no gap, no duplicate" is decided. In order:
//
//  1. members.add puts the client in the fan-out, in the joining state,
//     and returns upTo, the last sequence fanned out before it: every
//     later message will reach the client's pending frames.
//  2. joiner.first builds the backlog, which ends exactly at upTo: the
//     newest messages for a fresh join, or everything after since for a
//     resume (a reset with the newest messages if that is too much).
//  3. client.goLive writes the backlog, then the pending frames, then
//     hands over to the send queue.
//
// A resuming client that is ahead of this gateway's room (it came from a
// gateway whose feed was a little faster) skips the live messages it has:
// client.skipThrough.

// joiner decides the first frame of a connection.
type joiner struct {
	backlog backlog
	// epoch is the stream's current epoch; reaches reports whether the
	// stream has got as far as a seq (a resume beyond it comes from
	// another epoch).
	epoch   func() int64
	reaches func(ctx context.Context, seq uint64) bool
	// onJoin is how many messages a fresh join gets; resumeMax the most a
	// resume carries before it becomes a reset.
	onJoin, resumeMax int
}

// position is where a client asks to start: after since in epoch for a
// resume, else the newest messages.
type position struct {
	since  uint64
	resume bool
	epoch  int64 // 0: not given (older clients)
}

// subscribe runs the join handshake for c, which is to receive the room's
// messages from p on.
func (r *room) subscribe(ctx context.Context, c *client, j joiner, p position) error {
	upTo, recent := r.members.add(c)
	r.presence.joined(c)
	f, err := j.first(ctx, r.name, p, upTo, recent)
	if err != nil {
		return err
	}
	if f.Reset {
		// The client drops what it had: whatever comes live is new to it.
		c.mu.Lock()
		c.skipThrough = 0
		c.mu.Unlock()
	}
	return c.goLive(mustJSON(f))
}

// first builds the backlog frame: the newest messages, or for a resume
// every message after since; both up to upTo.
//
// recent, the room's newest messages ending at upTo and complete since the
// room started on this gateway, answers most joins and short resumes
// without a history request or a stream read: a reconnect storm costs
// nothing but frames.
func (j joiner) first(ctx context.Context, room string, p position, upTo uint64, recent []chat.Message) (chat.HistoryFrame, error) {
	f := chat.HistoryFrame{Type: chat.FrameHistory, Messages: []chat.Message{}, Epoch: j.epoch()}
	since, resume := p.since, p.resume
	if resume && (p.epoch != 0 && p.epoch != f.Epoch || p.epoch == 0 && !j.reaches(ctx, since)) {
		// The seq is of a stream that has since started over.
		resume, f.Reset = false, true
	}
	if resume && since >= upTo {
		// Nothing missed, or ahead of this gateway: what is newer than
		// since arrives live.
		return f, nil
	}
	if resume && len(recent) > 0 && recent[0].Seq <= since+1 {
		i, _ := slices.BinarySearchFunc(recent, since+1, func(m chat.Message, seq uint64) int { return cmp.Compare(m.Seq, seq) })
		if len(recent)-i <= j.resumeMax {
			f.Messages = recent[i:]
			return f, nil
		}
	}
	if !resume && !f.Reset && j.onJoin > 0 && len(recent) >= j.onJoin {
		// Older messages surely exist only if the ring was ever trimmed;
		// saying has_more costs at most an empty page.
		f.Messages, f.HasMore = recent[len(recent)-j.onJoin:], true
		return f, nil
	}
	if resume {
		msgs, err := j.backlog.after(ctx, room, since, upTo, j.resumeMax)
		switch {
		case err == nil:
			// has_more is about messages older than the first: a resuming
			// client already has those.
			f.Messages = nonNil(msgs)
			return f, nil
		case !errors.Is(err, errResumeTooFar):
			return f, err
		}
		f.Reset = true
	}
	msgs, more, err := j.backlog.latest(ctx, room, upTo, j.onJoin)
	if err != nil {
		return f, err
	}
	f.Messages, f.HasMore = nonNil(msgs), more
	return f, nil
}

func nonNil(msgs []chat.Message) []chat.Message {
	if msgs == nil {
		return []chat.Message{}
	}
	return msgs
}
