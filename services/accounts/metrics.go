package accounts

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the accounts service's Prometheus series, served on the admin
// server's /metrics. Each instance has its own registry, so several run in
// one process (the all-in-one, tests).
type metrics struct {
	registry   *prometheus.Registry
	requests   *prometheus.CounterVec
	syncErrors prometheus.Counter
	repairs    prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chat_accounts_requests_total", Help: "auth.* requests answered, by subject and outcome (ok or the error code).",
		}, []string{"subject", "outcome"}),
		syncErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_accounts_kv_sync_errors_total", Help: "Bucket writes that failed; the periodic reconcile repairs them.",
		}),
		repairs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_accounts_kv_repairs_total", Help: "Bucket keys the reconcile found different from the database and rewrote.",
		}),
	}
	m.registry.MustRegister(m.requests, m.syncErrors, m.repairs,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}
