package history

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natschat/chat/services/history/internal/store"
	"github.com/natschat/chat/shared/chat"
)

// Query limits.
const (
	defaultHistoryLimit = 50
	maxHistoryLimit     = 500
	defaultRoomsLimit   = 100
	maxRoomsLimit       = 1000
	// floorTTL is how long an epoch and ack floor are reused. A stale floor
	// is smaller than the true one, which is safe: the gateway then reads a
	// little more from the stream. A stale epoch names the stream the floor
	// belongs to, which a gateway that has seen the new one notices.
	floorTTL = 200 * time.Millisecond
)

// querier answers history.room.<room> and history.rooms requests. NATS
// callbacks only hand requests to a bounded set of goroutines, so a slow
// database never blocks the subscription.
type querier struct {
	st      *store.Store
	src     *source
	log     *slog.Logger
	timeout time.Duration
	slots   chan struct{}
	wg      sync.WaitGroup

	mu      sync.Mutex
	epoch   int64
	floor   uint64
	floorAt time.Time
	// The epoch before the current one, looked up once per epoch.
	prevOf, prev int64
}

func newQuerier(st *store.Store, src *source, cfg Config, log *slog.Logger) *querier {
	return &querier{
		st: st, src: src, log: log,
		timeout: cfg.QueryTimeout,
		slots:   make(chan struct{}, cfg.QueryWorkers),
	}
}

func (q *querier) subscribe(nc *nats.Conn) ([]*nats.Subscription, error) {
	var subs []*nats.Subscription
	for subject, handler := range map[string]func(context.Context, *nats.Msg) any{
		chat.HistoryPrefix + "*": q.history,
		chat.HistoryRooms:        q.rooms,
	} {
		sub, err := nc.QueueSubscribe(subject, chat.HistoryQueue, q.dispatch(handler))
		if err != nil {
			for _, s := range subs {
				s.Unsubscribe()
			}
			return nil, fmt.Errorf("subscribe %s: %w", subject, err)
		}
		subs = append(subs, sub)
	}
	return subs, nil
}

// stop drains the subscriptions and waits for the queries in flight, so
// that their replies are sent before the connection is drained.
func (q *querier) stop(ctx context.Context, subs []*nats.Subscription) {
	for _, sub := range subs {
		closed := sub.StatusChanged(nats.SubscriptionClosed)
		if err := sub.Drain(); err != nil {
			sub.Unsubscribe()
			continue
		}
		select {
		case <-closed:
		case <-ctx.Done():
		}
	}
	done := make(chan struct{})
	go func() { q.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		q.log.Warn("history queries still running at shutdown")
	}
}

func (q *querier) dispatch(handle func(context.Context, *nats.Msg) any) nats.MsgHandler {
	return func(m *nats.Msg) {
		if m.Reply == "" {
			return // a publish, not a request: nobody to answer
		}
		select {
		case q.slots <- struct{}{}:
		default:
			q.respond(m, errorReply(m, "busy, retry later"))
			return
		}
		q.wg.Add(1)
		go func() {
			defer q.wg.Done()
			defer func() { <-q.slots }()
			ctx, cancel := context.WithTimeout(context.Background(), q.timeout)
			defer cancel()
			q.respond(m, handle(ctx, m))
		}()
	}
}

func (q *querier) respond(m *nats.Msg, reply any) {
	b, err := json.Marshal(reply)
	if err != nil {
		q.log.Error("encode reply", "subject", m.Subject, "err", err)
		return
	}
	if err := m.Respond(b); err != nil {
		q.log.Debug("send reply", "subject", m.Subject, "err", err)
	}
}

// errorReply is the error answer of the request m, in m's reply type.
func errorReply(m *nats.Msg, msg string) any {
	if m.Subject == chat.HistoryRooms {
		return chat.RoomsResponse{Rooms: []chat.Room{}, Error: msg}
	}
	return chat.HistoryResponse{Messages: []chat.Message{}, Error: msg}
}

