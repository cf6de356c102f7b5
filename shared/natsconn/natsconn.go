// Package natsconn connects a service to NATS the same way everywhere: named
// client, reconnect forever, every connection event logged.
package natsconn

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natschat/chat/shared/config"
)

// Config is the NATS part of every service's configuration. Each service
// embeds it, so the variables are <SERVICE>_NATS_URL and so on; the
// unprefixed NATS_URL, NATS_USER, ... are read when the prefixed one is unset.
type Config struct {
	// URL is a comma-separated list of servers.
	URL string `envconfig:"NATS_URL" default:"nats://127.0.0.1:4222" desc:"NATS server URLs, comma-separated"`
	// User and Password authenticate with a user/password pair; empty means none.
	User     string `envconfig:"NATS_USER" desc:"NATS user name (empty: no authentication)"`
	Password string `envconfig:"NATS_PASSWORD" desc:"NATS password"`
	// CredsFile authenticates with a JWT credentials file; empty means none.
	CredsFile string `envconfig:"NATS_CREDS" desc:"NATS credentials file (empty: none)"`
}

// Check records what is wrong with the NATS variables.
func (cfg Config) Check(c *config.Checker) {
	c.CheckShared(strings.TrimSpace(cfg.URL) != "", "NATS_URL", "must name at least one server")
	c.CheckShared(cfg.Password == "" || cfg.User != "", "NATS_PASSWORD", "is set but NATS_USER is empty")
	c.CheckShared(cfg.User == "" || cfg.CredsFile == "", "NATS_CREDS", "and NATS_USER are both set: use one way to authenticate")
}

// InboxPrefix is where a service connected as user gets its replies; the
// server's permissions (deploy/auth.conf) allow each user only its own.
func InboxPrefix(user string) string { return "_INBOX_" + user }

// Connect opens a connection named name. It returns even while the server is
// unreachable and keeps retrying in the background, so a service can start
// before NATS does (its readiness reports the difference).
func Connect(cfg Config, name string, log *slog.Logger) (*nats.Conn, error) {
	log = log.With("nats_client", name)
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.RetryOnFailedConnect(true),
		nats.ConnectHandler(func(nc *nats.Conn) {
			log.Info("nats connected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ClosedHandler(func(*nats.Conn) { log.Debug("nats connection closed") }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil {
				log.Warn("nats async error", "subject", sub.Subject, "err", err)
				return
			}
			log.Warn("nats async error", "err", err)
		}),
	}
	if cfg.User != "" {
		// Replies come to _INBOX_<user>.>, so the server can let each
		// service read its own replies and nobody else's.
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password), nats.CustomInboxPrefix(InboxPrefix(cfg.User)))
	}
	if cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats %s: %w", cfg.URL, err)
	}
	return nc, nil
}
