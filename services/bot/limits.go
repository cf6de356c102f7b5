package bot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/stream"
)

// smsLimitsBucket is the KV bucket holding the recent /sms of each
// requester and recipient, shared by every bot instance.
const smsLimitsBucket = "sms_limits"

// Defaults of the /sms limits (the zero values of Config mean these).
const (
	defaultSMSPerRequester = 5
	defaultSMSPerRecipient = 10
	defaultSMSWindow       = time.Minute
)

// smsLimiter bounds /sms per requester and per recipient over a sliding
// window, across every bot instance: each name has a key in the KV bucket
// with the ids and times of its recent tasks, changed only by
// compare-and-set, so two instances never both take the last slot. The
// bucket's age limit is the window, so names that stop sending cost
// nothing. The bucket is created on first use and again if it is deleted.
type smsLimiter struct {
	js           jetstream.JetStream
	replicas     int
	perRequester int
	perRecipient int
	window       time.Duration
	clock        func() time.Time

	mu sync.Mutex
	kv jetstream.KeyValue
	// lost: the bucket vanished (deleted); creating it again waits a
	// moment first, see bucket.
	lost bool
}

func newSMSLimiter(js jetstream.JetStream, cfg Config) *smsLimiter {
	return &smsLimiter{
		js: js, replicas: cfg.Replicas, clock: time.Now,
		perRequester: cmpOr(cfg.SMSPerRequester, defaultSMSPerRequester),
		perRecipient: cmpOr(cfg.SMSPerRecipient, defaultSMSPerRecipient),
		window:       cmpOr(cfg.SMSWindow, defaultSMSWindow),
	}
}

func cmpOr[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// smsWindow is the value of a key: the tasks counted, oldest first.
type smsWindow struct {
	Sent []smsSent `json:"sent"`
}

type smsSent struct {
	ID string    `json:"id"`
	At time.Time `json:"at"`
}

// allow counts task id against its requester and its recipient. It
// returns a refusal with chat.CodeRateLimited, saying when to try again,
// if either has had its limit within the window. A task id already
// counted (a retried request) passes again without counting twice.
func (l *smsLimiter) allow(ctx context.Context, from, to, id string) error {
	fromKey, toKey := "from."+strings.ToLower(from), "to."+strings.ToLower(to)
	wait, err := l.take(ctx, fromKey, id, l.perRequester)
	if err != nil {
		return err
	}
	if wait > 0 {
		return rateLimited("/sms: you have sent %d SMS in the last %s; try again in %s", l.perRequester, l.window, wait)
	}
	wait, err = l.take(ctx, toKey, id, l.perRecipient)
	if err == nil && wait == 0 {
		return nil
	}
	// Not sent, so it must not use up the requester's allowance.
	l.release(ctx, fromKey, id)
	if err != nil {
		return err
	}
	return rateLimited("/sms: %s has been sent %d SMS in the last %s; try again in %s", to, l.perRecipient, l.window, wait)
}

// undo takes back what allow counted, for a task that was not queued. It
// runs after a failed publish, maybe with ctx expired, so it has its own.
func (l *smsLimiter) undo(ctx context.Context, from, to, id string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	l.release(ctx, "from."+strings.ToLower(from), id)
	l.release(ctx, "to."+strings.ToLower(to), id)
}

func rateLimited(format string, args ...any) error {
	for i, a := range args {
		if d, ok := a.(time.Duration); ok {
			args[i] = humanDuration(d)
		}
	}
	return &refusal{code: chat.CodeRateLimited, msg: fmt.Sprintf(format, args...)}
}

// humanDuration rounds up to whole seconds ("1m0s" reads as "1m").
func humanDuration(d time.Duration) string {
	d = max(d.Round(time.Second), time.Second)
	if d%time.Minute == 0 {
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return d.String()
}

// take adds id to key's window unless the window is full, and returns how
// long until a slot frees up if it is.
func (l *smsLimiter) take(ctx context.Context, key, id string, limit int) (time.Duration, error) {
	var wait time.Duration
	err := l.change(ctx, key, func(w *smsWindow, now time.Time) bool {
		if slices.ContainsFunc(w.Sent, func(s smsSent) bool { return s.ID == id }) {
			return false
		}
		if len(w.Sent) >= limit {
			wait = w.Sent[len(w.Sent)-limit].At.Add(l.window).Sub(now)
			return false
		}
		w.Sent = append(w.Sent, smsSent{ID: id, At: now})
		return true
	})
	return wait, err
}

// release removes id from key's window; best effort, as a failure only
// costs the requester a slot until the window passes.
func (l *smsLimiter) release(ctx context.Context, key, id string) {
	_ = l.change(ctx, key, func(w *smsWindow, _ time.Time) bool {
		n := len(w.Sent)
		w.Sent = slices.DeleteFunc(w.Sent, func(s smsSent) bool { return s.ID == id })
		return len(w.Sent) != n
	})
}

// change reads key's window without the entries older than the window,
// lets edit change it, and writes it back if edit says so, only if nobody
// wrote it meanwhile; otherwise it starts over with what they wrote.
func (l *smsLimiter) change(ctx context.Context, key string, edit func(w *smsWindow, now time.Time) bool) error {
	for range 20 {
		kv, err := l.bucket(ctx)
		if err != nil {
			return err
		}
		var w smsWindow
		var rev uint64
		entry, err := kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			l.forgetBucketIf(err)
			return fmt.Errorf("read sms limit %s: %w", key, err)
		default:
			rev = entry.Revision()
			_ = json.Unmarshal(entry.Value(), &w) // unreadable: start afresh
		}
		now := l.clock()
		w.Sent = slices.DeleteFunc(w.Sent, func(s smsSent) bool { return !s.At.After(now.Add(-l.window)) })
		if !edit(&w, now) {
			return nil
		}
		data, err := json.Marshal(w)
		if err != nil {
			return fmt.Errorf("encode sms limit: %w", err)
		}
		if rev == 0 {
			_, err = kv.Create(ctx, key, data)
		} else {
			_, err = kv.Update(ctx, key, data, rev)
		}
		switch {
		case err == nil:
			return nil
		case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			continue // another instance wrote first: read again
		default:
			l.forgetBucketIf(err)
			return fmt.Errorf("write sms limit %s: %w", key, err)
		}
	}
	return fmt.Errorf("sms limit %s: too many concurrent changes", key)
}

// bucket returns the KV bucket, creating it the first time.
func (l *smsLimiter) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.kv != nil {
		return l.kv, nil
	}
	if l.lost {
		// A bucket is a stream: created again right after its deletion,
		// nats-server may still be removing its files and fail the create
		// ("error creating store") or build the new one on them (see
		// stream.Create).
		if err := stream.AfterDeletion(ctx); err != nil {
			return nil, err
		}
	}
	kv, err := l.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:       smsLimitsBucket,
		Description:  "recent /sms per requester and recipient, for the bot's limits",
		History:      1,
		TTL:          l.window,
		Replicas:     max(l.replicas, 1),
		MaxValueSize: 16 << 10,
	})
	if err != nil {
		return nil, fmt.Errorf("sms limits bucket: %w", err)
	}
	l.kv, l.lost = kv, false
	return kv, nil
}

// forgetBucketIf drops the bucket handle when the bucket is gone, so the
// next use creates it again.
func (l *smsLimiter) forgetBucketIf(err error) {
	if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
		l.mu.Lock()
		l.kv, l.lost = nil, true
		l.mu.Unlock()
	}
}
