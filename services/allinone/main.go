// Command allinone runs the whole chat in one process: an embedded
// nats-server with JetStream (unless NATS_URL points at a server) and the
// gateway, history, bot, sms-worker and accounts services, each on its own
// NATS connection exactly as when they run as separate binaries.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"golang.org/x/sync/errgroup"

	"github.com/natschat/chat/services/accounts"
	"github.com/natschat/chat/services/bot"
	"github.com/natschat/chat/services/gateway"
	"github.com/natschat/chat/services/history"
	"github.com/natschat/chat/services/smsworker"
	"github.com/natschat/chat/shared/config"
	"github.com/natschat/chat/shared/service"
)

// prefix is the prefix of the all-in-one's own variables.
const prefix = "CHAT"

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

// Validate reports every problem of the configuration at once.
func (cfg Config) Validate() error {
	c := config.NewChecker(prefix)
	cfg.Log.Check(c)
	c.Check(cfg.NATSHost != "", "NATS_HOST", "must not be empty")
	c.Check(cfg.NATSPort >= 1 && cfg.NATSPort <= 65535, "NATS_PORT", "must be a port from 1 to 65535 (got %d)", cfg.NATSPort)
	c.Check(cfg.DataDir != "", "DATA_DIR", "must not be empty")
	return c.Err()
}

type configs struct {
	chat      Config
	gateway   gateway.Config
	history   history.Config
	bot       bot.Config
	smsworker smsworker.Config
	accounts  accounts.Config
}

// program is the all-in-one for the service skeleton: one -h listing every
// prefix, every configuration loaded and validated before anything starts,
// the logger from CHAT_LOG_*.
func program() service.Program {
	c := new(configs)
	return service.Program{
		Name:  "allinone",
		About: helpText,
		Configs: []service.Env{
			{Prefix: prefix, Config: &c.chat},
			{Prefix: gateway.Prefix, Config: &c.gateway},
			{Prefix: history.Prefix, Config: &c.history},
			{Prefix: bot.Prefix, Config: &c.bot},
			{Prefix: smsworker.Prefix, Config: &c.smsworker},
			{Prefix: accounts.Prefix, Config: &c.accounts},
		},
		Run: func(ctx context.Context, log *slog.Logger) error { return runAll(ctx, c, log) },
	}
}

func main() { program().Main() }

// run is main without the process, for tests.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return program().Exec(ctx, args, stdout, stderr)
}

func runAll(ctx context.Context, c *configs, log *slog.Logger) error {
	// The HTTP port first: a taken port is then the one thing said, not a
	// line lost among the start-up logs of the embedded server and four
	// services.
	ln, err := net.Listen("tcp", c.gateway.Addr)
	if err != nil {
		return fmt.Errorf("gateway: cannot listen on %s (is another chat running? set GATEWAY_ADDR, e.g. GATEWAY_ADDR=127.0.0.1:8081): %w", c.gateway.Addr, err)
	}
	defer ln.Close() // closed by the gateway too; this is for an early return
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
	g.Go(func() error {
		return named("gateway", gateway.RunListener(gctx, c.gateway, ln, log.With("service", "gateway")))
	})
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
