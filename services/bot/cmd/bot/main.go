// Command bot answers chat commands (/now, /sms, /help) on bot.cmd.
// Configuration comes from BOT_* environment variables; see bot -h.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/natschat/chat/services/bot"
	"github.com/natschat/chat/shared/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var cfg bot.Config
	if err := config.Load("BOT", &cfg, os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, config.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "bot:", err)
		os.Exit(1)
	}
	log, err := cfg.Log.Logger(os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bot:", err)
		os.Exit(1)
	}
	if err := bot.Run(ctx, cfg, log); err != nil {
		log.Error("bot stopped", "err", err)
		stop()
		os.Exit(1)
	}
}
