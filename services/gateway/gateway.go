// Package gateway bridges browser WebSockets to NATS subjects and serves the
// web UI and the HTTP API. It talks to the other services only through NATS.
//
// A room on a gateway is three parts with one owner each: its feed
// (feed.go, a goroutine that sequences the room's messages and fills
// gaps), its members (members.go, the registry and fan-out under one
// mutex) and its presence (presence.go, a goroutine). join.go decides
// what a connecting client gets before live messages; client.go queues
// and writes; close.go names why a connection ended. docs/ARCHITECTURE.md
// follows a message through these files.
package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/natschat/chat/shared/config"
	"github.com/natschat/chat/shared/natsconn"
	"github.com/natschat/chat/shared/stream"
)

// Prefix is the prefix of the gateway's variables: GATEWAY_ADDR, ...
const Prefix = "GATEWAY"

// Config is the gateway's configuration, read from GATEWAY_* variables.
type Config struct {
	natsconn.Config
	config.Log
	stream.Settings

	// Addr is localhost by default, so a development run is not reachable
	// from the network; the containers set :8080.
	Addr string `default:"127.0.0.1:8080" desc:"HTTP listen address (:8080 for every interface, as the containers set it)"`
	// AllowedOrigins empty means same-origin WebSockets only.
	AllowedOrigins   []string      `split_words:"true" desc:"origin host patterns allowed to open WebSockets besides the gateway's own host, comma-separated (e.g. chat.example.com,*.example.org); empty: same origin only"`
	SendQueue        int           `split_words:"true" default:"256" desc:"frames queued per client before it is disconnected as too slow"`
	SendQueueBytes   int           `split_words:"true" default:"4194304" desc:"bytes queued per client before it is disconnected as too slow (one frame always fits)"`
	RecentBytes      int           `split_words:"true" default:"262144" desc:"bytes of its newest messages each active room keeps in memory to serve joins and short resumes"`
	HistoryOnJoin    int           `split_words:"true" default:"50" desc:"messages sent to a client when it joins"`
	ResumeMax        int           `split_words:"true" default:"1000" desc:"most messages a ?since= resume sends; further behind, the client gets a reset"`
	PageMax          int           `split_words:"true" default:"200" desc:"most messages of one history page"`
	Rate             float64       `default:"20" desc:"frames per second a client may send on average"`
	Burst            int           `default:"40" desc:"frames a client may send in a burst"`
	BotTimeout       time.Duration `split_words:"true" default:"3s" desc:"how long to wait for the bot's answer to a command"`
	HistoryTimeout   time.Duration `split_words:"true" default:"2s" desc:"how long to wait for the history service before reading the stream"`
	PublishTimeout   time.Duration `split_words:"true" default:"5s" desc:"how long to wait for JetStream to store a message"`
	WriteTimeout     time.Duration `split_words:"true" default:"10s" desc:"how long one WebSocket write may take before the client is dropped"`
	ShutdownTimeout  time.Duration `split_words:"true" default:"10s" desc:"how long to drain on SIGTERM"`
	PingInterval     time.Duration `split_words:"true" default:"30s" desc:"how often an idle WebSocket is pinged"`
	PingTimeout      time.Duration `split_words:"true" default:"15s" desc:"how long a ping may wait for its pong before the client is closed as dead"`
	MaxConnsPerAddr  int           `split_words:"true" default:"64" desc:"open WebSockets one client address may have on this gateway; more are refused with 429"`
	TrustedProxies   []string      `split_words:"true" desc:"proxies (IPs or CIDRs, comma-separated) whose X-Forwarded-For names the client address; empty: the socket's address is the client's"`
	MaxRooms         int           `split_words:"true" default:"10000" desc:"rooms with clients this gateway serves at once; joins of further rooms are refused with 503"`
	ID               string        `desc:"name of this gateway instance in NATS (default: host name)"`
	PresenceInterval time.Duration `split_words:"true" default:"10s" desc:"how often the gateway announces who is connected; a gateway silent for 3 intervals has its users dropped"`
	Pprof            bool          `default:"false" desc:"serve Go profiles under /debug/pprof/ (do not expose publicly)"`

	// Identity (see identity.go).
	Guests        bool          `default:"true" desc:"unregistered names may chat as guests; false: only signed-in accounts and token users"`
	SecureCookies bool          `split_words:"true" default:"false" desc:"mark the session cookie Secure: set it when browsers reach the gateway over HTTPS"`
	Admins        []string      `desc:"comma-separated names that are admins when signed in or with a token, besides the accounts the accounts service makes admins (ACCOUNTS_ADMINS)"`
	JWTSecret     string        `split_words:"true" desc:"HS256 key (at least 32 bytes) of the tokens embedding apps sign for ?token=; empty: no HS256 tokens"`
	JWTPublicKey  string        `split_words:"true" desc:"PEM public key, or a file holding one, of embedding apps' tokens: ECDSA P-256 (ES256) or RSA (RS256); empty: none"`
	AuthTimeout   time.Duration `split_words:"true" default:"5s" desc:"how long to wait for the accounts service (sign-in, sign-up, session checks)"`
}