func (q *querier) history(ctx context.Context, m *nats.Msg) any {
	fail := func(msg string) any { return chat.HistoryResponse{Messages: []chat.Message{}, Error: msg} }
	room, ok := chat.RoomFromSubject(m.Subject)
	if !ok {
		q.log.Debug("history request for an invalid room", "subject", m.Subject)
		return fail("invalid room name")
	}
	req, err := parseHistoryRequest(m.Data)
	if err != nil {
		q.log.Debug("bad history request", "subject", m.Subject, "err", err)
		return fail(err.Error())
	}
	// The floor must be read before the messages: every seq up to it was
	// committed before the query starts, so the query sees it. Read after,
	// it could cover a batch committed after the query's snapshot.
	epoch, through, err := q.position(ctx)
	if err != nil {
		q.log.Warn("history query: stored_through", "room", room, "err", err)
		return fail("history temporarily unavailable")
	}
	if req.Epoch != 0 && req.Epoch != epoch {
		// An earlier stream: gone, so nothing of it is still to come.
		epoch, through = req.Epoch, 0
	}
	msgs, hasMore, err := q.st.Messages(ctx, room, store.Query{Epoch: epoch, Before: req.Before, After: req.After, Limit: req.Limit})
	if err != nil {
		q.log.Warn("history query failed", "room", room, "err", err)
		return fail("history temporarily unavailable")
	}
	prev, err := q.previousEpoch(ctx, epoch)
	if err != nil {
		q.log.Warn("history query: previous epoch", "room", room, "err", err)
		return fail("history temporarily unavailable")
	}
	// Rows above stored_through may exist (a batch committed after the floor
	// was read) and are returned as they are: they are real messages, and
	// the gateway, which reads everything above stored_through from the
	// stream, discards them to avoid duplicates.
	return chat.HistoryResponse{Messages: msgs, HasMore: hasMore, StoredThrough: through, Epoch: epoch, PreviousEpoch: prev}
}

func parseHistoryRequest(data []byte) (chat.HistoryRequest, error) {
	var req chat.HistoryRequest
	if len(bytes.TrimSpace(data)) > 0 {
		if err := json.Unmarshal(data, &req); err != nil {
			return req, fmt.Errorf("invalid request: want {\"before\":seq,\"after\":seq,\"limit\":n} with non-negative integers")
		}
	}
	switch {
	case req.Limit < 0:
		return req, errors.New("invalid request: limit must not be negative")
	case req.Limit == 0:
		req.Limit = defaultHistoryLimit
	case req.Limit > maxHistoryLimit:
		req.Limit = maxHistoryLimit
	}
	if req.Epoch < 0 {
		return req, errors.New("invalid request: epoch must not be negative")
	}
	return req, nil
}

// position is the stream's current epoch and the sequence up to which every
// message of it is committed: the consumer's ack floor, since a message is
// acked only after its batch is committed (or, if garbage, terminated).
// The epoch is read before and after the floor, so the floor is known to
// be of that stream's consumer.
func (q *querier) position(ctx context.Context) (int64, uint64, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if time.Since(q.floorAt) < floorTTL {
		return q.epoch, q.floor, nil
	}
	epoch, err := q.src.streamEpoch(ctx)
	if err != nil {
		if !q.floorAt.IsZero() {
			return q.epoch, q.floor, nil // older, so smaller, so still true
		}
		return 0, 0, err
	}
	var floor uint64
	cons, _ := q.src.current()
	info, err := cons.Info(ctx)
	switch {
	case err == nil:
		floor = info.AckFloor.Stream
	case epoch == q.epoch && !q.floorAt.IsZero():
		floor = q.floor // older, so smaller, so still true
	default:
		// The consumer is being set up again: nothing of this epoch is
		// known to be stored, so a reader takes it all from the stream.
	}
	if again, err := q.src.streamEpoch(ctx); err != nil || again != epoch {
		floor = 0 // the stream changed under the floor: it may be another's
	}
	q.epoch, q.floor, q.floorAt = epoch, floor, time.Now()
	return epoch, floor, nil
}

// previousEpoch is the epoch recorded before epoch. The current epoch's is
// cached (epochs are only ever added after the ones known); one asked for
// by a request is looked up each time, so requests cannot fill a cache.
func (q *querier) previousEpoch(ctx context.Context, epoch int64) (int64, error) {
	q.mu.Lock()
	cached, prev := q.prevOf == epoch, q.prev
	current := epoch == q.epoch
	q.mu.Unlock()
	if cached {
		return prev, nil
	}
	prev, err := q.st.PreviousEpoch(ctx, epoch)
	if err != nil {
		return 0, err
	}
	if current {
		q.mu.Lock()
		q.prevOf, q.prev = epoch, prev
		q.mu.Unlock()
	}
	return prev, nil
}

type roomsRequest struct {
	Limit int `json:"limit"`
}

func (q *querier) rooms(ctx context.Context, m *nats.Msg) any {
	fail := func(msg string) any { return chat.RoomsResponse{Rooms: []chat.Room{}, Error: msg} }
	var req roomsRequest
	if len(bytes.TrimSpace(m.Data)) > 0 {
		if err := json.Unmarshal(m.Data, &req); err != nil {
			return fail(`invalid request: want {"limit":n}`)
		}
	}
	switch {
	case req.Limit < 0:
		return fail("invalid request: limit must not be negative")
	case req.Limit == 0:
		req.Limit = defaultRoomsLimit
	case req.Limit > maxRoomsLimit:
		req.Limit = maxRoomsLimit
	}
	rooms, err := q.st.Rooms(ctx, req.Limit)
	if err != nil {
		q.log.Warn("rooms query failed", "err", err)
		return fail("history temporarily unavailable")
	}
	return chat.RoomsResponse{Rooms: rooms}
}
