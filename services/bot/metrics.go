package bot

import (
	"errors"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the bot's Prometheus series, served on the admin server's
// /metrics. Each bot has its own registry, so several run in one process
// (the all-in-one, tests).
type metrics struct {
	registry *prometheus.Registry
	commands *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chat_bot_commands_total",
			Help: "Commands answered, by command (unknown for any name the bot does not know) and outcome (ok, refused, failed).",
		}, []string{"command", "outcome"}),
	}
	m.registry.MustRegister(m.commands,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}

// observe counts one answered command. Only known names become labels, so
// what users type cannot grow the series without bound.
func (m *metrics) observe(known bool, name string, err error) {
	if m == nil {
		return
	}
	if !known {
		name = "unknown"
	}
	var r *refusal
	outcome := "ok"
	switch {
	case errors.As(err, &r):
		outcome = "refused"
	case err != nil:
		outcome = "failed"
	}
	m.commands.WithLabelValues(name, outcome).Inc()
}
