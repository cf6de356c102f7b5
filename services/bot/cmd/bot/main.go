// Command bot answers chat commands (/now, /sms, /help) on bot.cmd.
// Configuration comes from BOT_* environment variables; see bot -h.
package main

import (
	"github.com/natschat/chat/services/bot"
	"github.com/natschat/chat/shared/config"
)

func main() {
	config.Main("bot", "BOT", bot.Run)
}
