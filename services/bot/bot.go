// Package bot answers the chat commands typed in a room (/now, /sms, /help)
// on the bot.cmd request/reply subject. Public answers go to the room through
// the CHAT stream; acknowledgements and errors go back privately in the reply.
// Any number of bots can run: they share the queue group "bot", so each
// request is answered once.
package bot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/natschat/chat/shared/admin"
	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/config"
	"github.com/natschat/chat/shared/natsconn"
	"github.com/natschat/chat/shared/stream"
)

// Prefix is the prefix of the bot's variables.
const Prefix = "BOT"

// Config is the bot's configuration, read from BOT_* variables (NATS_* and
// LOG_* are read when the BOT_ one is unset).
type Config struct {
	natsconn.Config
	config.Log
	stream.Settings
	AdminAddr string `split_words:"true" default:"" desc:"listen address of the /healthz, /readyz and /metrics HTTP server, e.g. :8081 (empty: off)"`

	// The /sms limits hold across every bot instance (KV bucket
	// sms_limits).
	SMSPerRequester int           `split_words:"true" default:"5" desc:"/sms commands one user may give per BOT_SMS_WINDOW, across every bot"`
	SMSPerRecipient int           `split_words:"true" default:"10" desc:"SMS one user may be sent per BOT_SMS_WINDOW, across every bot"`
	SMSWindow       time.Duration `split_words:"true" default:"1m" desc:"the sliding window of the /sms limits"`
	// ShutdownTimeout bounds the drain: answering the requests already
	// received and flushing their publishes.
	ShutdownTimeout time.Duration `split_words:"true" default:"10s" desc:"how long to drain on SIGTERM"`
}

// Validate reports every problem of the configuration at once.
func (cfg Config) Validate() error {
	c := config.NewChecker(Prefix)
	cfg.Config.Check(c)
	cfg.Log.Check(c)
	cfg.Settings.Check(c)
	c.Check(cfg.ShutdownTimeout > 0, "SHUTDOWN_TIMEOUT", "must be more than 0 (got %v)", cfg.ShutdownTimeout)
	c.Check(cfg.SMSPerRequester >= 1, "SMS_PER_REQUESTER", "must be at least 1 (got %d)", cfg.SMSPerRequester)
	c.Check(cfg.SMSPerRecipient >= 1, "SMS_PER_RECIPIENT", "must be at least 1 (got %d)", cfg.SMSPerRecipient)
	c.Check(cfg.SMSWindow >= time.Second, "SMS_WINDOW", "must be 1s or more (got %v)", cfg.SMSWindow)
	return c.Err()
}

// requestTimeout bounds the work of one command (a JetStream publish), so a
// NATS outage answers "unavailable" instead of holding the requester.
const requestTimeout = 5 * time.Second

// Run serves bot.cmd until ctx is cancelled, then answers the requests it
// already received and drains the connection, for at most
// cfg.ShutdownTimeout. cfg is valid (Validate).
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	var ready atomic.Bool
	nc, err := natsconn.Connect(cfg.Config, "bot", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	m := newMetrics()
	stopAdmin, err := admin.Start(cfg.AdminAddr, natsconn.Readiness(&ready, nc), m.handler(), log)
	if err != nil {
		return err
	}
	defer stopAdmin()

	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	// /now publishes to CHAT and /sms to SMS: both must exist, or a publish
	// would find no stream and the message would be lost. The bot owns
	// neither: it creates a missing one and never changes an existing one.
	opts := stream.Options{Replicas: cfg.Replicas}
	for _, sc := range []jetstream.StreamConfig{stream.ChatConfig(opts), stream.SMSConfig(opts)} {
		if err := natsconn.Retry(ctx, log, "stream "+sc.Name, func(ctx context.Context) error {
			_, err := stream.Use(ctx, js, sc, log)
			return err
		}); err != nil {
			if ctx.Err() != nil {
				return nil // stopped before it was set up: not a failure
			}
			return err
		}
	}

	b := newBot(js, log)
	b.metrics = m
	b.limits = newSMSLimiter(js, cfg)
	svc, err := micro.AddService(nc, micro.Config{
		Name:        "bot",
		Version:     "1.0.0",
		Description: "answers chat commands",
		QueueGroup:  chat.BotQueue,
		Endpoint: &micro.EndpointConfig{
			Subject: chat.BotCmd,
			Handler: micro.HandlerFunc(func(req micro.Request) {
				// Not the Run context: a request received before shutdown
				// is still answered while the connection drains.
				ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), requestTimeout)
				defer cancel()
				if err := req.Respond(encodeReply(b.handle(ctx, req.Data()))); err != nil {
					log.Warn("bot reply failed", "err", err)
				}
			}),
		},
	})
	if err != nil {
		return fmt.Errorf("add bot service: %w", err)
	}
	// Ready means the server routes bot.cmd here: the subscription must
	// have reached it.
	if err := natsconn.Retry(ctx, log, "subscribe to "+chat.BotCmd, nc.FlushWithContext); err != nil {
		svc.Stop()
		return nil // stopped before it was serving
	}
	ready.Store(true)
	log.Info("bot serving", "subject", chat.BotCmd, "queue", chat.BotQueue)

	<-ctx.Done()
	ready.Store(false)
	log.Info("bot stopping: draining")
	if err := svc.Stop(); err != nil {
		log.Warn("stop bot service", "err", err)
	}
	dctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := natsconn.Drain(dctx, nc); err != nil {
		log.Warn("drain nats", "err", err)
	}
	return nil
}

