package gateway

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/natschat/chat/shared/chat"
)

// maxFrame is the read limit: well above the longest valid message frame
// (4,000 four-byte characters, escaped), so only abuse reaches it.
const maxFrame = 64 << 10

// publishWindow bounds a client's messages awaiting JetStream's ack.
const publishWindow = 64

// maxViolations is how many rate-limited frames in a row a client may send
// before it is treated as abusive and disconnected.
const maxViolations = 100

func (g *Gateway) serveWS(w http.ResponseWriter, r *http.Request) {
	room, user, ok := roomAndUser(w, r, "/ws/chat/")
	if !ok {
		return
	}
	var since uint64
	resume := false
	if s := r.URL.Query().Get("since"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			writeText(w, http.StatusBadRequest, "since must be a non-negative integer (the last seq received)")
			return
		}
		since, resume = n, true
	}
	conn, err := websocket.Accept(smallBuffers{w, g.cfg.WriteTimeout}, r, &websocket.AcceptOptions{OriginPatterns: g.cfg.AllowedOrigins})
	if err != nil {
		g.log.Info("websocket refused", "room", room, "user", user, "origin", r.Header.Get("Origin"), "err", err)
		return
	}
	conn.SetReadLimit(maxFrame)

	// ctx ends the client's background work (commands, backlog reads) when
	// it goes. Reads do not use it: a cancelled read context would drop the
	// connection before the close frame is sent.
	ctx, cancel := context.WithCancel(context.Background())
	c := &client{
		conn:       conn,
		room:       room,
		user:       user,
		since:      since,
		batch:      r.URL.Query().Get("batch") == "1",
		maxQueue:   g.cfg.SendQueue,
		slow:       g.metrics.slowClients,
		limiter:    rate.NewLimiter(rate.Limit(g.cfg.Rate), g.cfg.Burst),
		commands:   make(chan struct{}, 2),
		publishing: make(chan struct{}, publishWindow),
		cancel:     cancel,
		closed:     make(chan struct{}),
	}
	if !g.track(c) {
		cancel()
		conn.Close(websocket.StatusGoingAway, "server shutting down")
		return
	}
	log := g.log.With("room", room, "user", user)

	rm, err := g.hub.acquire(room)
	if err != nil {
		log.Error("join room", "err", err)
		c.close(websocket.StatusInternalError, "chat unavailable, try again")
		g.endClient(c)
		return
	}
	c.joined = rm
	upTo, recent := rm.join(c)
	first, err := g.joinBacklog(ctx, room, since, upTo, resume, recent)
	if err != nil {
		log.Error("backlog on join", "err", err)
		c.close(websocket.StatusInternalError, "history unavailable, try again")
		g.endClient(c)
		return
	}
	// The backlog, then what arrived live meanwhile, written here before
	// the send queue takes over: neither fits a bounded queue.
	for frames := [][]byte{first}; len(frames) > 0; frames = rm.takePending(c) {
		for _, f := range frames {
			if err := c.write(f); err != nil {
				g.endClient(c)
				return
			}
		}
	}
	log.Debug("client joined", "since", since, "up_to", upTo)

	// The connection is hijacked, so this handler may return. Its goroutine
	// grew a deep stack joining the room; a fresh one for the rest of the
	// connection's life keeps an idle client small, and the request is
	// freed.
	go func() {
		defer g.endClient(c)
		g.readLoop(ctx, c)
	}()
}

// endClient closes c (waiting for the close handshake), takes it out of its
// room and releases the connection.
func (g *Gateway) endClient(c *client) {
	c.close(websocket.StatusNormalClosure, "")
	<-c.closed
	if c.joined != nil {
		g.hub.release(c.joined, c)
	}
	c.cancel()
	g.untrack(c)
	c.conn.CloseNow()
}

// fail sends c an error frame.
func (g *Gateway) fail(c *client, code chat.Code, message, clientID string) {
	g.metrics.errors.WithLabelValues(string(code)).Inc()
	c.send(encodeError(code, message, clientID))
}

