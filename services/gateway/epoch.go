package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/stream"
)

// A CHAT stream can start over: deleted and re-created, or its store lost.
// Its sequences then begin again at 1, and a room that trusted its last
// sequence would drop every new message as already delivered. The stream's
// creation time names the sequence space a seq belongs to: the epoch.
// Browsers get it in history frames and send it back with ?since=, and the
// gateway watches it (streamWatch) to resynchronise its rooms.

// epochOf names a stream's sequence space by its creation time.
func epochOf(info *jetstream.StreamInfo) int64 { return chat.EpochOf(info.Created) }

// streamWatch polls the CHAT stream: it re-creates a missing stream (with
// the same definition, never changing an existing one), notices when the
// stream started over, and keeps the stream's last sequence, against which
// feed messages claiming a far higher sequence are checked.
type streamWatch struct {
	js    jetstream.JetStream
	def   jetstream.StreamConfig
	every time.Duration
	log   *slog.Logger
	// onReset is called, on the watch goroutine, when the epoch changes.
	onReset func(epoch int64)

	epoch atomic.Int64
	last  atomic.Uint64 // the stream's last sequence, as last seen or verified
	soon  chan struct{}
	done  chan struct{}
	wg    sync.WaitGroup
}

func newStreamWatch(js jetstream.JetStream, def jetstream.StreamConfig, info *jetstream.StreamInfo, log *slog.Logger) *streamWatch {
	w := &streamWatch{js: js, def: def, every: 2 * time.Second, log: log, soon: make(chan struct{}, 1), done: make(chan struct{})}
	w.epoch.Store(epochOf(info))
	w.last.Store(info.State.LastSeq)
	return w
}

// raise records that the stream holds seq.
func (w *streamWatch) raise(seq uint64) {
	for {
		last := w.last.Load()
		if seq <= last || w.last.CompareAndSwap(last, seq) {
			return
		}
	}
}

// reaches reports whether the stream has got as far as seq, asking it if
// what is known falls short. When it cannot tell, it says yes: a seq is
// treated as one of this stream unless shown otherwise.
func (w *streamWatch) reaches(ctx context.Context, seq uint64) bool {
	if seq <= w.last.Load() {
		return true
	}
	s, err := w.js.Stream(ctx, stream.Chat)
	if err != nil {
		return true
	}
	w.raise(s.CachedInfo().State.LastSeq)
	return seq <= w.last.Load()
}

// current is the epoch of the stream as last seen.
func (w *streamWatch) current() int64 { return w.epoch.Load() }

// checkSoon asks for a look at the stream now rather than at the next poll:
// a room saw a sequence going backwards.
func (w *streamWatch) checkSoon() {
	select {
	case w.soon <- struct{}{}:
	default:
	}
}

func (w *streamWatch) start() {
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		tick := time.NewTicker(w.every)
		defer tick.Stop()
		for {
			select {
			case <-w.done:
				return
			case <-tick.C:
			case <-w.soon:
			}
			w.check()
			// A burst of stale feed messages (the end of a gap fill)
			// asks again and again: at most a few looks a second.
			select {
			case <-w.done:
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
}

func (w *streamWatch) stop() {
	close(w.done)
	w.wg.Wait()
}

func (w *streamWatch) check() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := w.js.Stream(ctx, stream.Chat)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		// Without it every message is refused: create it as it was
		// defined. Its owner still manages its configuration.
		w.log.Warn("CHAT stream missing: creating it")
		s, err = stream.Create(ctx, w.js, w.def)
	}
	if err != nil {
		w.log.Debug("stream watch", "err", err)
		return
	}
	info := s.CachedInfo()
	w.raise(info.State.LastSeq)
	if e := epochOf(info); e != w.current() {
		w.log.Warn("CHAT stream started over: resynchronising rooms", "epoch", e, "was", w.current())
		w.epoch.Store(e)
		w.last.Store(info.State.LastSeq)
		w.onReset(e)
	}
}

// forgeAllowance is how far past the last known stream sequence a feed
// message may claim to be without a check. Real messages often run a
// little ahead of what this gateway has seen (other rooms, other
// gateways); a forged one claiming a far higher sequence would freeze the
// room, as every real message would then look delivered already.
const forgeAllowance = 1000

// verify reports whether a feed message claiming seq in room is in the
// stream: asked of the stream leader, it must be stored under that
// sequence, on the room's subject, with the same payload.
func (s *natsSource) verify(ctx context.Context, room string, seq uint64, data []byte) (bool, error) {
	req, _ := json.Marshal(map[string]uint64{"seq": seq})
	msg, err := s.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+stream.Chat, req)
	if err != nil {
		return false, fmt.Errorf("verify seq %d: %w", seq, err)
	}
	var resp struct {
		Message *struct {
			Subject string `json:"subject"`
			Data    []byte `json:"data"`
		} `json:"message"`
		Error *struct {
			Code int    `json:"code"`
			Text string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return false, fmt.Errorf("verify seq %d: %w", seq, err)
	}
	switch {
	case resp.Error != nil && resp.Error.Code == 404:
		return false, nil
	case resp.Error != nil:
		return false, fmt.Errorf("verify seq %d: %s", seq, resp.Error.Text)
	case resp.Message == nil:
		return false, fmt.Errorf("verify seq %d: empty reply", seq)
	}
	return resp.Message.Subject == chat.RoomSubject(room) && string(resp.Message.Data) == string(data), nil
}
