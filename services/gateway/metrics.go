package gateway

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the gateway's Prometheus series. Each gateway has its own
// registry, so several can run in one process (the all-in-one, tests).
type metrics struct {
	registry        *prometheus.Registry
	messagesIn      prometheus.Counter
	messagesOut     prometheus.Counter
	deliveries      prometheus.Counter
	slowClients     prometheus.Counter
	gapFills        prometheus.Counter
	badFeedMessages prometheus.Counter
	badPresence     prometheus.Counter
	forgedFeed      prometheus.Counter
	disconnects     *prometheus.CounterVec
	refused         *prometheus.CounterVec
	unconfirmed     prometheus.Counter
	errors          *prometheus.CounterVec
	commands        *prometheus.CounterVec
}

func newMetrics(h *hub) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		messagesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_gateway_messages_in_total", Help: "Messages from browsers stored in the CHAT stream.",
		}),
		messagesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_gateway_messages_out_total", Help: "Room messages delivered (once per message per room on this gateway).",
		}),
		deliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_gateway_deliveries_total", Help: "Message frames queued to clients.",
		}),
		slowClients: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_gateway_slow_clients_total", Help: "Clients disconnected because their send queue was full.",
		}),
		gapFills: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_gateway_gap_fills_total", Help: "Gaps in a room feed refilled from the stream.",
		}),
		badFeedMessages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_gateway_bad_messages_total", Help: "Stored messages skipped because their payload is invalid.",
		}),
		badPresence: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_gateway_bad_presence_total", Help: "Presence events from NATS dropped because they are invalid.",
		}),
		forgedFeed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_gateway_forged_feed_total", Help: "Feed messages dropped because the stream does not hold them (forged sequence headers).",
		}),
		disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chat_gateway_disconnects_total", Help: "WebSocket connections ended, by reason (left, slow, abusive, too_big, protocol_error, write_failed, unavailable, no_pong, shutdown, session_ended, name_registered).",
		}, []string{"reason"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chat_gateway_upgrades_refused_total", Help: "WebSocket upgrades refused before they were accepted, by limit (per_address, rooms, unavailable, auth).",
		}, []string{"limit"}),
		unconfirmed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_gateway_messages_unconfirmed_total", Help: "Messages whose storing could not be confirmed after retries (the sender was told unconfirmed, not failed).",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chat_gateway_error_frames_total", Help: "Error frames sent to clients, by code.",
		}, []string{"code"}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chat_gateway_commands_total", Help: "Commands sent to the bot, by outcome.",
		}, []string{"outcome"}),
	}
	m.registry.MustRegister(
		m.messagesIn, m.messagesOut, m.deliveries, m.slowClients, m.gapFills, m.badFeedMessages, m.badPresence, m.forgedFeed, m.disconnects, m.refused, m.unconfirmed, m.errors, m.commands,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "chat_gateway_rooms", Help: "Rooms with clients on this gateway.",
		}, func() float64 { r, _ := h.stats(); return float64(r) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "chat_gateway_connections", Help: "Open WebSocket connections.",
		}, func() float64 { _, c := h.stats(); return float64(c) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}
