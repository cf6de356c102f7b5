package bot

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nuid"

	"github.com/natschat/chat/shared/chat"
)

// command is one chat command. Adding a command is a function and a line in
// commandTable; parsing, case-insensitivity, arity checks and /help come for
// free.
type command struct {
	name string   // lower case, without the slash
	args []string // argument names, shown in the usage; the count is checked before run
	desc string   // one line for /help
	// run does the work, returns the private notice for the sender. A
	// *refusal is shown to the user as is; any other error is an outage.
	run func(b *bot, ctx context.Context, req *request) (notice string, err error)
}

// commandTable lists every command, in /help order. It is a function, not a
// variable, because /help reads the table it is part of.
func commandTable() []command {
	return []command{
		{name: "help", desc: "list the commands", run: (*bot).cmdHelp},
		{name: "now", desc: "post the server's date and time to the room", run: (*bot).cmdNow},
		{name: "sms", args: []string{"<user>"}, desc: "send an SMS to <user>; the room is told once it is sent", run: (*bot).cmdSMS},
	}
}

// usage is the command's syntax, e.g. "/sms <user>".
func (c *command) usage() string {
	return strings.Join(append([]string{"/" + c.name}, c.args...), " ")
}

// describe lists the commands for BotReply.Commands.
func (b *bot) describe() []chat.Command {
	out := make([]chat.Command, 0, len(b.commands))
	for _, c := range b.commands {
		out = append(out, chat.Command{Name: c.name, Usage: c.usage(), Help: c.desc})
	}
	return out
}

func (b *bot) cmdHelp(_ context.Context, _ *request) (string, error) {
	var sb strings.Builder
	sb.WriteString("Commands:")
	for _, c := range b.commands {
		fmt.Fprintf(&sb, "\n%s - %s", c.usage(), c.desc)
	}
	return sb.String(), nil
}

func (b *bot) cmdNow(ctx context.Context, req *request) (string, error) {
	now := b.clock()
	msg := chat.Message{
		User: "bot",
		Kind: chat.KindBot,
		// RFC 1123 carries the server's time zone, which is the point: the
		// readers of the room may live in other ones.
		Text: fmt.Sprintf("%s asked for the time: it is %s", req.User, now.Format(time.RFC1123)),
		TS:   now.UTC(),
	}
	var msgID string
	if k := req.key(); k != "" {
		msgID = "bot-now-" + k
	}
	return "", b.publish(ctx, chat.RoomSubject(req.Room), msg, msgID)
}

func (b *bot) cmdSMS(ctx context.Context, req *request) (string, error) {
	to := req.args[0]
	if err := chat.ValidateName("user", to); err != nil {
		return "", invalidf("/sms: %v", err)
	}
	// The task id comes from the request id, so a retried /sms is dropped
	// by the SMS stream's de-duplication instead of becoming a second SMS.
	key := req.key()
	if key == "" {
		key = nuid.Next()
	}
	id := "sms-" + key
	if b.limits != nil {
		if err := b.limits.allow(ctx, req.User, to, id); err != nil {
			return "", err
		}
	}
	task := chat.SMSTask{ID: id, Room: req.Room, From: req.User, To: to, RequestedAt: b.clock().UTC()}
	if err := b.publish(ctx, chat.SMSChannel, task, task.ID); err != nil {
		if b.limits != nil {
			b.limits.undo(ctx, req.User, to, id)
		}
		return "", err
	}
	b.log.Info("sms queued", "room", req.Room, "user", req.User, "to", to, "task_id", task.ID)
	return fmt.Sprintf("SMS to %s queued", to), nil
}
