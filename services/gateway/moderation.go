package gateway

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/natschat/chat/shared/chat"
)

// The gateway answers /mute and /unmute itself instead of the bot: they act
// with the admin's own session (auth.mute checks that it is an admin's),
// which only the gateway holds. Mutes are enforced here too, from the
// watched mutes bucket, on every message and command.

// adminCommands are added to /help's command list for admins.
var adminCommands = []chat.Command{
	{Name: "mute", Usage: "/mute <user> <duration>", Help: "mute <user> in this room for <duration> (e.g. 10m, 2h)"},
	{Name: "unmute", Usage: "/unmute <user>", Help: "lift the mute of <user> in this room"},
}

// adminHelp is added to /help's text for admins.
var adminHelp = func() string {
	var sb strings.Builder
	for _, c := range adminCommands {
		fmt.Fprintf(&sb, "\n%s - %s (admins)", c.Usage, c.Help)
	}
	return sb.String()
}()

// onAdminCommand handles f if it is /mute or /unmute, and reports whether
// it was.
func (g *Gateway) onAdminCommand(c *client, f chat.ClientFrame) bool {
	words := strings.Fields(f.Text)
	name := strings.ToLower(strings.TrimPrefix(words[0], "/"))
	if name != "mute" && name != "unmute" {
		return false
	}
	args := words[1:]
	usage := adminCommands[0].Usage
	if name == "unmute" {
		usage = adminCommands[1].Usage
	}
	switch {
	case c.ident.auth != chat.AuthAccount || !c.isAdmin():
		g.fail(c, chat.CodeForbidden, fmt.Sprintf("/%s: only admins signed in to their account may do this", name), f.ClientID)
		return true
	case name == "mute" && len(args) != 2, name == "unmute" && len(args) != 1:
		g.fail(c, chat.CodeInvalid, "usage: "+usage, f.ClientID)
		return true
	}
	if err := chat.ValidateName("user", args[0]); err != nil {
		g.fail(c, chat.CodeInvalid, fmt.Sprintf("/%s: %v", name, err), f.ClientID)
		return true
	}
	select {
	case c.commands <- struct{}{}:
	default:
		g.fail(c, chat.CodeRateLimited, "wait for your previous commands to finish", f.ClientID)
		return true
	}
	req := chat.MuteRequest{Token: c.ident.token, Room: c.room, User: args[0]}
	subject := chat.AuthUnmute
	if name == "mute" {
		subject, req.Duration = chat.AuthMute, args[1]
	}
	started := c.spawn(func() {
		defer func() { <-c.commands }()
		reply := g.dir.request(c.ctx, subject, req)
		if c.ctx.Err() != nil {
			return
		}
		g.metrics.commands.WithLabelValues(map[bool]string{true: "ok", false: "refused"}[reply.OK]).Inc()
		if !reply.OK {
			g.fail(c, reply.Code, fmt.Sprintf("/%s: %s", name, reply.Error), f.ClientID)
			return
		}
		// This gateway enforces what its copy of the mutes has: wait a
		// moment for it, so the mute holds here once the admin is told.
		key := chat.MuteKey(c.room, req.User)
		if g.dir.mutes.synced() {
			ctx, cancel := context.WithTimeout(c.ctx, copyWait)
			g.dir.mutes.waitFor(ctx, func(v map[string]chat.Mute) bool { _, ok := v[key]; return ok == (reply.Mute != nil) })
			cancel()
		}
		text := fmt.Sprintf("%s may write in #%s again", req.User, c.room)
		if reply.Mute != nil {
			text = fmt.Sprintf("%s is muted in #%s until %s", reply.Mute.User, c.room, reply.Mute.Until.UTC().Format(time.DateTime+" UTC"))
		}
		g.log.Info("moderation", "command", name, "room", c.room, "user", req.User, "by", c.user)
		c.send(mustJSON(chat.NoticeFrame{Type: chat.FrameNotice, Text: text, ClientID: f.ClientID}))
	})
	if !started {
		<-c.commands
	}
	return true
}
