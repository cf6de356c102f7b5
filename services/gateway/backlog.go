package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/stream"
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
	nc             *nats.Conn
	chat           jetstream.Stream
	historyTimeout time.Duration
	log            *slog.Logger
}

// lastSeq is the sequence of room's newest message in the stream, 0 if none.
//
// It asks the stream leader (MSG.GET), not a direct get: with AllowDirect a
// follower that is still catching up may answer, and a sequence too low
// would make a joining client or a catch-up miss messages.
func (b *backlog) lastSeq(ctx context.Context, room string) (uint64, error) {
	req, _ := json.Marshal(map[string]string{"last_by_subj": chat.RoomSubject(room)})
	msg, err := b.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+stream.Chat, req)
	if err != nil {
		return 0, fmt.Errorf("last message of room %s: %w", room, err)
	}
	var resp struct {
		Message *struct {
			Seq uint64 `json:"seq"`
		} `json:"message"`
		Error *struct {
			Code    int    `json:"code"`
			ErrCode int    `json:"err_code"`
			Text    string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return 0, fmt.Errorf("last message of room %s: %w", room, err)
	}
	switch {
	case resp.Error != nil && resp.Error.Code == 404:
		return 0, nil // no message in the room yet
	case resp.Error != nil:
		return 0, fmt.Errorf("last message of room %s: %s", room, resp.Error.Text)
	case resp.Message == nil:
		return 0, fmt.Errorf("last message of room %s: empty reply", room)
	}
	return resp.Message.Seq, nil
}

// latest returns up to n of room's newest messages with seq <= upTo, in seq
// order, and whether older ones exist.
func (b *backlog) latest(ctx context.Context, room string, upTo uint64, n int) ([]chat.Message, bool, error) {
	if upTo == 0 || n <= 0 {
		return nil, false, nil
	}
	resp, herr := b.askHistory(ctx, room, chat.HistoryRequest{Before: upTo + 1, Limit: n})
	stored := storedRows(resp)
	if herr == nil && resp.StoredThrough >= upTo {
		return stored, resp.HasMore, nil
	}
	from := uint64(1)
	if herr == nil {
		from = resp.StoredThrough + 1
	}
	tail, dropped, err := b.streamRange(ctx, room, from, upTo, n)
	if err != nil {
		return nil, false, err
	}
	need := n - len(tail)
	if need <= 0 {
		return tail, dropped > 0 || len(stored) > 0 || resp.HasMore, nil
	}
	hasMore := resp.HasMore
	if len(stored) > need {
		stored, hasMore = stored[len(stored)-need:], true
	}
	return append(stored, tail...), hasMore, nil
}

// after returns every message of room with since < seq <= upTo, in seq order.
// It fails with errResumeTooFar if there are more than max, or if history is
// unreachable and the stream no longer holds everything after since.
func (b *backlog) after(ctx context.Context, room string, since, upTo uint64, max int) ([]chat.Message, error) {
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
		resp, err := b.askHistory(ctx, room, chat.HistoryRequest{After: cursor, Before: upTo + 1, Limit: max + 1 - len(stored)})
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
		info, err := b.chat.Info(ctx)
		if err != nil {
			return nil, fmt.Errorf("chat stream info: %w", err)
		}
		if from < info.State.FirstSeq {
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

func (b *backlog) askHistory(ctx context.Context, room string, req chat.HistoryRequest) (chat.HistoryResponse, error) {
	var resp chat.HistoryResponse
	data, _ := json.Marshal(req)
	ctx, cancel := context.WithTimeout(ctx, b.historyTimeout)
	defer cancel()
	msg, err := b.nc.RequestWithContext(ctx, chat.HistorySubject(room), data)
	if err != nil {
		b.log.Debug("history unavailable, reading the stream", "room", room, "err", err)
		return resp, fmt.Errorf("history request: %w", err)
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return chat.HistoryResponse{}, fmt.Errorf("history reply: %w", err)
	}
	if resp.Error != "" {
		return chat.HistoryResponse{}, fmt.Errorf("history: %s", resp.Error)
	}
	return resp, nil
}

// streamRange reads room's messages with from <= seq <= to from the stream,
// in order, keeping only the newest keep (0: all). dropped counts the older
// ones it skipped.
func (b *backlog) streamRange(ctx context.Context, room string, from, to uint64, keep int) (msgs []chat.Message, dropped int, err error) {
	err = b.streamEach(ctx, room, from, to, func(batch []chat.Message, _ uint64) error {
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

// streamEach reads room's messages with from <= seq <= to from the stream
// and hands them to each a batch at a time (at most 256, the slice reused),
// with the last sequence read, garbage included. Garbage is skipped the way
// every reader of CHAT skips it. Each fetch has its own time limit, so a
// long range is read in bounded memory and bounded steps.
func (b *backlog) streamEach(ctx context.Context, room string, from, to uint64, each func(batch []chat.Message, through uint64) error) error {
	if from == 0 {
		from = 1
	}
	if from > to {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	cons, err := b.chat.CreateConsumer(cctx, jetstream.ConsumerConfig{
		FilterSubject:     chat.RoomSubject(room),
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       from,
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		InactiveThreshold: 30 * time.Second,
	})
	cancel()
	if err != nil {
		return fmt.Errorf("read room %s from stream: %w", room, err)
	}
	defer func() {
		// A background context: the consumer must go even if ctx is done.
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = b.chat.DeleteConsumer(dctx, cons.CachedInfo().Name)
	}()
	batch := make([]chat.Message, 0, 256)
	pending := cons.CachedInfo().NumPending
	for pending > 0 {
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		fetched, err := cons.Fetch(int(min(pending, 256)), jetstream.FetchContext(fctx))
		if err != nil {
			cancel()
			return fmt.Errorf("read room %s from stream: %w", room, err)
		}
		got, through := 0, uint64(0)
		batch = batch[:0]
		for m := range fetched.Messages() {
			got++
			meta, err := m.Metadata()
			if err != nil {
				continue
			}
			pending = meta.NumPending
			if meta.Sequence.Stream > to {
				pending = 0
				break
			}
			through = meta.Sequence.Stream
			cm, err := chat.ParseMessage(m.Data(), meta.Timestamp)
			if err != nil {
				continue
			}
			cm.Room, cm.Seq = room, meta.Sequence.Stream
			batch = append(batch, cm)
		}
		// Stopping early cancels the rest of the fetch: only a failure of
		// the caller's context is an error then.
		cancel()
		if err := fetched.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) &&
			(!errors.Is(err, context.Canceled) || ctx.Err() != nil) {
			return fmt.Errorf("read room %s from stream: %w", room, err)
		}
		if got == 0 {
			return fmt.Errorf("read room %s from stream: no message within 5s, %d pending", room, pending)
		}
		if through > 0 {
			if err := each(batch, through); err != nil {
				return err
			}
		}
	}
	return nil
}
