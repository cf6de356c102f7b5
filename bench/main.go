// Command chatbench is the chat's load generator. It opens WebSocket clients
// against a running gateway (or, with -peer centrifugo, a Centrifugo) on
// this machine, publishes messages that carry their send time and a unique
// id, and reports per scenario deliveries, losses, duplicates, latency
// percentiles and the CPU and memory of both itself and the server.
// "chatbench compare" puts the results of several runs side by side. See
// README.md.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "chatbench:", err)
		os.Exit(1)
	}
}

// options are the command-line flags.
type options struct {
	url, natsURL string
	peer         string
	scenarios    string
	serverPID    int
	verbose      bool
	jsonOut      string
	stamp        string
	arrivals     string
	chatBatch    bool

	connRate float64
	window   int
	dialers  int
	drainMax time.Duration
	// scale multiplies every scenario duration (0.1 for a smoke run).
	scale float64

	// custom scenario
	rooms, subs, pubs int
	rate              float64
	duration          time.Duration

	idleConns, idleRooms int

	s4 ceiling

	s6Rate     float64
	s6Duration time.Duration

	s8 largeHistory

	churnMembers string
	churn        churn
	restartCmd   string
	s7           storm
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("chatbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: chatbench [flags]")
		fmt.Fprintln(stderr, "       chatbench compare <file.json>...   one table of the -json files of several runs and peers")
		fs.PrintDefaults()
	}
	fs.StringVar(&o.url, "url", "http://127.0.0.1:8080", "base URL of the server: the gateway, or Centrifugo with -peer centrifugo (loopback only)")
	fs.StringVar(&o.peer, "peer", "chat", "the server's protocol: chat (the gateway) or centrifugo (its JSON protocol, channels "+centrifugoNamespace+":<room>)")
	fs.BoolVar(&o.chatBatch, "chat-batch", true, "chat: connect with ?batch=1, as the page does (false: one frame per WebSocket message)")
	fs.StringVar(&o.jsonOut, "json", "", "also write the results to this file, for chatbench compare")
	fs.StringVar(&o.stamp, "stamp", "due", "the send time a late paced message carries: due (when it was due) or write (when it was written: hides the time a blocked write waited)")
	fs.StringVar(&o.arrivals, "arrivals", "poisson", "how paced messages are spaced: poisson (random gaps, as people send) or uniform (exactly 1/rate apart, from a random phase)")
	fs.StringVar(&o.natsURL, "nats-url", "nats://127.0.0.1:4222", "NATS URL of the stack, for S6 and S8 (loopback only)")
	fs.StringVar(&o.scenarios, "scenario", "all", "scenarios to run: all (S1..S6), custom, or a comma-separated list of S1..S9")
	fs.IntVar(&o.serverPID, "server-pid", 0, "pid of the server process, to report its CPU and memory from /proc")
	fs.BoolVar(&o.verbose, "v", false, "log debug details")
	fs.Float64Var(&o.connRate, "conn-rate", 0, "the gateway's per-connection frame rate (GATEWAY_RATE) when it is limited: faster publishers are spread over more connections; 0: limits are raised")
	fs.IntVar(&o.window, "window", 256, "unechoed messages a publisher may have in flight when -rate is 0")
	fs.IntVar(&o.dialers, "dialers", 64, "connections opened at once")
	fs.DurationVar(&o.drainMax, "drain", 10*time.Second, "longest wait for the last deliveries after publishing")
	fs.Float64Var(&o.scale, "scale", 1, "multiply every scenario duration by this (0.2 for a quick look)")
	fs.IntVar(&o.rooms, "rooms", 1, "custom: rooms")
	fs.IntVar(&o.subs, "subs", 10, "custom: listening members per room")
	fs.IntVar(&o.pubs, "pubs", 1, "custom: publishing members per room")
	fs.Float64Var(&o.rate, "rate", 100, "custom: messages per second of each publisher (0: as fast as -window allows)")
	fs.DurationVar(&o.duration, "duration", 2*time.Second, "custom: how long to publish")
	fs.IntVar(&o.idleConns, "idle-conns", 10_000, "S5: idle connections")
	fs.IntVar(&o.idleRooms, "idle-rooms", 100, "S5: rooms the idle connections are spread over")
	fs.IntVar(&o.s4.subs, "s4-subs", 200, "S4: listening members")
	fs.IntVar(&o.s4.pubs, "s4-pubs", 4, "S4: publishing connections sharing the rate")
	fs.Float64Var(&o.s4.start, "s4-start", 500, "S4: messages per second of the first step")
	fs.Float64Var(&o.s4.factor, "s4-factor", 1.5, "S4: rate multiplier between steps until one misses")
	fs.Float64Var(&o.s4.resolution, "s4-resolution", 0.05, "S4: after the first miss, bisect until the missed rate is within this fraction above the held one")
	fs.IntVar(&o.s4.steps, "s4-steps", 12, "S4: most steps before the bisection")
	fs.DurationVar(&o.s4.step, "s4-step", 4*time.Second, "S4: duration of a step")
	fs.DurationVar(&o.s4.maxP99, "s4-p99", 100*time.Millisecond, "S4: p99 above which a step is not held")
	fs.Float64Var(&o.s6Rate, "s6-rate", 10_000, "S6: messages per second published on NATS")
	fs.DurationVar(&o.s6Duration, "s6-duration", 3*time.Second, "S6: how long to publish")
	fs.IntVar(&o.s8.messages, "s8-messages", 1_000_000, "S8: messages stored in the room before measuring (times -scale)")
	fs.IntVar(&o.s8.joins, "s8-joins", 200, "S8: joins timed")
	fs.IntVar(&o.s8.pages, "s8-pages", 200, "S8: scroll-back pages timed")
	fs.IntVar(&o.s8.limit, "s8-limit", 50, "S8: messages per scroll-back page")
	fs.StringVar(&o.churnMembers, "churn-members", "100,500,1000", "S9: stable members of each room, one row per room")
	fs.Float64Var(&o.churn.rate, "churn-rate", 50, "S9: joins plus leaves per second, all churners together")
	fs.DurationVar(&o.churn.dwell, "churn-dwell", time.Second, "S9: how long each churner stays")
	fs.DurationVar(&o.churn.duration, "churn-duration", 10*time.Second, "S9: how long churners keep joining (times -scale)")
	fs.StringVar(&o.restartCmd, "restart-cmd", "", "S7: shell command that stops the server and starts it again on the same ports and data, waits until it is ready and prints its pid (bench/run.sh gives one); empty: S7 is skipped")
	fs.IntVar(&o.s7.clients, "s7-clients", 10_000, "S7: clients (times -scale)")
	fs.IntVar(&o.s7.rooms, "s7-rooms", 100, "S7: rooms the clients are spread over, one publisher in each")
	fs.Float64Var(&o.s7.rate, "s7-rate", 200, "S7: messages per second, all publishers")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.window < 1 || o.dialers < 1 || o.scale <= 0 || o.s4.pubs < 1 || o.s4.factor <= 1 || o.s4.resolution <= 0 || o.idleRooms < 1 {
		return o, errors.New("-window, -dialers, -s4-pubs and -idle-rooms must be at least 1, -scale and -s4-resolution above 0 and -s4-factor above 1")
	}
	if o.s8.messages < 1 || o.s8.joins < 1 || o.s8.pages < 1 || o.s8.limit < 1 {
		return o, errors.New("-s8-messages, -s8-joins, -s8-pages and -s8-limit must be at least 1")
	}
	for _, f := range strings.Split(o.churnMembers, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return o, fmt.Errorf("-churn-members %q: use a comma-separated list of positive numbers", o.churnMembers)
		}
		o.churn.sizes = append(o.churn.sizes, n)
	}
	if o.churn.rate <= 0 || o.churn.dwell <= 0 {
		return o, errors.New("-churn-rate and -churn-dwell must be above 0")
	}
	if o.s7.clients < 2 || o.s7.rooms < 1 || o.s7.rate <= 0 {
		return o, errors.New("-s7-clients must be at least 2, -s7-rooms at least 1 and -s7-rate above 0")
	}
	if o.stamp != "due" && o.stamp != "write" {
		return o, fmt.Errorf("-stamp %q: use due or write", o.stamp)
	}
	if o.arrivals != "poisson" && o.arrivals != "uniform" {
		return o, fmt.Errorf("-arrivals %q: use poisson or uniform", o.arrivals)
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "compare" {
		return runCompare(args[1:], stdout)
	}
	o, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	wsBase, err := websocketBase(o.url)
	if err != nil {
		return err
	}
	if err := requireLoopback(o.natsURL); err != nil {
		return err
	}
	p, err := peerNamed(o.peer, o.chatBatch)
	if err != nil {
		return err
	}
	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	list, err := scenarioList(o.scenarios)
	if err != nil {
		return err
	}
	b := &bench{
		wsBase:     wsBase,
		natsURL:    o.natsURL,
		serverPID:  o.serverPID,
		peer:       p,
		peerName:   o.peer,
		tag:        runTag(),
		log:        log,
		connRate:   o.connRate,
		window:     o.window,
		dialers:    o.dialers,
		drainMax:   o.drainMax,
		uniform:    o.arrivals == "uniform",
		stampWrite: o.stamp == "write",
	}
	if o.restartCmd != "" {
		b.restart = shellRestart(o.restartCmd, stderr)
	}
	fmt.Fprintf(stdout, "chatbench against %s (%s): chatbench on CPU(s) %s (GOMAXPROCS %d)", o.url, o.peer, cpusOf(0), runtime.GOMAXPROCS(0))
	if o.serverPID > 0 {
		fmt.Fprintf(stdout, ", server pid %d on CPU(s) %s", o.serverPID, cpusOf(o.serverPID))
	}
	fmt.Fprintln(stdout)

	scale := func(d time.Duration) time.Duration { return time.Duration(float64(d) * o.scale) }
	var results []*result
	for _, name := range list {
		if ctx.Err() != nil {
			break
		}
		var r *result
		var rows []*result // scenarios of several rows
		switch name {
		case "S1":
			r = b.runTraffic(ctx, "S1", traffic{rooms: 1, subs: 100, pubs: 1, rate: 1000, duration: scale(10 * time.Second)})
			r.Target = verdict(!r.failed() && r.Lat.quantile(0.99) < 5*time.Millisecond, "0 lost, p99<5ms")
		case "S2":
			r = b.runTraffic(ctx, "S2", traffic{rooms: 1, subs: 1000, pubs: 1, rate: 100, duration: scale(10 * time.Second)})
			r.Target = verdict(!r.failed() && r.Lat.quantile(0.99) < 30*time.Millisecond, "0 lost, p99<30ms")
		case "S3":
			r = b.runTraffic(ctx, "S3", traffic{rooms: 100, pubs: 10, rate: 1, duration: scale(10 * time.Second)})
		case "S4":
			c := o.s4
			c.step = scale(c.step)
			r = b.runCeiling(ctx, c)
		case "S5":
			r = b.runIdle(ctx, o.idleConns, o.idleRooms, 2*time.Second)
		case "S6":
			if o.peer != "chat" {
				r = skipped("S6", "history and NATS publishing are the chat's own")
				break
			}
			r = b.runHistory(ctx, o.s6Rate, scale(o.s6Duration), 30*time.Second)
		case "S8":
			if o.peer != "chat" {
				r = skipped("S8", "history and NATS publishing are the chat's own")
				break
			}
			lh := o.s8
			lh.messages = max(1, int(float64(lh.messages)*o.scale))
			rows = b.runLargeHistory(ctx, lh)
		case "S9":
			if o.peer != "chat" {
				r = skipped("S9", "presence is the chat's own (Centrifugo's is off here)")
				break
			}
			c := o.churn
			c.duration = scale(c.duration)
			c.settle = 15 * time.Second
			rows = b.runChurn(ctx, c)
		case "S7":
			s := o.s7
			s.clients = max(2, int(math.Round(float64(s.clients)*o.scale)))
			s.before, s.after, s.target, s.wait = 3*time.Second, 3*time.Second, 15*time.Second, time.Minute
			r = b.runStorm(ctx, s)
		case "custom":
			t := traffic{rooms: o.rooms, subs: o.subs, pubs: o.pubs, rate: o.rate, duration: o.duration}
			r = b.runTraffic(ctx, "custom", t)
		}
		if r != nil {
			rows = append(rows, r)
		}
		for _, r := range rows {
			log.Info("scenario done", "scenario", r.Name, "delivered", r.Delivered, "lost", r.Lost, "p99", r.Lat.quantile(0.99), "failed", r.failed())
		}
		results = append(results, rows...)
	}
	fmt.Fprintln(stdout)
	printTable(stdout, results)
	if o.jsonOut != "" {
		if err := writeRun(o.jsonOut, o.peer, results); err != nil {
			return err
		}
	}
	failed := 0
	for _, r := range results {
		if r.failed() {
			failed++
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("interrupted: %w", err)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d scenarios failed (lost, duplicated or refused messages, or connection errors)", failed, len(results))
	}
	return nil
}

func scenarioList(s string) ([]string, error) {
	if s == "all" {
		return []string{"S1", "S2", "S3", "S4", "S5", "S6"}, nil
	}
	var list []string
	for _, name := range strings.Split(s, ",") {
		name = strings.ToUpper(strings.TrimSpace(name))
		switch name {
		case "S1", "S2", "S3", "S4", "S5", "S6", "S8", "S9":
		case "S7": // not in all: it restarts the server
		case "CUSTOM":
			name = "custom"
		default:
			return nil, fmt.Errorf("unknown scenario %q: use all, custom or S1..S9", name)
		}
		list = append(list, name)
	}
	return list, nil
}

// websocketBase turns the gateway URL into the ws:// base of its sockets,
// refusing anything but this machine: the tool is a load generator.
func websocketBase(raw string) (string, error) {
	if err := requireLoopback(raw); err != nil {
		return "", err
	}
	u, _ := url.Parse(raw)
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("-url %q: scheme must be http or https", raw)
	}
	return strings.TrimSuffix(u.String(), "/"), nil
}

func requireLoopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("parse %q: %w", raw, err)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%q is not a loopback address: chatbench only loads servers on this machine", raw)
}

// runTag names this run's rooms, so a run never sees another's messages.
func runTag() string {
	var b [3]byte
	rand.Read(b[:])
	return "b" + hex.EncodeToString(b[:])
}