// bot holds what the commands need.
type bot struct {
	js       jetstream.JetStream
	log      *slog.Logger
	metrics  *metrics    // nil: not counted
	limits   *smsLimiter // nil: /sms is not limited
	clock    func() time.Time
	commands []command
	byName   map[string]*command
}

func newBot(js jetstream.JetStream, log *slog.Logger) *bot {
	b := &bot{js: js, log: log, clock: time.Now, commands: commandTable()}
	b.byName = make(map[string]*command, len(b.commands))
	for i := range b.commands {
		b.byName[b.commands[i].name] = &b.commands[i]
	}
	return b
}

// encodeReply is json.Marshal without HTML escaping, so that the usage
// "/sms <user>" reads as such in the nats CLI too.
func encodeReply(r chat.BotReply) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(r) // a struct of strings and a bool always encodes
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// refusal is a command error the user sees, with its code. Any other error
// is an outage, answered with chat.CodeUnavailable.
type refusal struct {
	code chat.Code
	msg  string
}

func (r *refusal) Error() string { return r.msg }

func invalidf(format string, args ...any) error {
	return &refusal{code: chat.CodeInvalid, msg: fmt.Sprintf(format, args...)}
}

// request is a validated BotRequest split into its command and arguments.
type request struct {
	chat.BotRequest
	name string   // the command name, lower case, without the slash
	args []string // the words after the command name
}

// handle answers one request; it never fails, every problem is a reply.
func (b *bot) handle(ctx context.Context, data []byte) chat.BotReply {
	req, err := parseRequest(data)
	var notice string
	if err == nil {
		notice, err = b.run(ctx, &req)
	}
	b.metrics.observe(b.byName[req.name] != nil, req.name, err)
	var r *refusal
	switch {
	case err == nil && req.name == "help":
		// The list also goes machine-readable, for the page's command menu.
		return chat.BotReply{OK: true, Notice: notice, Commands: b.describe()}
	case err == nil:
		return chat.BotReply{OK: true, Notice: notice}
	case errors.As(err, &r):
		b.log.Debug("bot command refused", "room", req.Room, "user", req.User, "command", req.name, "code", r.code, "err", r.msg)
		return chat.BotReply{Code: r.code, Error: r.msg}
	default:
		b.log.Error("bot command failed", "room", req.Room, "user", req.User, "command", req.name, "err", err)
		return chat.BotReply{Code: chat.CodeUnavailable, Error: fmt.Sprintf("/%s could not be completed right now, please try again", req.name)}
	}
}

func parseRequest(data []byte) (request, error) {
	var req request
	if err := json.Unmarshal(data, &req.BotRequest); err != nil {
		return req, invalidf("the request is not valid JSON: %v", err)
	}
	if err := chat.ValidateName("room", req.Room); err != nil {
		return req, invalidf("%v", err)
	}
	if err := chat.ValidateName("user", req.User); err != nil {
		return req, invalidf("%v", err)
	}
	words := strings.Fields(req.Text)
	if len(words) == 0 || !strings.HasPrefix(words[0], "/") || words[0] == "/" {
		return req, invalidf("not a command: commands start with /; type /help to see the commands")
	}
	// The text rule of any message: a command from NATS did not pass the
	// gateway's check, and its words are echoed back in errors.
	if err := chat.ValidateText(req.Text); err != nil {
		return req, invalidf("not a valid command: %s", strings.TrimPrefix(err.Error(), chat.ErrBadMessage.Error()+": "))
	}
	req.name = strings.ToLower(strings.TrimPrefix(words[0], "/"))
	req.args = words[1:]
	return req, nil
}

// run finds the command, checks its arity and runs it.
func (b *bot) run(ctx context.Context, req *request) (notice string, err error) {
	cmd, ok := b.byName[req.name]
	if !ok {
		return "", &refusal{code: chat.CodeUnknownCommand, msg: fmt.Sprintf("unknown command /%s; type /help to see the commands", shorten(req.name, 32))}
	}
	switch want := len(cmd.args); {
	case len(req.args) < want:
		return "", invalidf("/%s is missing %s; usage: %s; type /help to see the commands", cmd.name, strings.Join(cmd.args[len(req.args):], " "), cmd.usage())
	case len(req.args) > want:
		return "", invalidf("/%s takes %s, got %d; usage: %s; type /help to see the commands", cmd.name, plural(want, "argument"), len(req.args), cmd.usage())
	}
	return cmd.run(b, ctx, req)
}

// shorten cuts s to at most n characters, so that what a user typed is not
// echoed back at any length.
func shorten(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	if n == 0 {
		return "no " + noun + "s"
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// key identifies a request for de-duplication: a client that retries a
// request sends the same id, and JetStream drops the second publish with the
// same Nats-Msg-Id. Room and user are part of it so that two clients that
// picked the same id do not cancel each other. Without an id every request
// is new.
func (r *request) key() string {
	if r.ID == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(r.Room + "\x00" + r.User + "\x00" + r.ID))
	return hex.EncodeToString(sum[:16])
}

// publish sends v as JSON to subject through JetStream, so it is stored (and
// sequenced) before the bot says ok. msgID de-duplicates retries; empty means
// none.
func (b *bot) publish(ctx context.Context, subject string, v any, msgID string) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", subject, err)
	}
	var opts []jetstream.PublishOpt
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	if _, err := b.js.Publish(ctx, subject, data, opts...); err != nil {
		return fmt.Errorf("publish to %s: %w", subject, err)
	}
	return nil
}
