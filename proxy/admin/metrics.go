package admin

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the server's Prometheus series, on a registry of its own (no
// global state), served at admin.addr/metrics.
type metrics struct {
	registry     *prometheus.Registry
	connections  *prometheus.CounterVec
	bytes        *prometheus.CounterVec
	dials        *prometheus.HistogramVec
	dnsQueries   *prometheus.CounterVec
	dnsHits      *prometheus.CounterVec
	authFailures prometheus.Counter
	// clientUnknown counts lookups of who a client is that found nothing.
	clientUnknown *prometheus.CounterVec
	reloads       *reloadMetrics
}

func newMetrics(src Source) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nicproxy_connections_total",
			Help: "Client connections (tunnels and forwarded requests) by NIC, rule, protocol and result, counted when they end; a failed one under the NIC it failed on.",
		}, []string{"nic", "rule", "protocol", "result"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nicproxy_bytes_total",
			Help: "Bytes that crossed each NIC by direction (up: toward the destination), headers included, counted when a connection ends.",
		}, []string{"nic", "direction"}),
		dials: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "nicproxy_dial_duration_seconds",
			Help:    "Time to route, resolve and connect upstream, by NIC and result.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"nic", "result"}),
		dnsQueries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nicproxy_dns_queries_total",
			Help: "DNS questions sent (one name, one address family each), by the NIC they left through and result (ok, nxdomain, nodata, error).",
		}, []string{"nic", "result"}),
		dnsHits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nicproxy_dns_cache_hits_total",
			Help: "Name lookups answered from a NIC's DNS cache with no query sent.",
		}, []string{"nic"}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nicproxy_auth_failures_total",
			Help: "Failed proxy authentications (SOCKS5 and HTTP), wrong names and passwords alike.",
		}),
		clientUnknown: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nicproxy_client_lookup_failures_total",
			Help: "Clients whose socket, cgroup or program could not be told (unit, cgroup, uid and program rules matched none), by reason.",
		}, []string{"reason"}),
	}
	m.reloads = newReloadMetrics(m.registry)
	m.registry.MustRegister(
		m.connections, m.bytes, m.dials, m.dnsQueries, m.dnsHits, m.authFailures, m.clientUnknown,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "nicproxy_active_connections",
			Help: "Client connections open now.",
		}, func() float64 { return float64(src.Active()) }),
		&nicCollector{src: src, desc: prometheus.NewDesc("nicproxy_nic_up",
			"1 when the NIC is present, up and has carrier; 0 otherwise.", []string{"nic"}, nil)},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// finished records a finished connection.
func (m *metrics) finished(f Flow) {
	m.connections.WithLabelValues(f.NIC, f.Rule, f.Protocol, f.Result).Inc()
	if f.NIC != "" {
		m.bytes.WithLabelValues(f.NIC, "up").Add(float64(f.Up))
		m.bytes.WithLabelValues(f.NIC, "down").Add(float64(f.Down))
	}
}

// nicCollector reports each configured NIC's state when scraped, so the
// gauge is as fresh as the scrape without a poller of its own.
type nicCollector struct {
	src  Source
	desc *prometheus.Desc
}

func (c *nicCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *nicCollector) Collect(ch chan<- prometheus.Metric) {
	for _, nic := range c.src.Config().NICs() {
		up := 0.0
		if c.src.NIC(nic).State == StateUp {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, up, nic)
	}
}
