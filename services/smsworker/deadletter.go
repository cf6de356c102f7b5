package smsworker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natschat/chat/shared/stream"
)

// The dead-letter stream keeps every task the worker gave up on, with why,
// so that nothing is lost silently: an operator reads it with
// `nats stream view SMS_DEAD` and can publish a task again on sms_channel.
const (
	deadStream = "SMS_DEAD"
	// Tasks land on sms_dead.<cause>: malformed, failed or abandoned.
	deadPrefix = "sms_dead."

	causeMalformed = "malformed" // not a valid task: retrying cannot help
	causeFailed    = "failed"    // the sender failed on every delivery
	causeAbandoned = "abandoned" // no worker acked the last delivery (it died or hung)
)

// Headers of a dead-lettered task; the payload is the task as it was queued.
const (
	headerReason     = "Sms-Dead-Reason"
	headerDeliveries = "Sms-Deliveries"
	headerStreamSeq  = "Sms-Stream-Seq"
)

func deadConfig(replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        deadStream,
		Description: "SMS tasks the workers gave up on, with the reason in Sms-Dead-Reason",
		Subjects:    []string{deadPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		// Kept long: someone has to notice and act on them.
		MaxAge:     30 * 24 * time.Hour,
		Duplicates: 10 * time.Minute,
		Replicas:   replicas,
	}
}

// publishDead stores a task the worker gives up on. The message id is the
// task's sequence in SMS, so a worker that dies after this and before
// terminating the task, or two workers handling the same advisory, store it
// once.
func (w *worker) publishDead(ctx context.Context, data []byte, seq, deliveries uint64, cause, reason string) error {
	msg := nats.NewMsg(deadPrefix + cause)
	msg.Data = data
	msg.Header.Set(headerReason, reason)
	msg.Header.Set(headerDeliveries, strconv.FormatUint(deliveries, 10))
	msg.Header.Set(headerStreamSeq, strconv.FormatUint(seq, 10))
	if _, err := w.js.PublishMsg(ctx, msg, jetstream.WithMsgID("sms-dead-"+strconv.FormatUint(seq, 10))); err != nil {
		return fmt.Errorf("publish dead letter: %w", err)
	}
	return nil
}

// deadLetter moves the delivered task msg to the dead-letter stream and
// terminates it, so it is never delivered again.
func (w *worker) deadLetter(ctx context.Context, msg jetstream.Msg, md *jetstream.MsgMetadata, cause, reason string, log *slog.Logger) {
	if err := w.publishDead(ctx, msg.Data(), md.Sequence.Stream, md.NumDelivered, cause, reason); err != nil {
		// Left pending: it comes back and is dead-lettered then, or, after
		// the last delivery, through the max-deliveries advisory.
		log.Error("sms task not dead-lettered, will retry", "err", err)
		_ = msg.NakWithDelay(w.backoff(md.NumDelivered))
		return
	}
	w.metrics.dead.WithLabelValues(cause).Inc()
	log.Warn("sms task dead-lettered", "cause", cause, "reason", reason)
	if err := msg.TermWithReason(cause); err != nil {
		log.Warn("terminate sms task", "err", err)
	}
}

// maxDeliveriesSubject is where the server announces a task that reached
// MaxDeliver without being acked or terminated: its last delivery went to a
// worker that died or hung. The task is still in SMS then, delivered to no
// one.
func maxDeliveriesSubject(consumer string) string {
	return "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + stream.SMS + "." + consumer
}

// abandoned handles a max-deliveries advisory: the task moves to the
// dead-letter stream, unless it was in fact sent, then only its
// confirmation is made sure of. Either way it leaves SMS.
func (w *worker) abandoned(ctx context.Context, data []byte) {
	var adv struct {
		StreamSeq  uint64 `json:"stream_seq"`
		Deliveries uint64 `json:"deliveries"`
	}
	if err := json.Unmarshal(data, &adv); err != nil || adv.StreamSeq == 0 {
		w.log.Warn("bad max-deliveries advisory", "err", err)
		return
	}
	log := w.log.With("seq", adv.StreamSeq, "delivery", adv.Deliveries)
	raw, err := w.sms.GetMsg(ctx, adv.StreamSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return // another worker handled the same advisory
	}
	if err != nil {
		log.Error("abandoned sms task: load", "err", err)
		return
	}
	if task, err := parseTask(raw.Data); err == nil {
		log = log.With("task_id", task.ID, "room", task.Room, "to", task.To)
		if _, err := w.sent.Get(ctx, task.ID); err == nil {
			// The worker died after sending: the SMS is not lost.
			if err := w.confirm(ctx, task); err != nil {
				log.Error("abandoned sms task: confirm", "err", err)
				return
			}
			w.remove(ctx, adv.StreamSeq, log)
			return
		}
	}
	reason := fmt.Sprintf("its last delivery (%d) was never acked: the worker died or hung", adv.Deliveries)
	if err := w.publishDead(ctx, raw.Data, adv.StreamSeq, adv.Deliveries, causeAbandoned, reason); err != nil {
		log.Error("abandoned sms task not dead-lettered", "err", err)
		return
	}
	w.metrics.dead.WithLabelValues(causeAbandoned).Inc()
	log.Warn("sms task dead-lettered", "cause", causeAbandoned, "reason", reason)
	w.remove(ctx, adv.StreamSeq, log)
}

func (w *worker) remove(ctx context.Context, seq uint64, log *slog.Logger) {
	if err := w.sms.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		log.Warn("delete abandoned sms task", "err", err)
	}
}