// Validate reports every problem of the configuration at once.
func (cfg Config) Validate() error {
	c := config.NewChecker(Prefix)
	cfg.Config.Check(c)
	cfg.Log.Check(c)
	cfg.Settings.Check(c)
	c.Check(cfg.Addr != "", "ADDR", "must not be empty (e.g. 127.0.0.1:8080, or :8080 for every interface)")
	for _, o := range cfg.AllowedOrigins {
		_, err := path.Match(o, "")
		c.Check(err == nil, "ALLOWED_ORIGINS", "has %q, not a valid host pattern", o)
	}
	c.Check(cfg.SendQueue >= 1, "SEND_QUEUE", "must be at least 1 (got %d)", cfg.SendQueue)
	c.Check(cfg.SendQueueBytes >= 1024, "SEND_QUEUE_BYTES", "must be at least 1024 (got %d)", cfg.SendQueueBytes)
	c.Check(cfg.RecentBytes >= 0, "RECENT_BYTES", "must not be negative (got %d)", cfg.RecentBytes)
	c.Check(cfg.MaxConnsPerAddr >= 1, "MAX_CONNS_PER_ADDR", "must be at least 1 (got %d)", cfg.MaxConnsPerAddr)
	c.Check(cfg.MaxRooms >= 1, "MAX_ROOMS", "must be at least 1 (got %d)", cfg.MaxRooms)
	if _, err := parsePrefixes(cfg.TrustedProxies); err != nil {
		c.Check(false, "TRUSTED_PROXIES", "%v", err)
	}
	c.Check(cfg.HistoryOnJoin >= 1, "HISTORY_ON_JOIN", "must be at least 1 (got %d)", cfg.HistoryOnJoin)
	c.Check(cfg.ResumeMax >= 1, "RESUME_MAX", "must be at least 1 (got %d)", cfg.ResumeMax)
	c.Check(cfg.PageMax >= 1, "PAGE_MAX", "must be at least 1 (got %d)", cfg.PageMax)
	c.Check(cfg.Rate > 0, "RATE", "must be more than 0 (got %v)", cfg.Rate)
	c.Check(cfg.Burst >= 1, "BURST", "must be at least 1 (got %d)", cfg.Burst)
	for _, d := range []struct {
		name string
		d    time.Duration
	}{
		{"BOT_TIMEOUT", cfg.BotTimeout},
		{"HISTORY_TIMEOUT", cfg.HistoryTimeout},
		{"PUBLISH_TIMEOUT", cfg.PublishTimeout},
		{"WRITE_TIMEOUT", cfg.WriteTimeout},
		{"SHUTDOWN_TIMEOUT", cfg.ShutdownTimeout},
		{"PRESENCE_INTERVAL", cfg.PresenceInterval},
		{"PING_INTERVAL", cfg.PingInterval},
		{"PING_TIMEOUT", cfg.PingTimeout},
	} {
		c.Check(d.d > 0, d.name, "must be more than 0 (got %v)", d.d)
	}
	return c.Err()
}

