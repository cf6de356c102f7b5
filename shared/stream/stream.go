// Package stream defines the JetStream streams that more than one service
// uses, and who keeps their configuration.
//
// Every stream has one owner: history owns CHAT, sms-worker owns SMS. At
// start the owner brings its stream to the definition (Ensure). Every other
// service that needs the stream creates it with the same definition when it
// is missing, so that any service may start first, and otherwise uses it as
// it is, with a warning naming each field that differs (Use). So the
// internet-facing gateway never needs the right to reconfigure a stream,
// and services started with different settings do not undo each other's
// changes.
package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/config"
)

// Stream names.
const (
	Chat = "CHAT"
	SMS  = "SMS"
)

// owners names the service that updates each stream, for the messages of
// the others.
var owners = map[string]string{Chat: "history", SMS: "sms-worker"}

// tuned are the fields of a stream that its owner's configuration sets
// (HISTORY_CHAT_MAX_BYTES). The other services do not know the owner's
// value, so Use does not compare them.
var tuned = map[string][]string{Chat: {"max_bytes"}}

// DefaultChatMaxBytes bounds the CHAT stream when the owner sets no bound:
// enough for a few million messages of typical length, far below a
// JetStream store of a few GB.
const DefaultChatMaxBytes = 1 << 30

// Settings is the stream part of every service's configuration. It is read
// like NATS_URL: <SERVICE>_STREAM_REPLICAS, else STREAM_REPLICAS, so a
// deployment sets it once for every service.
type Settings struct {
	// Replicas is the replica count of the streams and buckets a service
	// creates; 0 means 1. Use 3 on a cluster.
	Replicas int `envconfig:"STREAM_REPLICAS" default:"1" desc:"JetStream replicas of the streams and buckets (3 on a NATS cluster); set it once for every service"`
}

// Check records what is wrong with the stream variables.
func (s Settings) Check(c *config.Checker) {
	c.CheckShared(s.Replicas >= 1 && s.Replicas <= 5, "STREAM_REPLICAS", "must be from 1 to 5, the most JetStream allows (got %d)", s.Replicas)
}

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
	// ChatMaxBytes bounds the size of CHAT, oldest messages discarded
	// first; 0 means DefaultChatMaxBytes. Without it a flood of messages
	// fills the JetStream store, and then every publish fails.
	ChatMaxBytes int64
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
	maxBytes := o.ChatMaxBytes
	if maxBytes <= 0 {
		maxBytes = DefaultChatMaxBytes
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
		MaxBytes:          maxBytes,
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

// Ensure creates the stream or brings an existing one to cfg. Only the
// stream's owner calls it; the other services call Use.
func Ensure(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := js.UpdateStream(ctx, cfg)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = Create(ctx, js, cfg)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			// Another service created it meanwhile: bring it to cfg.
			s, err = js.UpdateStream(ctx, cfg)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", cfg.Name, err)
	}
	return s, nil
}

// Use returns the stream, creating it with cfg when it does not exist. An
// existing stream is used as it is, never updated: when it differs from
// cfg, Use logs a warning naming each differing field, and leaves the
// stream to its owner.
func Use(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig, log *slog.Logger) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, cfg.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = Create(ctx, js, cfg)
		if err == nil {
			log.Info("stream created", "stream", cfg.Name, "owner", owners[cfg.Name])
			return s, nil
		}
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			// Another service created it meanwhile, maybe differently.
			s, err = js.Stream(ctx, cfg.Name)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", cfg.Name, err)
	}
	if d := diff(cfg, s.CachedInfo().Config, tuned[cfg.Name]); len(d) > 0 {
		log.Warn("stream differs from its definition; left as it is, its owner updates it",
			"stream", cfg.Name, "owner", owners[cfg.Name], "fields", strings.Join(d, "; "))
	}
	return s, nil
}

// Create creates the stream cfg, found missing. It returns
// ErrStreamNameAlreadyInUse when another service created it differently
// first (an identical one is returned as it is).
//
// It first gives a deletion in progress a moment: nats-server (seen with
// 2.15) can create a new stream over the files of a same-named one still
// being removed. The new stream then claims the old last sequence, loses
// its files when the removal finishes, and every publish to it times out.
// Only a wait avoids that: telling such a stream from a healthy one that
// another service created meanwhile is not possible from the outside.
func Create(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	if err := AfterDeletion(ctx); err != nil {
		return nil, err
	}
	return js.CreateStream(ctx, cfg)
}

// AfterDeletion waits the moment Create waits, or until ctx ends: for a
// stream or a KV bucket (a stream too) that may have just been deleted,
// before creating it again.
func AfterDeletion(ctx context.Context) error {
	t := time.NewTimer(250 * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// diff names the fields of got, a stream's configuration as the server
// reports it, that differ from the definition want, except those in skip:
// "max_msgs_per_subject=1 (want 100000)". Only the fields that decide what
// the stream keeps and delivers are compared; the server's own additions
// (metadata, compression defaults) are not.
func diff(want, got jetstream.StreamConfig, skip []string) []string {
	fields := []struct {
		name      string
		want, got any
	}{
		{"subjects", want.Subjects, got.Subjects},
		{"retention", want.Retention, got.Retention},
		{"storage", want.Storage, got.Storage},
		{"discard", want.Discard, got.Discard},
		{"max_age", want.MaxAge, got.MaxAge},
		{"max_bytes", limit(want.MaxBytes), limit(got.MaxBytes)},
		{"max_msgs", limit(want.MaxMsgs), limit(got.MaxMsgs)},
		{"max_msgs_per_subject", limit(want.MaxMsgsPerSubject), limit(got.MaxMsgsPerSubject)},
		{"max_msg_size", limit(int64(want.MaxMsgSize)), limit(int64(got.MaxMsgSize))},
		{"duplicate_window", duplicates(want.Duplicates), duplicates(got.Duplicates)},
		{"num_replicas", max(want.Replicas, 1), max(got.Replicas, 1)},
		{"allow_direct", want.AllowDirect, got.AllowDirect},
		{"republish", republish(want.RePublish), republish(got.RePublish)},
		{"sealed", want.Sealed, got.Sealed},
		{"deny_delete", want.DenyDelete, got.DenyDelete},
		{"deny_purge", want.DenyPurge, got.DenyPurge},
	}
	var out []string
	for _, f := range fields {
		w, g := fmt.Sprint(f.want), fmt.Sprint(f.got)
		if w != g && !slices.Contains(skip, f.name) {
			out = append(out, fmt.Sprintf("%s=%s (want %s)", f.name, g, w))
		}
	}
	return out
}

// limit is a JetStream limit as the server reports it: -1 for none.
func limit(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

// duplicates is the de-duplication window as the server reports it: 2
// minutes when none is given.
func duplicates(d time.Duration) time.Duration {
	if d <= 0 {
		return 2 * time.Minute
	}
	return d
}

func republish(r *jetstream.RePublish) string {
	if r == nil {
		return "none"
	}
	s := r.Source + ">" + r.Destination
	if r.HeadersOnly {
		s += " headers only"
	}
	return s
}
