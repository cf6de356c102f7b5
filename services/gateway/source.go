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

// source is where stored messages come from: the history service (the
// database) and the CHAT stream. natsSource is the real one; the join and
// backlog tests use a fake that plays history lagging or down.
type source interface {
	// history asks the history service; an error means it is unreachable.
	history(ctx context.Context, room string, req chat.HistoryRequest) (chat.HistoryResponse, error)
	// streamEach reads room's messages with from <= seq <= to from the
	// stream, in order, a batch at a time, with the last sequence read
	// (garbage, which is skipped, included).
	streamEach(ctx context.Context, room string, from, to uint64, each func(batch []chat.Message, through uint64) error) error
	// firstSeq is the oldest sequence the stream still holds.
	firstSeq(ctx context.Context) (uint64, error)
}

// natsSource reads history over NATS request/reply and the CHAT stream
// through JetStream.
type natsSource struct {
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
func (s *natsSource) lastSeq(ctx context.Context, room string) (uint64, error) {
	req, _ := json.Marshal(map[string]string{"last_by_subj": chat.RoomSubject(room)})
	msg, err := s.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+stream.Chat, req)
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

func (s *natsSource) history(ctx context.Context, room string, req chat.HistoryRequest) (chat.HistoryResponse, error) {
	var resp chat.HistoryResponse
	data, _ := json.Marshal(req)
	ctx, cancel := context.WithTimeout(ctx, s.historyTimeout)
	defer cancel()
	msg, err := s.nc.RequestWithContext(ctx, chat.HistorySubject(room), data)
	if err != nil {
		s.log.Debug("history unavailable, reading the stream", "room", room, "err", err)
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

func (s *natsSource) firstSeq(ctx context.Context) (uint64, error) {
	info, err := s.chat.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("chat stream info: %w", err)
	}
	return info.State.FirstSeq, nil
}

// streamEach hands batches of at most 256 messages (the slice reused) to
// each. Each fetch has its own time limit, so a long range is read in
// bounded memory and bounded steps. Garbage is skipped the way every
// reader of CHAT skips it.
func (s *natsSource) streamEach(ctx context.Context, room string, from, to uint64, each func(batch []chat.Message, through uint64) error) error {
	if from == 0 {
		from = 1
	}
	if from > to {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	cons, err := s.chat.CreateConsumer(cctx, jetstream.ConsumerConfig{
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
		_ = s.chat.DeleteConsumer(dctx, cons.CachedInfo().Name)
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
