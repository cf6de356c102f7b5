package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The stream and durable consumer S6 watches (shared/stream and the history
// service).
const (
	chatStream      = "CHAT"
	historyConsumer = "history"
)

// runHistory is S6: publish rate messages per second with plain NATS on
// chat.room.<room> for d, and watch how far the history service's durable
// consumer falls behind the stream and how fast it stores rows.
func (b *bench) runHistory(ctx context.Context, rate float64, d time.Duration, catchUpMax time.Duration) *result {
	r := &result{Name: "S6", Conns: 1}
	nc, err := nats.Connect(b.natsURL, nats.Name("chatbench"))
	if err != nil {
		r.ConnectErrs = 1
		r.problem("connect to NATS at %s: %v", b.natsURL, err)
		return r
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		r.problem("jetstream: %v", err)
		return r
	}
	st, err := js.Stream(ctx, chatStream)
	if err != nil {
		r.problem("stream %s: %v (is the gateway running on this NATS?)", chatStream, err)
		return r
	}
	cons, err := findHistoryConsumer(ctx, st)
	running := err == nil
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		r.Figure = "history not running"
		r.note("history not running: stream %s has no durable consumer %q, so there is no lag to measure; publishing anyway to measure stream ingest", chatStream, historyConsumer)
	case err != nil:
		r.problem("consumer %s: %v", historyConsumer, err)
		return r
	}
	first, err := lastSeq(ctx, st)
	if err != nil {
		r.problem("%v", err)
		return r
	}
	var ack0 uint64
	if running {
		info, err := cons.Info(ctx)
		if err != nil {
			r.problem("consumer info: %v", err)
			return r
		}
		ack0 = info.AckFloor.Stream
	}

	b.log.Info("scenario starting", "scenario", "S6", "rate", rate, "duration", d, "history_running", running)
	u := startUsage(b.serverPID)
	start := time.Now()
	var maxLag uint64
	var wg sync.WaitGroup
	sctx, stopSampling := context.WithCancel(ctx)
	if running {
		// Lag is sampled while publishing: messages the stream holds that
		// history has not acked yet.
		wg.Go(func() {
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-tick.C:
				case <-sctx.Done():
					return
				}
				if lag, _, err := consumerLag(sctx, st, cons); err == nil {
					maxLag = max(maxLag, lag)
				}
			}
		})
	}
	sent, err := publishPaced(ctx, nc, b.tag+"-S6", rate, d)
	if err == nil {
		err = nc.FlushTimeout(10 * time.Second)
	}
	publishEnd := time.Now()
	stopSampling()
	wg.Wait()
	r.Sent = sent
	if err != nil {
		r.problem("publish: %v", err)
	}
	last, err := lastSeq(ctx, st)
	if err != nil {
		r.problem("%v", err)
		return r
	}
	r.Expected = int64(last - first)
	if r.Expected < r.Sent {
		r.problem("stream %s stored %d of %d published messages", chatStream, r.Expected, r.Sent)
	}
	r.note("published %d messages in %v (%.0f msg/s; asked %g)", sent, publishEnd.Sub(start).Round(time.Millisecond), float64(sent)/publishEnd.Sub(start).Seconds(), rate)

	if running {
		caughtUp, ackEnd, err := waitCaughtUp(ctx, st, cons, last, catchUpMax)
		if err != nil {
			r.problem("%v", err)
		}
		r.Delivered = int64(ackEnd - ack0)
		took := time.Since(start)
		r.PerSec = float64(r.Delivered) / took.Seconds()
		lagSec := float64(maxLag) / rate
		if caughtUp < 0 {
			r.Figure = fmt.Sprintf("lag max %d msgs (%.2fs), not caught up after %v", maxLag, lagSec, catchUpMax)
			r.Target = verdict(false, "lag<1s")
		} else {
			r.Figure = fmt.Sprintf("lag max %d msgs (%.2fs), caught up %.2fs after", maxLag, lagSec, caughtUp.Seconds())
			r.Target = verdict(lagSec < 1 && caughtUp < time.Second, "lag<1s")
		}
		r.note("history acked %d rows in %v: %.0f rows/s (deliv/s column)", r.Delivered, took.Round(time.Millisecond), r.PerSec)
	}
	u.stop(r)
	return r
}

// publishPaced publishes rate messages per second to room for d, in a batch
// every millisecond, and returns how many it published.
func publishPaced(ctx context.Context, nc *nats.Conn, room string, rate float64, d time.Duration) (int64, error) {
	subject := "chat.room." + room
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	var n int64
	buf := make([]byte, 0, 128)
	for {
		elapsed := time.Since(start)
		if elapsed >= d {
			return n, nil
		}
		due := int64(elapsed.Seconds() * rate)
		for ; n < due; n++ {
			buf = append(buf[:0], `{"user":"bench","kind":"user","text":"b1|0|`...)
			buf = strconv.AppendInt(buf, n, 10)
			buf = append(buf, '|')
			buf = strconv.AppendInt(buf, time.Now().UnixNano(), 10)
			buf = append(buf, `"}`...)
			if err := nc.Publish(subject, buf); err != nil {
				return n, fmt.Errorf("publish to %s: %w", subject, err)
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return n, ctx.Err()
		}
	}
}

// findHistoryConsumer returns the history service's durable consumer. A
// history service that has just started may still be migrating its
// database: it gets a few seconds to create its consumer.
func findHistoryConsumer(ctx context.Context, st jetstream.Stream) (jetstream.Consumer, error) {
	cons, err := st.Consumer(ctx, historyConsumer)
	for wait := time.Now().Add(10 * time.Second); errors.Is(err, jetstream.ErrConsumerNotFound) && time.Now().Before(wait); {
		time.Sleep(200 * time.Millisecond)
		cons, err = st.Consumer(ctx, historyConsumer)
	}
	return cons, err
}

func lastSeq(ctx context.Context, st jetstream.Stream) (uint64, error) {
	info, err := st.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("stream %s info: %w", chatStream, err)
	}
	return info.State.LastSeq, nil
}

// consumerLag is how many of the stream's messages the consumer has not
// acked, and its ack floor.
func consumerLag(ctx context.Context, st jetstream.Stream, cons jetstream.Consumer) (lag, ackFloor uint64, err error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	last, err := lastSeq(ctx, st)
	if err != nil {
		return 0, 0, err
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("consumer %s info: %w", historyConsumer, err)
	}
	ackFloor = info.AckFloor.Stream
	if last > ackFloor {
		lag = last - ackFloor
	}
	return lag, ackFloor, nil
}

// waitCaughtUp waits until the consumer acked everything up to seq and
// returns how long that took, -1 if it did not within max.
func waitCaughtUp(ctx context.Context, st jetstream.Stream, cons jetstream.Consumer, seq uint64, max time.Duration) (time.Duration, uint64, error) {
	start := time.Now()
	var ack uint64
	for time.Since(start) < max {
		info, err := cons.Info(ctx)
		if err != nil {
			return -1, ack, fmt.Errorf("consumer %s info: %w", historyConsumer, err)
		}
		ack = info.AckFloor.Stream
		if ack >= seq {
			return time.Since(start), ack, nil
		}
		sleep(ctx, 20*time.Millisecond)
		if ctx.Err() != nil {
			return -1, ack, ctx.Err()
		}
	}
	return -1, ack, nil
}
