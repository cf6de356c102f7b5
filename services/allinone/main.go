// Command allinone runs the whole chat in one process: an embedded
// nats-server with JetStream (unless NATS_URL points at a server) and the
// gateway, history, bot, sms-worker and accounts services, each on its own
// NATS connection exactly as when they run as separate binaries.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"golang.org/x/sync/errgroup"

	"github.com/natschat/chat/services/accounts"
	"github.com/natschat/chat/services/bot"
	"github.com/natschat/chat/services/gateway"
	"github.com/natschat/chat/services/history"
	"github.com/natschat/chat/services/smsworker"
	"github.com/natschat/chat/shared/config"
)

// Config is the all-in-one's own configuration (CHAT_*). Each service also
// reads its usual variables (GATEWAY_*, HISTORY_*, BOT_*, SMSWORKER_*,
// ACCOUNTS_*).
type Config struct {
	config.Log
	// NATSURL empty means: start the embedded server.
	NATSURL  string `envconfig:"NATS_URL" desc:"NATS server to use; empty: start an embedded one"`
	NATSHost string `envconfig:"NATS_HOST" default:"127.0.0.1" desc:"listen host of the embedded NATS server"`
	NATSPort int    `envconfig:"NATS_PORT" default:"4222" desc:"client port of the embedded NATS server"`
	DataDir  string `split_words:"true" default:"data" desc:"directory of the embedded server's JetStream data and of the SQLite file"`
}

type configs struct {
	chat      Config
	gateway   gateway.Config
	history   history.Config
	bot       bot.Config
	smsworker smsworker.Config
	accounts  accounts.Config
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "allinone:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c configs
	specs := []struct {
		prefix string
		spec   any
	}{
		{"CHAT", &c.chat},
		{"GATEWAY", &c.gateway},
		{"HISTORY", &c.history},
		{"BOT", &c.bot},
		{"SMSWORKER", &c.smsworker},
		{"ACCOUNTS", &c.accounts},
	}
	if len(args) > 0 {
		if args[0] != "-h" && args[0] != "-help" && args[0] != "--help" {
			return fmt.Errorf("unexpected argument %q: configuration comes from environment variables, see -h", args[0])
		}
		fmt.Fprint(stdout, helpText)
		for _, s := range specs {
			fmt.Fprintf(stdout, "\n%s_* variables:\n", s.prefix)
			if err := config.Table(s.prefix, s.spec, stdout); err != nil {
				return err
			}
		}
		return nil
	}
	for _, s := range specs {
		if err := config.Load(s.prefix, s.spec, nil, stdout); err != nil {
			return err
		}
	}
	log, err := c.chat.Log.Logger(stderr)
	if err != nil {
		return err
	}

	url := c.chat.NATSURL
	if url == "" {
		if err := os.MkdirAll(c.chat.DataDir, 0o755); err != nil {
			return fmt.Errorf("create data dir: %w", err)
		}
		ns, err := startNATS(c.chat.NATSHost, c.chat.NATSPort, c.chat.DataDir, log)
		if err != nil {
			return err
		}
		defer func() {
			ns.Shutdown()
			ns.WaitForShutdown()
		}()
		url = ns.ClientURL()
		log.Info("embedded nats-server started", "url", url, "store", c.chat.DataDir)
	}
	c.gateway.URL, c.history.URL, c.bot.URL, c.smsworker.URL, c.accounts.URL = url, url, url, url, url
	if _, set := os.LookupEnv("HISTORY_SQLITE_PATH"); !set {
		// Next to the embedded server's data, wherever CHAT_DATA_DIR says.
		c.history.SQLitePath = filepath.Join(c.chat.DataDir, "chat.db")
	}
	if _, set := os.LookupEnv("ACCOUNTS_SQLITE_PATH"); !set {
		c.accounts.SQLitePath = filepath.Join(c.chat.DataDir, "accounts.db")
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return named("gateway", gateway.Run(gctx, c.gateway, log.With("service", "gateway"))) })
	g.Go(func() error { return named("history", history.Run(gctx, c.history, log.With("service", "history"))) })
	g.Go(func() error { return named("bot", bot.Run(gctx, c.bot, log.With("service", "bot"))) })
	g.Go(func() error {
		return named("sms-worker", smsworker.Run(gctx, c.smsworker, log.With("service", "sms-worker")))
	})
	g.Go(func() error {
		return named("accounts", accounts.Run(gctx, c.accounts, log.With("service", "accounts")))
	})
	err = g.Wait()
	log.Info("stopped")
	return err
}

const helpText = `allinone runs the whole chat in one process: an embedded nats-server with
JetStream (unless CHAT_NATS_URL or NATS_URL names a server) and the gateway,
history, bot, sms-worker and accounts services. Each service reads the same variables
as its own binary; their NATS URL is replaced by the one above.
`

func named(service string, err error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", service, err)
	}
	return nil
}
