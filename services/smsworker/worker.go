package smsworker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natschat/chat/shared/chat"
)

// fetchWait is how long one pull waits for tasks. It bounds how late the
// worker notices shutdown; waiting on ctx instead could drop tasks already
// on their way to us (they would come back only after AckWait).
const fetchWait = time.Second

// worker pulls SMS tasks from the shared durable consumer and sends them.
type worker struct {
	cfg     Config
	js      jetstream.JetStream
	sms     jetstream.Stream
	cons    jetstream.Consumer
	sent    jetstream.KeyValue // task id -> time sent, so a task is sent once
	sender  Sender
	metrics *metrics
	log     *slog.Logger
}

// serve pulls and processes tasks, at most cfg.Concurrency at a time, until
// ctx is done; then it waits for the tasks in flight, which are finished and
// acked, not abandoned.
func (w *worker) serve(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	// A token per task in flight. Pulling only as many tasks as there are
	// free slots means no task waits in a buffer while its AckWait runs, and
	// a slow task holds one slot, never the others.
	slots := make(chan struct{}, w.cfg.Concurrency)
	release := func(n int) {
		for range n {
			<-slots
		}
	}
	for ctx.Err() == nil {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		n := 1
	more:
		for n < cap(slots) {
			select {
			case slots <- struct{}{}:
				n++
			default:
				break more
			}
		}
		batch, err := w.cons.Fetch(n, jetstream.FetchMaxWait(fetchWait))
		if err != nil {
			release(n)
			w.log.Warn("fetch sms tasks", "err", err)
			select {
			case <-time.After(fetchWait):
			case <-ctx.Done():
				return
			}
			continue
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			wg.Go(func() {
				defer release(1)
				w.process(msg)
			})
		}
		release(n - got)
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			w.log.Debug("fetch sms tasks ended", "err", err)
		}
	}
}

// process takes one delivery of a task to its end: acked once sent and
// confirmed, retried later after a failure, or dead-lettered.
func (w *worker) process(msg jetstream.Msg) {
	// Not the Run context: a task in flight at shutdown is finished.
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.SendTimeout+w.cfg.AckWait)
	defer cancel()
	md, err := msg.Metadata()
	if err != nil {
		w.log.Error("sms task without metadata", "err", err)
		return
	}
	log := w.log.With("seq", md.Sequence.Stream, "delivery", md.NumDelivered)

	task, err := parseTask(msg.Data())
	if err != nil {
		// Retrying cannot fix it: straight to the dead-letter stream.
		w.deadLetter(ctx, msg, md, causeMalformed, err.Error(), log)
		return
	}
	log = log.With("task_id", task.ID, "room", task.Room, "to", task.To)

	stop := keepAlive(msg, w.cfg.AckWait/3)
	err = w.deliver(ctx, task, log)
	// Before the ack or nak: a later "in progress" would cancel a nak delay.
	stop()
	switch {
	case err == nil:
		if err := msg.Ack(); err != nil {
			// The task comes back, is found in the sent bucket and is
			// acked then, without a second SMS.
			log.Warn("ack sms task", "err", err)
		}
	case md.NumDelivered >= uint64(w.cfg.MaxDeliver):
		w.deadLetter(ctx, msg, md, causeFailed, fmt.Sprintf("%v (delivery %d of %d)", err, md.NumDelivered, w.cfg.MaxDeliver), log)
	default:
		delay := w.backoff(md.NumDelivered)
		w.metrics.retried.Inc()
		log.Warn("sms task failed, will retry", "err", err, "retry_in", delay.String())
		if err := msg.NakWithDelay(delay); err != nil {
			log.Warn("nak sms task", "err", err)
		}
	}
}

// deliver sends task's SMS unless the sent bucket says it went out already,
// then makes sure the room is told.
func (w *worker) deliver(ctx context.Context, task chat.SMSTask, log *slog.Logger) error {
	_, err := w.sent.Get(ctx, task.ID)
	switch {
	case err == nil:
		w.metrics.skipped.Inc()
		log.Info("sms already sent, not sending again")
	case errors.Is(err, jetstream.ErrKeyNotFound):
		sendCtx, cancel := context.WithTimeout(ctx, w.cfg.SendTimeout)
		err := w.sender.Send(sendCtx, task)
		cancel()
		if err != nil {
			w.metrics.failures.Inc()
			return fmt.Errorf("send: %w", err)
		}
		w.metrics.sent.Inc()
		// Create, not Put: if another worker recorded it meanwhile (a
		// delivery that outlived its AckWait), both went out already.
		stamp := []byte(time.Now().UTC().Format(time.RFC3339Nano))
		if _, err := w.sent.Create(ctx, task.ID, stamp); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			// Sent but not recorded. Returning an error would send it
			// again on the retry; confirming and acking does not.
			log.Error("record sms as sent", "err", err)
		}
	default:
		return fmt.Errorf("look up sent sms: %w", err)
	}
	return w.confirm(ctx, task)
}

// confirm tells the room the SMS went out. The message id makes a repeat
// (a redelivery after the confirmation, or the sent-before path) a no-op.
func (w *worker) confirm(ctx context.Context, task chat.SMSTask) error {
	data, err := json.Marshal(chat.Message{
		User: "bot",
		Kind: chat.KindBot,
		Text: fmt.Sprintf("An SMS has been sent to %s (requested by %s)", task.To, task.From),
		TS:   time.Now().UTC(),
	})
	if err != nil {
		return fmt.Errorf("encode confirmation: %w", err)
	}
	if _, err := w.js.Publish(ctx, chat.RoomSubject(task.Room), data, jetstream.WithMsgID("sms-sent-"+task.ID)); err != nil {
		return fmt.Errorf("publish confirmation: %w", err)
	}
	return nil
}

// backoff is the delay before the retry that follows delivery number
// delivered; the last configured delay repeats.
func (w *worker) backoff(delivered uint64) time.Duration {
	i := min(int(delivered), len(w.cfg.Backoff)) - 1
	return w.cfg.Backoff[max(i, 0)]
}

// keepAlive tells the server every interval that msg is still being worked
// on, so a slow send is not redelivered to another worker while a dead
// worker's task still comes back after AckWait. stop ends it.
func keepAlive(msg jetstream.Msg, every time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

// taskIDPattern keeps ids usable as a KV key and a Nats-Msg-Id.
var taskIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// parseTask decodes a task and refuses anything the worker could not act
// on or that would be unsafe in a subject.
func parseTask(data []byte) (chat.SMSTask, error) {
	var t chat.SMSTask
	if err := json.Unmarshal(data, &t); err != nil {
		return t, fmt.Errorf("not a JSON task: %w", err)
	}
	if !taskIDPattern.MatchString(t.ID) {
		return t, fmt.Errorf("task id %q: want 1 to 128 letters, digits, '-' or '_'", t.ID)
	}
	for _, f := range []struct{ what, name string }{{"room", t.Room}, {"from", t.From}, {"to", t.To}} {
		if err := chat.ValidateName(f.what, f.name); err != nil {
			return t, err
		}
	}
	return t, nil
}