// joinBacklog builds the first frame of a connection: the newest messages,
// or for a resume every message after since; both up to upTo, the last
// message the room delivered before the client joined, so that the live
// messages that follow neither overlap nor leave a gap.
//
// recent, the room's newest messages ending at upTo and complete since the
// room started on this gateway, answers most joins and short resumes
// without a history request or a stream read: a reconnect storm costs
// nothing but frames.
func (g *Gateway) joinBacklog(ctx context.Context, room string, since, upTo uint64, resume bool, recent []chat.Message) ([]byte, error) {
	f := chat.HistoryFrame{Type: chat.FrameHistory, Messages: []chat.Message{}}
	if resume && len(recent) > 0 && recent[0].Seq <= since {
		i, _ := slices.BinarySearchFunc(recent, since+1, func(m chat.Message, seq uint64) int { return cmp.Compare(m.Seq, seq) })
		f.Messages = recent[i:]
		return mustJSON(f), nil
	}
	if !resume && g.cfg.HistoryOnJoin > 0 && len(recent) >= g.cfg.HistoryOnJoin {
		// Older messages surely exist beyond the 2*keep ring only if it
		// was ever trimmed; saying has_more costs at most an empty page.
		f.Messages, f.HasMore = recent[len(recent)-g.cfg.HistoryOnJoin:], true
		return mustJSON(f), nil
	}
	if resume {
		msgs, err := g.backlog.after(ctx, room, since, upTo, g.cfg.ResumeMax)
		switch {
		case err == nil:
			f.Messages = nonNil(msgs)
			// has_more is about messages older than the first: a resuming
			// client already has those.
			return mustJSON(f), nil
		case !errors.Is(err, errResumeTooFar):
			return nil, err
		}
		f.Reset = true
	}
	msgs, more, err := g.backlog.latest(ctx, room, upTo, g.cfg.HistoryOnJoin)
	if err != nil {
		return nil, err
	}
	f.Messages, f.HasMore = nonNil(msgs), more
	return mustJSON(f), nil
}

func nonNil(msgs []chat.Message) []chat.Message {
	if msgs == nil {
		return []chat.Message{}
	}
	return msgs
}

func (g *Gateway) readLoop(ctx context.Context, c *client) {
	violations := 0
	for {
		typ, data, err := c.conn.Read(context.Background())
		if err != nil {
			return
		}
		if !c.limiter.Allow() {
			violations++
			if violations > maxViolations {
				c.close(websocket.StatusPolicyViolation, "too many frames")
				return
			}
			g.fail(c, chat.CodeRateLimited, "slow down: too many messages", "")
			continue
		}
		violations = 0
		if typ != websocket.MessageText {
			g.fail(c, chat.CodeInvalid, "binary frames are not supported: send JSON text frames", "")
			continue
		}
		var f chat.ClientFrame
		if err := json.Unmarshal(data, &f); err != nil {
			g.fail(c, chat.CodeInvalid, "malformed JSON frame: "+err.Error(), "")
			continue
		}
		switch f.Type {
		case chat.FrameMessage:
			g.onMessage(ctx, c, f)
		case chat.FrameHistory:
			g.onHistory(ctx, c, f)
		default:
			g.fail(c, chat.CodeInvalid, fmt.Sprintf("unknown frame type %q: use \"message\" or \"history\"", f.Type), "")
		}
	}
}

func (g *Gateway) onMessage(ctx context.Context, c *client, f chat.ClientFrame) {
	if err := chat.ValidateText(f.Text); err != nil {
		code, msg := chat.CodeInvalid, "message text is empty"
		if errors.Is(err, chat.ErrTextTooLong) {
			code, msg = chat.CodeTooLong, fmt.Sprintf("message text is longer than %d characters", chat.MaxTextLen)
		}
		g.fail(c, code, msg, f.ClientID)
		return
	}
	if len(f.ClientID) > chat.MaxClientIDLen {
		g.fail(c, chat.CodeInvalid, fmt.Sprintf("client_id is longer than %d bytes", chat.MaxClientIDLen), "")
		return
	}
	if strings.HasPrefix(f.Text, "/") {
		g.onCommand(ctx, c, f)
		return
	}
	m := chat.Message{User: c.user, Text: f.Text, Kind: chat.KindUser, ClientID: f.ClientID, TS: time.Now().UTC()}
	msg := nats.NewMsg(chat.RoomSubject(c.room))
	msg.Data = mustJSON(m)
	var opts []jetstream.PublishOpt
	if f.ClientID != "" {
		// A browser that resends what it typed while offline reuses the
		// client_id: JetStream's de-duplication keeps it one message.
		opts = append(opts, jetstream.WithMsgID(requestID(c.room, c.user, f.ClientID)))
	}
	// Asynchronously, within a window: a client sending fast is not held
	// to one JetStream round trip per message, and a client sending faster
	// than JetStream stores waits here, reading nothing more meanwhile.
	select {
	case c.publishing <- struct{}{}:
	case <-ctx.Done():
		return
	}
	future, err := g.js.PublishMsgAsync(msg, opts...)
	if err != nil {
		<-c.publishing
		g.log.Warn("publish message", "room", c.room, "user", c.user, "err", err)
		g.fail(c, chat.CodeUnavailable, "message not sent: chat storage unavailable, try again", f.ClientID)
		return
	}
	c.mu.Lock()
	c.acks = append(c.acks, pendingAck{future: future, clientID: f.ClientID})
	start := !c.awaiting
	c.awaiting = true
	c.mu.Unlock()
	if start {
		go g.awaitAcks(c)
	}
}