// Run connects to NATS, listens on cfg.Addr and serves until ctx is done.
// cfg is valid (Validate).
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	return RunListener(ctx, cfg, ln, log)
}

// RunListener is Run on a listener the caller opened, so that a binary
// running several services can report a taken port before it starts
// anything else. It closes ln.
func RunListener(ctx context.Context, cfg Config, ln net.Listener, log *slog.Logger) error {
	cfg.ID = cfg.instance()
	nc, err := natsconn.Connect(cfg.Config, "gateway-"+cfg.ID, log)
	if err != nil {
		ln.Close()
		return err
	}
	defer nc.Close()
	return Serve(ctx, cfg, nc, ln, log)
}

// Serve serves on ln with an existing NATS connection until ctx is done,
// then drains: stops accepting, closes WebSockets with going-away, drains
// NATS. It closes ln.
func Serve(ctx context.Context, cfg Config, nc *nats.Conn, ln net.Listener, log *slog.Logger) error {
	g, err := New(ctx, cfg, nc, log)
	if err != nil {
		ln.Close()
		if ctx.Err() != nil {
			return nil // stopped before it was set up: not a failure
		}
		return err
	}
	srv := &http.Server{
		Handler:           g,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("gateway listening", "addr", ln.Addr().String())

	select {
	case err := <-errc:
		g.Close()
		return fmt.Errorf("serve http: %w", err)
	case <-ctx.Done():
	}
	log.Info("gateway shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	shutdownErr := srv.Shutdown(sctx)
	g.Close()
	if err := g.wait(sctx); err != nil {
		log.Warn("websockets still open at shutdown timeout", "err", err)
	}
	// Drained before Run's deferred Close: publishes still awaiting their
	// ack and replies in flight get through.
	if err := natsconn.Drain(sctx, nc); err != nil {
		log.Warn("drain nats", "err", err)
	}
	if shutdownErr != nil {
		return fmt.Errorf("shutdown http: %w", shutdownErr)
	}
	return nil
}

// instance names this gateway: ID, or the host name with a random suffix,
// since several gateways may share a host.
func (cfg Config) instance() string {
	if cfg.ID != "" {
		return cfg.ID
	}
	host, err := os.Hostname()
	if err != nil {
		host = "gateway"
	}
	return host + "-" + randomID()[:6]
}

// Gateway is the HTTP handler of the gateway: pages, API and WebSockets.
type Gateway struct {
	cfg     Config
	nc      *nats.Conn
	js      jetstream.JetStream
	joiner  joiner
	watch   *streamWatch
	hub     *hub
	store   *storage
	proxies []netip.Prefix
	metrics *metrics
	log     *slog.Logger
	mux     *http.ServeMux
	dir     *directory
	tokens  *tokenVerifier

	mu      sync.Mutex
	closing bool
	clients map[*client]struct{}
	perAddr map[netip.Addr]int // open WebSockets per client address
	// limiters are the frame rate limiters shared by a signed-in user's
	// connections.
	limiters map[string]*sharedLimiter
	conns    sync.WaitGroup
	// pinger is the goroutine that pings idle clients; stopPing ends it.
	pinger   sync.WaitGroup
	stopPing chan struct{}
}

// New builds a gateway on nc. The gateway does not own the CHAT stream
// (history does, see package stream): it creates it when it is missing, and
// uses an existing one as it is, with a warning when it differs from the
// definition. While NATS is unreachable it retries until ctx is done.
func New(ctx context.Context, cfg Config, nc *nats.Conn, log *slog.Logger) (*Gateway, error) {
	cfg.ID = cfg.instance()
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncTimeout(cfg.PublishTimeout),
		jetstream.WithPublishAsyncMaxPending(16384),
	)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	var chatStream jetstream.Stream
	chatDef := stream.ChatConfig(stream.Options{Replicas: cfg.Replicas})
	err = natsconn.Retry(ctx, log, "CHAT stream", func(ctx context.Context) (err error) {
		chatStream, err = stream.Use(ctx, js, chatDef, log)
		return err
	})
	if err != nil {
		return nil, err
	}
	src := &natsSource{nc: nc, chat: chatStream, historyTimeout: cfg.HistoryTimeout, log: log}
	g := &Gateway{
		cfg:      cfg,
		nc:       nc,
		js:       js,
		watch:    newStreamWatch(js, chatDef, chatStream.CachedInfo(), log),
		store:    &storage{log: log},
		log:      log,
		clients:  make(map[*client]struct{}),
		perAddr:  make(map[netip.Addr]int),
		limiters: make(map[string]*sharedLimiter),
		stopPing: make(chan struct{}),
	}
	if g.proxies, err = parsePrefixes(cfg.TrustedProxies); err != nil {
		return nil, fmt.Errorf("GATEWAY_TRUSTED_PROXIES: %w", err)
	}
	g.joiner = joiner{backlog: backlog{src: src, epoch: g.watch.current}, onJoin: cfg.HistoryOnJoin, resumeMax: cfg.ResumeMax,
		epoch: g.watch.current, reaches: g.watch.reaches}
	g.hub = newHub(cfg.ID, cfg.PresenceInterval, nc, src, log)
	g.hub.watch = g.watch
	g.hub.backlog = g.joiner.backlog
	g.watch.onReset = func(int64) { g.hub.startOver() }
	g.hub.keepRecent, g.hub.keepBytes, g.hub.maxRooms = cfg.HistoryOnJoin, cfg.RecentBytes, cfg.MaxRooms
	g.metrics = newMetrics(g.hub)
	g.hub.metrics = g.metrics
	g.metrics.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "chat_gateway_store_full", Help: "1 while JetStream refuses messages for lack of storage.",
	}, func() float64 {
		if _, full := g.store.full(); full {
			return 1
		}
		return 0
	}))
	if err := g.startIdentity(); err != nil {
		return nil, err
	}
	g.routes()
	g.watch.start()
	g.pinger.Add(1)
	go func() {
		defer g.pinger.Done()
		g.pingLoop()
	}()
	// After a reconnect the feed does not replay what was published while
	// this gateway was away: each room catches up from the stream.
	prev := nc.Opts.ReconnectedCB
	nc.SetReconnectHandler(func(c *nats.Conn) {
		if prev != nil {
			prev(c)
		}
		g.hub.resyncAll()
	})
	return g, nil
}

