package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// bucketState is how far a bucket's copy is to be trusted.
type bucketState int

const (
	// bucketUnknown: the bucket does not exist yet (the accounts service
	// has not run), or the watch is loading its values: ask the bucket.
	bucketUnknown bucketState = iota
	// bucketSynced: the copy has every value the bucket had when the watch
	// started, and every change since.
	bucketSynced
)

// Retries of a bucket that does not exist yet start at bucketRetryMin and
// double up to bucketRetryMax: a lookup meanwhile asks the bucket itself,
// so waiting costs nothing but that round trip, and kick cuts it short.
const (
	bucketRetryMin = time.Second
	bucketRetryMax = 30 * time.Second
)

// bucketCheckEvery is how often a watched bucket is checked for having
// been deleted and created again, which a watch does not notice by itself.
const bucketCheckEvery = 30 * time.Second

// watchedBucket is this gateway's copy of one of the accounts service's KV
// buckets, kept current by a watch: looking a key up costs no round trip.
// Values are decoded once, when they change; a value that does not decode
// is left out (and logged), never half-used.
type watchedBucket[T any] struct {
	name string
	js   jetstream.JetStream
	log  *slog.Logger
	// kicked makes run try to open the bucket at once (it was just
	// written through this gateway).
	kicked chan struct{}

	// onPut and onDelete are called on the watch's goroutine, without
	// the lock held, for every change after the first sync, and for the
	// differences a re-sync finds. fresh says the key was not there before.
	onPut    func(key string, value T, fresh bool)
	onDelete func(key string)

	mu     sync.RWMutex
	state  bucketState
	kv     jetstream.KeyValue // nil until the bucket was opened
	values map[string]T
	// changed is closed and replaced on every change: waitFor's signal.
	changed chan struct{}
}

func newWatchedBucket[T any](name string, js jetstream.JetStream, log *slog.Logger) *watchedBucket[T] {
	return &watchedBucket[T]{
		name: name, js: js, log: log.With("bucket", name), kicked: make(chan struct{}, 1),
		values: make(map[string]T), changed: make(chan struct{}),
	}
}

// lookup returns the value of key: from the copy once it is synced, else
// from the bucket itself (a missing bucket has no keys).
func (b *watchedBucket[T]) lookup(ctx context.Context, key string) (value T, found bool, err error) {
	b.mu.RLock()
	state, kv := b.state, b.kv
	value, found = b.values[key]
	b.mu.RUnlock()
	if state == bucketSynced {
		return value, found, nil
	}
	if kv == nil {
		if kv, err = b.js.KeyValue(ctx, b.name); errors.Is(err, jetstream.ErrBucketNotFound) {
			return value, false, nil
		} else if err != nil {
			return value, false, err
		}
	}
	e, err := kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return value, false, nil
	case err != nil:
		return value, false, err
	}
	var v T
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		return value, false, nil
	}
	return v, true, nil
}

// synced reports whether lookups are answered from the copy.
func (b *watchedBucket[T]) synced() bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.state == bucketSynced
}

// peek returns the value of key in the copy, never asking the bucket: for
// checks too frequent for a round trip (a mute, on every message).
func (b *watchedBucket[T]) peek(key string) (T, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	v, ok := b.values[key]
	return v, ok
}

// kick asks run to look for the bucket now.
func (b *watchedBucket[T]) kick() {
	select {
	case b.kicked <- struct{}{}:
	default:
	}
}

// waitFor waits until cond holds of the copy, or ctx ends.
func (b *watchedBucket[T]) waitFor(ctx context.Context, cond func(values map[string]T) bool) bool {
	for {
		b.mu.RLock()
		ok, changed := cond(b.values), b.changed
		b.mu.RUnlock()
		if ok {
			return true
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return false
		}
	}
}

