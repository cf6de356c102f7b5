// Package stream defines the JetStream streams that more than one service
// needs, so that whichever service starts first creates them identically.
package stream

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natschat/chat/shared/chat"
)

// Stream names.
const (
	Chat = "CHAT"
	SMS  = "SMS"
)

// Options tunes the streams. The zero value is the single-node dev setup.
type Options struct {
	// Replicas is the JetStream replica count; 0 means 1. Use 3 on a cluster.
	Replicas int
	// ChatMaxAge bounds how long CHAT keeps messages; 0 means 7 days. The
	// database is the long-term store; the stream only has to outlive a
	// history outage.
	ChatMaxAge time.Duration
	// ChatMaxPerRoom bounds CHAT messages kept per room; 0 means 100,000.
	ChatMaxPerRoom int64
}

func (o Options) replicas() int {
	if o.Replicas <= 0 {
		return 1
	}
	return o.Replicas
}

// ChatConfig is the CHAT stream: it captures chat.room.* and gives every
// message its sequence, then republishes it with the Nats-Sequence and
// Nats-Last-Sequence headers to chat.feed.<room> for live fan-out.
func ChatConfig(o Options) jetstream.StreamConfig {
	maxAge := o.ChatMaxAge
	if maxAge <= 0 {
		maxAge = 7 * 24 * time.Hour
	}
	perRoom := o.ChatMaxPerRoom
	if perRoom <= 0 {
		perRoom = 100_000
	}
	return jetstream.StreamConfig{
		Name:              Chat,
		Description:       "chat messages of every room, sequenced",
		Subjects:          []string{chat.RoomWildcard},
		Retention:         jetstream.LimitsPolicy,
		Storage:           jetstream.FileStorage,
		Discard:           jetstream.DiscardOld,
		MaxAge:            maxAge,
		MaxMsgsPerSubject: perRoom,
		MaxMsgSize:        chat.MaxPayload,
		// Long enough for a browser that was offline to resend what it
		// typed with the same client_id without creating a second message.
		Duplicates:  10 * time.Minute,
		Replicas:    o.replicas(),
		AllowDirect: true,
		RePublish: &jetstream.RePublish{
			Source:      chat.RoomWildcard,
			Destination: chat.FeedPrefix + "{{wildcard(1)}}",
		},
	}
}

// SMSConfig is the SMS work queue: each task is kept until one worker acks it.
func SMSConfig(o Options) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        SMS,
		Description: "SMS tasks, one consumer takes each",
		Subjects:    []string{chat.SMSChannel},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      7 * 24 * time.Hour,
		MaxMsgSize:  4 << 10,
		Duplicates:  10 * time.Minute,
		Replicas:    o.replicas(),
	}
}

// Ensure creates the stream or brings an existing one to cfg. Every service
// calls it at start, so the first one to run creates it.
func Ensure(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := js.CreateOrUpdateStream(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", cfg.Name, err)
	}
	return s, nil
}
