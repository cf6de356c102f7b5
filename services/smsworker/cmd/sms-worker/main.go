// Command sms-worker consumes the sms_channel work queue and sends the SMS.
// Configuration comes from SMSWORKER_* environment variables; see
// sms-worker -h.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/natschat/chat/services/smsworker"
	"github.com/natschat/chat/shared/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var cfg smsworker.Config
	if err := config.Load("SMSWORKER", &cfg, os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, config.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "sms-worker:", err)
		os.Exit(1)
	}
	log, err := cfg.Log.Logger(os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sms-worker:", err)
		os.Exit(1)
	}
	if err := smsworker.Run(ctx, cfg, log); err != nil {
		log.Error("sms-worker stopped", "err", err)
		stop()
		os.Exit(1)
	}
}