// run keeps the copy current until ctx ends: it opens the bucket (retrying
// until the accounts service has created it), watches it, and starts over
// when the watch ends or the bucket was created anew.
//
// A bucket that is gone after it was watched keeps its last values: the
// accounts service re-creates and refills it, and until then what was
// registered stays protected.
func (b *watchedBucket[T]) run(ctx context.Context) {
	wait := bucketRetryMin
	for ctx.Err() == nil {
		kv, err := b.js.KeyValue(ctx, b.name)
		switch {
		case errors.Is(err, jetstream.ErrBucketNotFound):
		case err != nil:
			if ctx.Err() == nil {
				b.log.Warn("open bucket", "err", err)
			}
		default:
			b.follow(ctx, kv)
			wait = bucketRetryMin
		}
		select {
		case <-ctx.Done():
		case <-b.kicked:
		case <-time.After(wait):
			wait = min(2*wait, bucketRetryMax)
		}
	}
}

// follow watches kv until the watch ends, ctx ends, or the bucket turns
// out to have been created again.
func (b *watchedBucket[T]) follow(ctx context.Context, kv jetstream.KeyValue) {
	created, err := streamCreated(ctx, kv)
	if err != nil {
		b.log.Warn("bucket status", "err", err)
		return
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		if ctx.Err() == nil {
			b.log.Warn("watch bucket", "err", err)
		}
		return
	}
	defer w.Stop()
	b.mu.Lock()
	b.kv = kv
	resync := b.state == bucketSynced
	b.mu.Unlock()
	// Keys seen while the initial values come in; the ones the copy has
	// beyond them were deleted while the watch was away.
	initial := make(map[string]bool)
	loading := true
	check := time.NewTicker(bucketCheckEvery)
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-check.C:
			if now, err := streamCreated(ctx, kv); err == nil && !now.Equal(created) || errors.Is(err, jetstream.ErrBucketNotFound) {
				b.log.Warn("bucket was deleted or created anew: watching it again")
				return
			}
		case e, ok := <-w.Updates():
			if !ok {
				if ctx.Err() == nil {
					b.log.Warn("bucket watch ended: watching it again")
				}
				return
			}
			if e == nil {
				loading = false
				b.finishLoad(initial)
				if !resync {
					b.log.Debug("bucket synced")
				}
				continue
			}
			if loading {
				initial[e.Key()] = true
			}
			// While loading for the first time there are no clients to
			// tell; on a re-sync the differences matter.
			b.apply(e, !loading || resync)
		}
	}
}

// apply puts e into the copy and reports the change if notify.
func (b *watchedBucket[T]) apply(e jetstream.KeyValueEntry, notify bool) {
	key := e.Key()
	if e.Operation() != jetstream.KeyValuePut {
		b.mu.Lock()
		delete(b.values, key)
		b.signalLocked()
		b.mu.Unlock()
		// Told even for a key the copy did not have: a session checked
		// with auth.session while the watch was behind ends here too.
		if notify && b.onDelete != nil {
			b.onDelete(key)
		}
		return
	}
	var v T
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		b.log.Warn("bad bucket value ignored", "key", key, "err", err)
		return
	}
	b.mu.Lock()
	_, had := b.values[key]
	b.values[key] = v
	b.signalLocked()
	b.mu.Unlock()
	if notify && b.onPut != nil {
		b.onPut(key, v, !had)
	}
}

// finishLoad drops the keys the initial values did not have and marks the
// copy synced.
func (b *watchedBucket[T]) finishLoad(initial map[string]bool) {
	var gone []string
	b.mu.Lock()
	for key := range b.values {
		if !initial[key] {
			delete(b.values, key)
			gone = append(gone, key)
		}
	}
	b.state = bucketSynced
	b.signalLocked()
	b.mu.Unlock()
	if b.onDelete != nil {
		for _, key := range gone {
			b.onDelete(key)
		}
	}
}

func (b *watchedBucket[T]) signalLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// streamCreated is when the bucket's stream was created: a different time
// later means it was deleted and made again.
func streamCreated(ctx context.Context, kv jetstream.KeyValue) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := kv.Status(ctx)
	if err != nil {
		return time.Time{}, err
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok {
		return time.Time{}, nil
	}
	return bs.StreamInfo().Created, nil
}
