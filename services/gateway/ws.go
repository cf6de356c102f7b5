package gateway

import (
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
	var pos position
	if s := r.URL.Query().Get("since"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			writeText(w, http.StatusBadRequest, "since must be a non-negative integer (the last seq received)")
			return
		}
		pos.since, pos.resume = n, true
	}
	if s := r.URL.Query().Get("epoch"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			writeText(w, http.StatusBadRequest, "epoch must be the epoch of a history frame (a positive integer)")
			return
		}
		pos.epoch = n
	}
	id, refused := g.identify(r, room, user)
	if refused != nil {
		g.metrics.refused.WithLabelValues("auth").Inc()
		g.log.Debug("websocket refused", "room", room, "user", user, "status", refused.status, "reason", refused.reason)
		refused.write(w)
		return
	}
	addr := g.clientAddr(r)
	if !g.reserveAddr(addr) {
		g.metrics.refused.WithLabelValues("per_address").Inc()
		w.Header().Set("Retry-After", "10")
		writeText(w, http.StatusTooManyRequests, fmt.Sprintf("too many connections from your address (at most %d)", g.cfg.MaxConnsPerAddr))
		return
	}
	rm, err := g.hub.acquire(room)
	if err != nil {
		g.releaseAddr(addr)
		reason := "unavailable"
		if errors.Is(err, errTooManyRooms) {
			reason = "rooms"
			w.Header().Set("Retry-After", "10")
		} else {
			g.log.Error("join room", "room", room, "user", user, "err", err)
			err = errors.New("chat unavailable, try again")
		}
		g.metrics.refused.WithLabelValues(reason).Inc()
		writeText(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		// A plain GET learns whether it may connect, and if not why (the
		// page asks this way when an upgrade failed): it may.
		g.hub.release(rm, nil)
		g.releaseAddr(addr)
		writeText(w, http.StatusUpgradeRequired, "you may connect: this URL takes a WebSocket upgrade")
		return
	}
	hijacked := &smallBuffers{ResponseWriter: w, writeTimeout: g.cfg.WriteTimeout}
	conn, err := websocket.Accept(hijacked, r, &websocket.AcceptOptions{OriginPatterns: g.cfg.AllowedOrigins})
	if err != nil {
		g.hub.release(rm, nil)
		g.releaseAddr(addr)
		g.log.Info("websocket refused", "room", room, "user", user, "origin", r.Header.Get("Origin"), "err", err)
		return
	}
	conn.SetReadLimit(maxFrame)

	// ctx ends the client's background work (commands, backlog reads) when
	// it goes. Reads do not use it: a cancelled read context would drop the
	// connection before the close frame is sent.
	ctx, cancel := context.WithCancel(context.Background())
	c := &client{
		conn:        conn,
		raw:         hijacked.conn,
		addr:        addr,
		room:        room,
		user:        id.name,
		ident:       id,
		dir:         g.dir,
		joined:      rm,
		skipThrough: pos.since,
		batch:       r.URL.Query().Get("batch") == "1",
		limit:       queueLimit{frames: g.cfg.SendQueue, bytes: g.cfg.SendQueueBytes},
		limiter:     g.acquireLimiter(id),
		commands:    make(chan struct{}, 2),
		publishing:  make(chan struct{}, publishWindow),
		ctx:         ctx,
		cancel:      cancel,
		closed:      make(chan struct{}),
	}
	if !g.track(c) {
		c.close(reasonShutdown)
		<-c.closed
		conn.CloseNow()
		g.hub.release(rm, nil)
		g.releaseAddr(addr)
		g.releaseLimiter(id)
		return
	}
	if !g.dir.attach(c) {
		// The session ended, or the name got registered, while the
		// upgrade was being checked.
		reason := reasonSessionEnded
		if id.auth == chat.AuthGuest {
			reason = reasonNameRegistered
		}
		c.close(reason)
		g.endClient(c)
		return
	}
	if err := rm.subscribe(ctx, c, g.joiner, pos); err != nil {
		if ctx.Err() == nil {
			g.log.Error("backlog on join", "room", room, "user", user, "err", err)
			c.close(reasonUnavailable)
		}
		g.endClient(c)
		return
	}
	g.log.Debug("client joined", "room", room, "user", c.user, "auth", id.auth, "since", pos.since)

	// The connection is hijacked, so this handler may return. Its goroutine
	// grew a deep stack joining the room; a fresh one for the rest of the
	// connection's life keeps an idle client small, and the request is
	// freed. The gateway's conns count it until endClient is done.
	go func() {
		defer g.endClient(c)
		g.readLoop(c)
	}()
}