// Close closes every WebSocket with going-away and refuses new ones.
func (g *Gateway) Close() {
	g.dir.close()
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.closing {
		close(g.stopPing)
		g.watch.stop()
	}
	g.closing = true
	for c := range g.clients {
		c.close(reasonShutdown)
	}
}

// wait returns when every client has ended (with every goroutine it
// started) and every room has stopped, or when ctx is done.
func (g *Gateway) wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		g.pinger.Wait()
		g.conns.Wait()
		g.hub.wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *Gateway) track(c *client) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closing {
		return false
	}
	g.clients[c] = struct{}{}
	g.conns.Add(1)
	return true
}

// reserveAddr counts one more WebSocket for addr, unless it has
// MaxConnsPerAddr already; releaseAddr gives it back.
func (g *Gateway) reserveAddr(addr netip.Addr) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.perAddr[addr] >= g.cfg.MaxConnsPerAddr {
		return false
	}
	g.perAddr[addr]++
	return true
}

func (g *Gateway) releaseAddr(addr netip.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.perAddr[addr]--; g.perAddr[addr] <= 0 {
		delete(g.perAddr, addr)
	}
}

func (g *Gateway) untrack(c *client) {
	g.mu.Lock()
	delete(g.clients, c)
	g.mu.Unlock()
	g.conns.Done()
}
