package gateway

import (
	"context"
	"errors"
	"fmt"

	"github.com/natschat/chat/shared/chat"
)

// errResumeTooFar means a resume would carry more than the configured maximum,
// or cannot be proven complete: the client gets a reset instead.
var errResumeTooFar = errors.New("resume too far behind")

// backlog reads the messages a client missed. The database (through the
// history service) holds everything up to its stored_through sequence; the
// CHAT stream holds the newest messages whether or not history has written
// them yet. Reading both is what makes a join gap-free while history lags or
// is down.
type backlog struct {
	src source
	// epoch is the stream's current epoch (nil: not checked). History
	// rows of another epoch (a history that has not seen the stream start
	// over yet) have seqs that mean nothing here.
	epoch func() int64
}

// history asks the history service, refusing an answer about another epoch.
func (b backlog) history(ctx context.Context, room string, req chat.HistoryRequest) (chat.HistoryResponse, error) {
	resp, err := b.src.history(ctx, room, req)
	if err == nil && b.epoch != nil && resp.Epoch != 0 && resp.Epoch != b.epoch() {
		return chat.HistoryResponse{}, fmt.Errorf("history answers for epoch %d, the stream is in %d", resp.Epoch, b.epoch())
	}
	return resp, err
}

// latest returns up to n of room's newest messages with seq <= upTo, in seq
// order, and whether older ones exist.
func (b backlog) latest(ctx context.Context, room string, upTo uint64, n int) ([]chat.Message, bool, error) {
	if upTo == 0 || n <= 0 {
		return nil, false, nil
	}
	resp, herr := b.history(ctx, room, chat.HistoryRequest{Before: upTo + 1, Limit: n})
	stored := storedRows(resp)
	if herr == nil && resp.StoredThrough >= upTo {
		return stored, resp.HasMore, nil
	}
	from := uint64(1)
	if herr == nil {
		from = resp.StoredThrough + 1
	}
	tail, older, err := b.tail(ctx, room, from, upTo, n)
	if err != nil {
		return nil, false, err
	}
	need := n - len(tail)
	if need <= 0 {
		return tail, older || len(stored) > 0 || resp.HasMore, nil
	}
	hasMore := resp.HasMore
	if len(stored) > need {
		stored, hasMore = stored[len(stored)-need:], true
	}
	return append(stored, tail...), hasMore, nil
}

// tailWindow is the first stretch of stream sequences tail reads back
// from its end; each further try reads tailGrowth times as far.
const (
	tailWindow = 1024
	tailGrowth = 16
)

// tail returns up to n of room's newest messages with from <= seq <= upTo
// from the stream, and whether the room has older ones in that range (or
// may have: the scan stopped once it had n). It reads backwards in growing
// windows, so a join while history is down costs a read of about the last
// n messages, not of the whole stream since from.
func (b backlog) tail(ctx context.Context, room string, from, upTo uint64, n int) ([]chat.Message, bool, error) {
	from = max(from, 1)
	for window := uint64(tailWindow); ; window *= tailGrowth {
		lo := from
		if upTo >= from+window {
			lo = upTo - window + 1
		}
		msgs, dropped, err := b.streamRange(ctx, room, lo, upTo, n)
		if err != nil {
			return nil, false, err
		}
		if len(msgs) >= n || lo == from {
			return msgs, dropped > 0 || lo > from, nil
		}
	}
}

// after returns every message of room with since < seq <= upTo, in seq order.
// It fails with errResumeTooFar if there are more than max, or if history is
// unreachable and the stream no longer holds everything after since.
func (b backlog) after(ctx context.Context, room string, since, upTo uint64, max int) ([]chat.Message, error) {
	if since >= upTo {
		return nil, nil
	}
	// History caps its pages (at 500): read page after page.
	var (
		stored []chat.Message
		herr   error
		from   = since + 1
	)
	for cursor := since; ; {
		resp, err := b.history(ctx, room, chat.HistoryRequest{After: cursor, Before: upTo + 1, Limit: max + 1 - len(stored)})
		if err != nil {
			herr, stored = err, nil
			break
		}
		rows := storedRows(resp)
		stored = append(stored, rows...)
		if resp.StoredThrough >= from {
			from = resp.StoredThrough + 1
		}
		if len(stored) > max {
			return nil, errResumeTooFar
		}
		// Rows above stored_through end the page early: the rest comes
		// from the stream.
		if !resp.HasMore || len(rows) == 0 || len(rows) < len(resp.Messages) {
			break
		}
		cursor = rows[len(rows)-1].Seq
	}
	if herr != nil {
		from = since + 1 // all of it from the stream, if it still holds it
		first, err := b.src.firstSeq(ctx)
		if err != nil {
			return nil, err
		}
		if from < first {
			return nil, errResumeTooFar
		}
	}
	if from > upTo {
		return stored, nil
	}
	tail, dropped, err := b.streamRange(ctx, room, from, upTo, max+1)
	if err != nil {
		return nil, err
	}
	if dropped > 0 || len(stored)+len(tail) > max {
		return nil, errResumeTooFar
	}
	return append(stored, tail...), nil
}

// storedRows keeps the rows history is sure of: a row above stored_through
// may sit next to a gap another history instance has not committed yet, so
// those come from the stream instead.
func storedRows(resp chat.HistoryResponse) []chat.Message {
	rows := resp.Messages[:0:0]
	for _, m := range resp.Messages {
		if m.Seq <= resp.StoredThrough {
			rows = append(rows, m)
		}
	}
	return rows
}

// streamRange reads room's messages with from <= seq <= to from the stream,
// in order, keeping only the newest keep (0: all). dropped counts the older
// ones it skipped.
func (b backlog) streamRange(ctx context.Context, room string, from, to uint64, keep int) (msgs []chat.Message, dropped int, err error) {
	err = b.src.streamEach(ctx, room, from, to, func(batch []chat.Message, _ uint64) error {
		msgs = append(msgs, batch...)
		if keep > 0 && len(msgs) >= 2*keep {
			dropped += len(msgs) - keep
			msgs = append(msgs[:0], msgs[len(msgs)-keep:]...)
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	if keep > 0 && len(msgs) > keep {
		dropped += len(msgs) - keep
		msgs = msgs[len(msgs)-keep:]
	}
	return msgs, dropped, nil
}
