// Command gateway serves the chat's web UI and bridges browser WebSockets to
// NATS. Run it with -h for its configuration.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/natschat/chat/services/gateway"
	"github.com/natschat/chat/shared/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg gateway.Config
	if err := config.Load("GATEWAY", &cfg, args, stdout); err != nil {
		if errors.Is(err, config.ErrHelp) {
			return nil
		}
		return err
	}
	log, err := cfg.Log.Logger(stderr)
	if err != nil {
		return err
	}
	return gateway.Run(ctx, cfg, log)
}
