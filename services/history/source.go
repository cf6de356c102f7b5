package history

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natschat/chat/services/history/internal/store"
	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/stream"
)

// source is the CHAT stream as history reads it: the stream, its epoch
// (the creation time, which changes when the stream is deleted and created
// again or loses its store, and sequences start over) and the durable
// consumer. History owns the stream: setup creates whichever of the two is
// missing, so the service heals without a restart.
type source struct {
	nc          *nats.Conn
	js          jetstream.JetStream
	st          *store.Store
	log         *slog.Logger
	streamCfg   jetstream.StreamConfig
	consumerCfg jetstream.ConsumerConfig
	// margin is how far below the database's highest seq a consumer
	// created again starts: when the old one vanished, up to MaxAckPending
	// messages may have been delivered to instances and not stored yet.
	// Starting lower only costs duplicates, which the unique key absorbs.
	margin uint64

	mu    sync.Mutex
	cons  jetstream.Consumer
	epoch int64
}

func newSource(nc *nats.Conn, st *store.Store, cfg Config, log *slog.Logger) (*source, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	cc := jetstream.ConsumerConfig{
		Durable:       consumerName,
		Description:   "history service: stores every chat message in the database",
		FilterSubject: chat.RoomWildcard,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		// Room for a full batch per instance of a few instances; beyond it
		// the server holds messages back instead of letting them time out.
		MaxAckPending: 4 * cfg.BatchSize,
	}
	return &source{
		nc: nc, js: js, st: st, log: log,
		streamCfg:   stream.ChatConfig(stream.Options{Replicas: cfg.Replicas, ChatMaxBytes: cfg.ChatMaxBytes}),
		consumerCfg: cc,
		margin:      uint64(cc.MaxAckPending),
	}, nil
}

// setup makes sure the stream and the consumer exist, creating what is
// missing, and learns the stream's epoch. It records the epoch in the
// database first, so that no message of it is stored before it is known.
func (s *source) setup(ctx context.Context) error {
	str, err := stream.Ensure(ctx, s.js, s.streamCfg)
	if err != nil {
		return err
	}
	epoch := chat.EpochOf(str.CachedInfo().Created)
	if err := s.st.AddEpoch(ctx, epoch); err != nil {
		return err
	}
	cons, err := s.js.Consumer(ctx, stream.Chat, consumerName)
	switch {
	case err == nil:
		cons, err = s.update(ctx, cons)
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		cons, err = s.create(ctx, epoch)
	}
	if err != nil {
		return fmt.Errorf("consumer %s: %w", consumerName, err)
	}
	s.mu.Lock()
	old := s.epoch
	s.cons, s.epoch = cons, epoch
	s.mu.Unlock()
	if old != 0 && old != epoch {
		s.log.Warn("the chat stream started over: storing in a new epoch", "old_epoch", old, "epoch", epoch)
	}
	return nil
}

// create creates the consumer. In an epoch with messages stored already
// the consumer's position was lost with it: it starts a margin below the
// highest stored seq instead of replaying the whole stream.
func (s *source) create(ctx context.Context, epoch int64) (jetstream.Consumer, error) {
	high, err := s.st.HighWater(ctx, epoch)
	if err != nil {
		return nil, err
	}
	cfg := s.consumerCfg
	if high > s.margin {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = high - s.margin + 1
	}
	cons, err := s.js.CreateConsumer(ctx, stream.Chat, cfg)
	if errors.Is(err, jetstream.ErrConsumerExists) {
		// Another instance was first, maybe from another start position;
		// either is safe.
		return s.js.Consumer(ctx, stream.Chat, consumerName)
	}
	if err != nil {
		return nil, err
	}
	s.log.Info("created the chat consumer", "consumer", consumerName, "epoch", epoch, "stored_high_seq", high, "start_seq", max(cfg.OptStartSeq, 1))
	return cons, nil
}

// update brings an existing consumer's settings up to date, keeping where
// it delivers from (which cannot change).
func (s *source) update(ctx context.Context, cons jetstream.Consumer) (jetstream.Consumer, error) {
	cur := cons.CachedInfo().Config
	cfg := s.consumerCfg
	cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = cur.DeliverPolicy, cur.OptStartSeq, cur.OptStartTime
	return s.js.UpdateConsumer(ctx, stream.Chat, cfg)
}

// current returns the consumer and the epoch setup last found.
func (s *source) current() (jetstream.Consumer, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cons, s.epoch
}

// streamEpoch asks the server for the stream's epoch now.
func (s *source) streamEpoch(ctx context.Context) (int64, error) {
	str, err := s.js.Stream(ctx, stream.Chat)
	if err != nil {
		return 0, fmt.Errorf("chat stream: %w", err)
	}
	return chat.EpochOf(str.CachedInfo().Created), nil
}

// nextSubject is where pull requests for the consumer go.
func nextSubject() string {
	return fmt.Sprintf("$JS.API.CONSUMER.MSG.NEXT.%s.%s", stream.Chat, consumerName)
}