// awaitAcks reports the outcome of c's messages in the order they were
// sent, and exits when none is left.
func (g *Gateway) awaitAcks(c *client) {
	for {
		c.mu.Lock()
		if len(c.acks) == 0 {
			c.awaiting = false
			c.acks = nil
			c.mu.Unlock()
			return
		}
		p := c.acks[0]
		c.acks = c.acks[1:]
		c.mu.Unlock()
		select {
		case <-p.future.Ok():
			g.metrics.messagesIn.Inc()
		case err := <-p.future.Err():
			g.log.Warn("publish message", "room", c.room, "user", c.user, "err", err)
			g.fail(c, chat.CodeUnavailable, "message not sent: chat storage unavailable, try again", p.clientID)
		}
		<-c.publishing
	}
}

// onCommand sends a command line to the bot. It runs in the background so a
// slow bot does not hold up the client's chat; c.commands bounds how many.
func (g *Gateway) onCommand(ctx context.Context, c *client, f chat.ClientFrame) {
	select {
	case c.commands <- struct{}{}:
	default:
		g.fail(c, chat.CodeRateLimited, "wait for your previous commands to finish", f.ClientID)
		return
	}
	id := randomID()
	if f.ClientID != "" {
		id = requestID(c.room, c.user, f.ClientID)
	}
	req := mustJSON(chat.BotRequest{ID: id, Room: c.room, User: c.user, Text: f.Text})
	go func() {
		defer func() { <-c.commands }()
		rctx, cancel := context.WithTimeout(ctx, g.cfg.BotTimeout)
		defer cancel()
		msg, err := g.nc.RequestWithContext(rctx, chat.BotCmd, req)
		switch {
		case errors.Is(err, nats.ErrNoResponders):
			g.metrics.commands.WithLabelValues("no_bot").Inc()
			g.fail(c, chat.CodeBotUnavailable, "no bot is running: commands are unavailable right now", f.ClientID)
			return
		case err != nil:
			g.metrics.commands.WithLabelValues("timeout").Inc()
			if ctx.Err() == nil {
				g.log.Warn("bot request", "room", c.room, "user", c.user, "err", err)
				g.fail(c, chat.CodeBotUnavailable, "the bot did not answer in time, try again", f.ClientID)
			}
			return
		}
		var reply chat.BotReply
		if err := json.Unmarshal(msg.Data, &reply); err != nil {
			g.fail(c, chat.CodeBotUnavailable, "the bot sent a malformed answer", f.ClientID)
			return
		}
		g.metrics.commands.WithLabelValues(map[bool]string{true: "ok", false: "refused"}[reply.OK]).Inc()
		if !reply.OK {
			code := reply.Code
			if code == "" {
				code = chat.CodeInvalid
			}
			g.fail(c, code, reply.Error, f.ClientID)
			return
		}
		if reply.Notice != "" || len(reply.Commands) > 0 {
			c.send(mustJSON(chat.NoticeFrame{Type: chat.FrameNotice, Text: reply.Notice, ClientID: f.ClientID, Commands: reply.Commands}))
		}
	}()
}

func (g *Gateway) onHistory(ctx context.Context, c *client, f chat.ClientFrame) {
	limit := f.Limit
	switch {
	case limit == 0:
		limit = g.cfg.HistoryOnJoin
	case limit < 0 || limit > g.cfg.PageMax:
		g.fail(c, chat.CodeInvalid, fmt.Sprintf("limit must be from 1 to %d", g.cfg.PageMax), "")
		return
	}
	upTo := f.Before - 1
	if f.Before == 0 {
		// No cursor: the newest messages this client was sent, not the
		// stream's newest, which may still be on its way live.
		upTo = c.joined.lastDelivered()
	}
	msgs, more, err := g.backlog.latest(ctx, c.room, upTo, limit)
	if err != nil {
		g.log.Warn("history page", "room", c.room, "err", err)
		g.fail(c, chat.CodeUnavailable, "history unavailable, try again", "")
		return
	}
	c.send(mustJSON(chat.HistoryFrame{Type: chat.FrameHistory, Messages: nonNil(msgs), HasMore: more}))
}

// requestID derives a stable id from what the browser sent, so a resent
// message or command is recognised as the same one downstream.
func requestID(room, user, clientID string) string {
	sum := sha256.Sum256([]byte(room + "\x00" + user + "\x00" + clientID))
	return hex.EncodeToString(sum[:16])
}

func randomID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
