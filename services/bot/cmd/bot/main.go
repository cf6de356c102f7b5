// Command bot answers chat commands (/now, /sms, /help) on bot.cmd.
// Configuration comes from BOT_* environment variables; see bot -h.
package main

import (
	"github.com/natschat/chat/services/bot"
	"github.com/natschat/chat/shared/service"
)

func main() {
	service.Main("bot", bot.Prefix, bot.Run)
}