// endClient is the one way a client ends: it closes c (the first reason
// given wins; a client that just stopped reading has left), waits for the
// close handshake and for every goroutine c started, takes c out of its
// room, logs the reason once and counts it.
func (g *Gateway) endClient(c *client) {
	c.close(reasonLeft)
	<-c.closed
	g.hub.release(c.joined, c)
	g.dir.detach(c)
	c.wg.Wait()
	c.conn.CloseNow()
	g.releaseAddr(c.addr)
	g.releaseLimiter(c.ident)
	reason := c.closeReason()
	g.metrics.disconnects.WithLabelValues(reason.String()).Inc()
	if reason == reasonSlow {
		g.metrics.slowClients.Inc()
	}
	g.log.Info("client closed", "room", c.room, "user", c.user, "auth", c.ident.auth, "reason", reason.String())
	g.untrack(c)
}

// fail sends c an error frame.
func (g *Gateway) fail(c *client, code chat.Code, message, clientID string) {
	g.metrics.errors.WithLabelValues(string(code)).Inc()
	c.send(encodeError(code, message, clientID))
}

func (g *Gateway) readLoop(c *client) {
	violations := 0
	for {
		typ, data, err := c.conn.Read(context.Background())
		if err != nil {
			c.close(readFailure(err))
			return
		}
		if !c.limiter.Allow() {
			violations++
			if violations > maxViolations {
				c.close(reasonAbusive)
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
		f, err := chat.ParseClientFrame(data)
		var refused *chat.Refusal
		if errors.As(err, &refused) {
			g.fail(c, refused.Code, refused.Message, refused.ClientID)
			continue
		}
		switch f.Type {
		case chat.FrameMessage:
			g.onMessage(c, f)
		case chat.FrameHistory:
			g.onHistory(c, f)
		}
	}
}

// onMessage stores a message frame (checked by chat.ParseClientFrame).
func (g *Gateway) onMessage(c *client, f chat.ClientFrame) {
	if strings.HasPrefix(f.Text, "/") && g.onAdminCommand(c, f) {
		return
	}
	if until, muted := g.dir.mutedUntil(c.room, c.user); muted {
		g.metrics.errors.WithLabelValues(string(chat.CodeMuted)).Inc()
		c.send(mustJSON(chat.ErrorFrame{Type: chat.FrameError, Code: chat.CodeMuted, ClientID: f.ClientID, Until: until.UTC(),
			Message: fmt.Sprintf("you are muted in this room until %s", until.UTC().Format(time.DateTime+" UTC"))}))
		return
	}
	if strings.HasPrefix(f.Text, "/") {
		g.onCommand(c, f)
		return
	}
	// The author and how they are known come from the connection, never
	// from the frame.
	m := chat.Message{User: c.user, Text: f.Text, Kind: chat.KindUser, ClientID: f.ClientID, TS: time.Now().UTC(), Auth: c.ident.auth}
	msg := nats.NewMsg(chat.RoomSubject(c.room))
	msg.Data = mustJSON(m)
	if f.ClientID != "" {
		// A browser that resends what it typed while offline reuses the
		// client_id: JetStream's de-duplication keeps it one message. The
		// gateway relies on it too when an outcome is unknown.
		msg.Header.Set(jetstream.MsgIDHeader, requestID(c.room, c.user, f.ClientID))
	}
	// Asynchronously, within a window: a client sending fast is not held
	// to one JetStream round trip per message, and a client sending faster
	// than JetStream stores waits here, reading nothing more meanwhile.
	select {
	case c.publishing <- struct{}{}:
	case <-c.ctx.Done():
		return
	}
	future, err := g.js.PublishMsgAsync(msg)
	if err != nil {
		<-c.publishing
		g.log.Warn("publish message", "room", c.room, "user", c.user, "err", err)
		g.fail(c, chat.CodeUnavailable, "message not sent: chat storage unavailable, try again", f.ClientID)
		return
	}
	c.mu.Lock()
	c.acks = append(c.acks, pendingAck{future: future, msg: msg, clientID: f.ClientID})
	start := !c.awaiting && !c.gone
	if start {
		c.awaiting = true
		c.wg.Add(1)
	}
	c.mu.Unlock()
	if start {
		go func() {
			defer c.wg.Done()
			g.awaitAcks(c)
		}()
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
			g.store.ok()
		case err := <-p.future.Err():
			g.settle(c, p, err)
		}
		<-c.publishing
	}
}

// publishRetries is how many times a message whose outcome is unknown is
// published again with the same id before the client is told so.
const publishRetries = 3

// settle decides what to tell c about a message whose publish did not get
// an ack. A timeout is no proof of failure: nats.go may still send the
// publish from its reconnect buffer, and JetStream may have stored it. So
// the gateway publishes it again with the same message id, which
// JetStream's de-duplication turns into the same single message; only a
// definite refusal is reported as not sent, and a message still unknown
// after the retries is reported as unconfirmed, never as failed. The
// message frame with the client_id, whenever it comes, is the ack.
func (g *Gateway) settle(c *client, p pendingAck, err error) {
	for attempt := 0; !definite(err) && p.clientID != "" && attempt < publishRetries; attempt++ {
		ctx, cancel := context.WithTimeout(c.ctx, g.cfg.PublishTimeout)
		_, err = g.js.PublishMsg(ctx, p.msg)
		cancel()
		if err == nil {
			g.metrics.messagesIn.Inc()
			g.store.ok()
			return
		}
		if c.ctx.Err() != nil {
			return // gone: the page resends it with the same client_id
		}
	}
	g.log.Warn("publish message", "room", c.room, "user", c.user, "err", err)
	if !definite(err) {
		g.metrics.unconfirmed.Inc()
		g.fail(c, chat.CodeUnconfirmed, "not confirmed yet: the message may have been stored; if it does not appear, send it again with the same client_id", p.clientID)
		return
	}
	if g.store.refused(err) {
		g.fail(c, chat.CodeUnavailable, "message not sent: chat storage is full, try again later", p.clientID)
		return
	}
	g.fail(c, chat.CodeUnavailable, "message not sent: chat storage unavailable, try again", p.clientID)
}

// definite says whether a publish error proves the message was not stored:
// JetStream refused it, or nothing was there to store it.
func definite(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) || errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse)
}

// onCommand sends a command line to the bot. It runs in the background so a
// slow bot does not hold up the client's chat; c.commands bounds how many.
func (g *Gateway) onCommand(c *client, f chat.ClientFrame) {
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
	req := mustJSON(chat.BotRequest{ID: id, Room: c.room, User: c.user, Text: f.Text, Auth: c.ident.auth})
	ctx := c.ctx
	started := c.spawn(func() {
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
			notice := chat.NoticeFrame{Type: chat.FrameNotice, Text: reply.Notice, ClientID: f.ClientID, Commands: reply.Commands}
			if len(reply.Commands) > 0 && c.isAdmin() {
				// The gateway's own commands, for the one who may use them.
				notice.Commands = append(slices.Clone(reply.Commands), adminCommands...)
				notice.Text += adminHelp
			}
			c.send(mustJSON(notice))
		}
	})
	if !started {
		<-c.commands
	}
}

func (g *Gateway) onHistory(c *client, f chat.ClientFrame) {
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
		upTo = c.joined.members.lastDelivered()
	}
	msgs, more, err := g.joiner.backlog.latest(c.ctx, c.room, upTo, limit)
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
