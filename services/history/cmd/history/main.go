// Command history stores every chat message in the database and answers
// history queries over NATS. Configuration comes from HISTORY_* environment
// variables; run it with -h to list them.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/natschat/chat/services/history"
	"github.com/natschat/chat/shared/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	var cfg history.Config
	if err := config.Load("HISTORY", &cfg, os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, config.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "history:", err)
		os.Exit(2)
	}
	log, err := cfg.Log.Logger(os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "history:", err)
		os.Exit(2)
	}
	if err := history.Run(ctx, cfg, log); err != nil {
		log.Error("history failed", "err", err)
		stop()
		os.Exit(1)
	}
}
