package admin

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// reloadMetrics count configuration reloads under the names Prometheus
// gives its own (prometheus_config_*), so alerts written for one fit the
// other: a failure counter that rises, or a last success that grows old.
type reloadMetrics struct {
	total       *prometheus.CounterVec
	lastSuccess prometheus.Gauge
}

func newReloadMetrics(reg prometheus.Registerer) *reloadMetrics {
	m := &reloadMetrics{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nicproxy_config_reloads_total",
			Help: "Configuration reloads (SIGHUP) by result: success, or failure (the previous configuration kept serving).",
		}, []string{"result"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nicproxy_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last configuration loaded successfully, at start-up or by a reload.",
		}),
	}
	// Both results exist from the start, so rate() and alerts see a zero,
	// not a missing series.
	m.total.WithLabelValues("success")
	m.total.WithLabelValues("failure")
	m.lastSuccess.SetToCurrentTime()
	reg.MustRegister(m.total, m.lastSuccess)
	return m
}

func (m *reloadMetrics) observe(ok bool, now time.Time) {
	if !ok {
		m.total.WithLabelValues("failure").Inc()
		return
	}
	m.total.WithLabelValues("success").Inc()
	m.lastSuccess.Set(float64(now.UnixNano()) / 1e9)
}
