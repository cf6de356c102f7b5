package smsworker

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the worker's Prometheus series, served on the admin server's
// /metrics. Each worker has its own registry, so several run in one process
// (the all-in-one, tests).
type metrics struct {
	registry *prometheus.Registry
	sent     prometheus.Counter
	failures prometheus.Counter
	retried  prometheus.Counter
	skipped  prometheus.Counter
	dead     *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_sms_sent_total", Help: "SMS handed to the provider.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_sms_send_failures_total", Help: "Sends the provider refused or that timed out.",
		}),
		retried: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_sms_retried_total", Help: "Failed tasks put back for a later delivery (nak with backoff).",
		}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_sms_already_sent_total", Help: "Redelivered tasks found in the sent bucket and not sent again.",
		}),
		dead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chat_sms_dead_lettered_total", Help: "Tasks moved to the SMS_DEAD stream, by cause (malformed, failed, abandoned).",
		}, []string{"cause"}),
	}
	for _, cause := range []string{causeMalformed, causeFailed, causeAbandoned} {
		m.dead.WithLabelValues(cause) // every cause shows, at 0 until it happens
	}
	m.registry.MustRegister(m.sent, m.failures, m.retried, m.skipped, m.dead,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}
