package history

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the history service's Prometheus series, served on the admin
// server's /metrics. Each instance has its own registry, so several run in
// one process (the all-in-one, tests).
type metrics struct {
	registry    *prometheus.Registry
	stored      prometheus.Counter
	duplicates  prometheus.Counter
	bad         prometheus.Counter
	storeErrors prometheus.Counter
	batchSize   prometheus.Histogram
	lag         prometheus.Gauge

	consumerFailures prometheus.Counter
	epoch            prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		stored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_history_messages_stored_total", Help: "Rows inserted into messages.",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_history_messages_duplicate_total", Help: "Redelivered messages that were stored already (no new row).",
		}),
		bad: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_history_bad_messages_total", Help: "Messages refused for a bad payload and terminated.",
		}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_history_store_errors_total", Help: "Failed attempts at storing a batch (each is retried).",
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "chat_history_batch_size", Help: "Messages per fetched batch (one transaction each).",
			Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000},
		}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "chat_history_lag_messages", Help: "Messages of CHAT not yet delivered to history, as of the last batch.",
		}),
		consumerFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chat_history_consumer_failures_total",
			Help: "Fetches from the chat consumer that failed (consumer or stream missing, stream created again, NATS down); each is followed by setting the consumer up again.",
		}),
		epoch: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "chat_history_stream_epoch", Help: "Epoch of the CHAT stream being stored: its creation time in microseconds since 1970.",
		}),
	}
	m.registry.MustRegister(m.stored, m.duplicates, m.bad, m.storeErrors, m.batchSize, m.lag, m.consumerFailures, m.epoch,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}
