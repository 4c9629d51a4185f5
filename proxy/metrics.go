package proxy

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"nicproxy/bind"
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
	reloads      *reloadMetrics
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nicproxy_connections_total",
			Help: "Client connections (tunnels and forwarded requests) by NIC, rule, protocol and result, counted when they end.",
		}, []string{"nic", "rule", "protocol", "result"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nicproxy_bytes_total",
			Help: "Bytes relayed by NIC and direction (up: client to destination), counted when a connection ends.",
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
	}
	m.reloads = newReloadMetrics(m.registry)
	m.registry.MustRegister(
		m.connections, m.bytes, m.dials, m.dnsQueries, m.dnsHits, m.authFailures,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "nicproxy_active_connections",
			Help: "Client connections open now.",
		}, func() float64 { return float64(s.active.Load()) }),
		&nicCollector{s: s, desc: prometheus.NewDesc("nicproxy_nic_up",
			"1 when the NIC is present, up and has carrier; 0 otherwise.", []string{"nic"}, nil)},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// observeDial records one upstream dial.
func (m *metrics) observeDial(nic string, err error, took time.Duration) {
	if nic == "" {
		var dialErr *bind.DialError
		if errors.As(err, &dialErr) {
			nic = dialErr.NIC
		}
	}
	m.dials.WithLabelValues(nic, resultOf(err)).Observe(took.Seconds())
}

// Query counts one DNS question sent through nic (upstream.DNSObserver).
func (m *metrics) Query(nic, result string) { m.dnsQueries.WithLabelValues(nic, result).Inc() }

// CacheHit counts one lookup nic's cache answered (upstream.DNSObserver).
func (m *metrics) CacheHit(nic string) { m.dnsHits.WithLabelValues(nic).Inc() }

// observeEnd records a finished connection.
func (m *metrics) observeEnd(ss *session, result string) {
	m.connections.WithLabelValues(ss.nic, ss.rule, ss.protocol, result).Inc()
	if ss.nic != "" {
		m.bytes.WithLabelValues(ss.nic, "up").Add(float64(ss.up))
		m.bytes.WithLabelValues(ss.nic, "down").Add(float64(ss.down))
	}
}

// nicCollector reports each configured NIC's state when scraped, so the
// gauge is as fresh as the scrape without a poller of its own.
type nicCollector struct {
	s    *Server
	desc *prometheus.Desc
}

func (c *nicCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *nicCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.state.Load()
	for _, nic := range st.cfg.NICs() {
		up := 0.0
		if st.dialer.Available(nic) {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, up, nic)
	}
}
