package test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"nicproxy/test/netlab"
)

// Page-load benchmark shape (issue 16): 60 resources on 12 names, with a
// modelled 20 ms round trip.
const (
	pageNames    = 12
	pagePerName  = 5
	pageRTT      = 20 * time.Millisecond
	pageRounds   = 15
	pageNamesFmt = "r%d-%d.example.test"
)

// gif1x1 is the smallest image a browser decodes, so every resource loads
// without an error.
var gif1x1 = []byte("GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")

// connStart is the context key of a connection's accept time.
type connStart struct{}

// pageServer serves /page?round=R, a page of pageNames*pagePerName
// images on round R's names, and the images, each answered one modelled
// round trip after its request, plus one more for the first request of a
// connection (its TCP handshake): the lab's links have no delay of their
// own (no netem), so the server models it.
func pageServer(port uint16) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/page", func(w http.ResponseWriter, r *http.Request) {
		round, _ := strconv.Atoi(r.URL.Query().Get("round"))
		var b strings.Builder
		b.WriteString("<!doctype html><html><head><title>loading</title><script>" +
			"addEventListener('load',()=>{const n=performance.getEntriesByType('navigation')[0];" +
			"document.title='load='+Math.round(n.loadEventStart)})</script></head><body>\n")
		for i := range pageNames {
			for j := range pagePerName {
				fmt.Fprintf(&b, "<img src=\"http://"+pageNamesFmt+":%d/img?j=%d\">\n", round, i, port, j)
			}
		}
		b.WriteString("</body></html>\n")
		modelRTT(r)
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte(b.String()))
	})
	mux.HandleFunc("/img", func(w http.ResponseWriter, r *http.Request) {
		modelRTT(r)
		w.Header().Set("Content-Type", "image/gif")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(gif1x1)
	})
	return mux
}

// modelRTT waits one round trip, two for a connection's first request.
func modelRTT(r *http.Request) {
	delay := pageRTT
	if start, ok := r.Context().Value(connStart{}).(*time.Time); ok && !start.IsZero() {
		delay += pageRTT
		*start = time.Time{}
	}
	time.Sleep(delay)
}

// pageCap is the managed policy that raises Chromium's cap of sockets per
// proxy server (32 by its policy list; directly it allows 6 per host, so
// 72 for the page's 12 names) to the most the policy allows: the page
// needs 60 connections at once.
const pageCap = `{"MaxConnectionsPerProxy": 99}`

// pageProbeCap is the least cap the policy allows: one load under it
// through nicproxy shows that a policy reaches its browser (fewer
// connections open at once than without it).
const pageProbeCap = `{"MaxConnectionsPerProxy": 7}`

// pageSide is one way of loading the page: a Chromium with or without a
// SOCKS5 proxy and with or without pageCap.
type pageSide struct {
	name   string // its metrics' prefix
	proxy  string // --proxy-server, "" to load directly
	policy string // Chromium's managed policy, "" for none
}

// connGauge counts, per load, how many of the page server's connections
// were open at once: each connection belongs to the load during which it
// was accepted (the previous browser has exited by then), so one closing
// late does not count against the next load.
type connGauge struct {
	mu   sync.Mutex
	load int              // the load under way
	of   map[net.Conn]int // each open connection's load
	open int              // connections of the load under way open now
	peak int              // the most of them open at once
}

func (g *connGauge) state(c net.Conn, s http.ConnState) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch s {
	case http.StateNew:
		if g.of == nil {
			g.of = map[net.Conn]int{}
		}
		g.of[c] = g.load
		g.open++
		g.peak = max(g.peak, g.open)
	case http.StateClosed, http.StateHijacked:
		if g.of[c] == g.load {
			g.open--
		}
		delete(g.of, c)
	}
}

// next starts counting a new load and returns the peak of the last.
func (g *connGauge) next() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	peak := g.peak
	g.load++
	g.open, g.peak = 0, 0
	return peak
}

// mihomoConfig runs mihomo as the lab's SOCKS5 proxy on 127.0.0.1:port, in
// direct mode, its upstream sockets bound to ens160, resolving names
// itself with the lab's DNS server, IPv4 only as suits the IPv6-less host;
// no process lookup, no geodata updates, no controller.
const mihomoConfig = `socks-port: %d
bind-address: 127.0.0.1
allow-lan: false
mode: direct
log-level: warning
ipv6: false
interface-name: ens160
find-process-mode: off
geo-auto-update: false
dns:
  enable: true
  ipv6: false
  enhanced-mode: normal
  default-nameserver: [%[2]s]
  nameserver: [%[2]s]
`

// peerMihomo names the environment variable holding the path of a mihomo
// binary (github.com/MetaCubeX/mihomo, built from source) for
// BenchmarkPageLoad to measure beside nicproxy; unset, it is left out.
const peerMihomo = "NICPROXY_PEER_MIHOMO"

// BenchmarkPageLoad loads a page of 60 resources on 12 names in a real
// Chromium, on the IPv6-less host behind a 20 ms resolver that answers
// AAAA without an SOA, with a modelled 20 ms round trip, interleaved
// (each round in a new order), each load on fresh names so no side has
// them cached:
//
//   - direct: the browser resolving and connecting itself (6 sockets per
//     host: 72 for 12 names);
//   - socks5: through nicproxy's SOCKS5 listener (names resolved by
//     nicproxy), Chromium as it ships;
//   - socks5-cap99: the same with the policy MaxConnectionsPerProxy 99,
//     seen by that browser alone (headlessPolicy): Chromium's policy list
//     says it allows 32 sockets per proxy server without it;
//   - mihomo, mihomo-cap99: the same two through mihomo's SOCKS5 instead,
//     when NICPROXY_PEER_MIHOMO names its binary (the issue's "mihomo
//     took 0.90x").
//
// It reports each side's median of the page's load event (X-load-ms),
// its ratio to direct's (X/direct; goal: socks5 at most 0.90x, as
// mihomo measured), the median of the most connections the page server
// had open at once (X-conns: a cap at work shows there), and the DNS
// queries for the page's names per load (X-queries/load; goal for
// socks5: 12, one A query per name). One load first under the least cap
// the policy allows (7) must have fewer connections open at once than
// every socks5 load, or it fails: that shows a policy reaches its
// browser, so the cap99 sides measure what they say. Fifteen rounds, not
// five: one load varies by a third or more (Chromium's own work on two
// shared cores), and in two runs of nine the order of the sides' medians
// flipped.
//
//	go test -run '^$' -bench PageLoad -benchtime 1x ./test/
func BenchmarkPageLoad(b *testing.B) {
	browser := chromium(b)
	lab := netlab.New(b)
	sides := []pageSide{
		{name: "direct"},
		{name: "socks5", proxy: "socks5://127.0.0.1:1080"},
		{name: "socks5-cap99", proxy: "socks5://127.0.0.1:1080", policy: pageCap},
	}
	mihomo := os.Getenv(peerMihomo)
	if mihomo != "" {
		sides = append(sides,
			pageSide{name: "mihomo", proxy: "socks5://127.0.0.1:7891"},
			pageSide{name: "mihomo-cap99", proxy: "socks5://127.0.0.1:7891", policy: pageCap})
	}
	zone := map[string][]netip.Addr{}
	probeRound := len(sides) * pageRounds
	for r := range probeRound + 1 {
		for i := range pageNames {
			zone[fmt.Sprintf(pageNamesFmt, r, i)] = []netip.Addr{netlab.Server}
		}
	}
	dns := lab.StartDNSZone(netlab.Zone{Records: zone, NoSOA: true, Delay: pageRTT})
	lab.UseDNS(dns.Addr())
	ln := lab.ListenUpstream(netlab.Server)
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	var conns connGauge
	srv := &http.Server{
		Handler: pageServer(port),
		ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
			start := time.Now()
			return context.WithValue(ctx, connStart{}, &start)
		},
		ConnState: conns.state,
	}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Close() })
	lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", "default: ens160\n")
	if mihomo != "" {
		dir := b.TempDir()
		config := filepath.Join(dir, "config.yaml")
		if err := os.WriteFile(config, fmt.Appendf(nil, mihomoConfig, 7891, dns.Addr()), 0o600); err != nil {
			b.Fatal(err)
		}
		lab.StartProxy(mihomo, "127.0.0.1:7891", "", "-d", dir, "-f", config)
	}

	loadRe := regexp.MustCompile(`<title>load=(\d+)</title>`)
	load := func(round int, side pageSide) (ms float64, peak, queries int) {
		b.Helper()
		args := []string{"--dump-dom", fmt.Sprintf("http://"+pageNamesFmt+":%d/page?round=%d", round, 0, port, round)}
		if side.proxy != "" {
			args = append([]string{"--proxy-server=" + side.proxy}, args...)
		}
		conns.next()
		dom := headlessPolicy(b, lab, browser, side.policy, args...)
		m := loadRe.FindStringSubmatch(dom)
		if m == nil {
			b.Fatalf("no load time in the page (%s):\n%.2000s", side.name, dom)
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		// The page's own names only: the browser may ask names of its own.
		for i := range pageNames {
			name := fmt.Sprintf(pageNamesFmt, round, i)
			queries += dns.Queries(name, dnsmessage.TypeA) + dns.Queries(name, dnsmessage.TypeAAAA)
		}
		return v, conns.next(), queries
	}
	median := func(v []float64) float64 {
		v = slices.Clone(v)
		slices.Sort(v)
		return v[len(v)/2]
	}
	_, probePeak, _ := load(probeRound, pageSide{name: "probe", proxy: "socks5://127.0.0.1:1080", policy: pageProbeCap})
	for b.Loop() {
		ms := make([][]float64, len(sides))
		peaks := make([][]float64, len(sides))
		queries := make([]int, len(sides))
		for r := range pageRounds {
			for k := range sides {
				s := (r + k) % len(sides) // each round starts with another side
				v, peak, q := load(r*len(sides)+s, sides[s])
				ms[s], peaks[s], queries[s] = append(ms[s], v), append(peaks[s], float64(peak)), queries[s]+q
			}
		}
		direct := median(ms[0])
		if probePeak >= int(slices.Min(peaks[1])) {
			b.Fatalf("under %s the page server had %d connections open at once, as many as without it (%v): "+
				"a policy does not reach the browser", pageProbeCap, probePeak, peaks[1])
		}
		b.Logf("probe under %s: at most %d connections open at once", pageProbeCap, probePeak)
		for s, side := range sides {
			b.Logf("%s: loads %v ms, at most %v connections open at once", side.name, ms[s], peaks[s])
			b.ReportMetric(median(ms[s]), side.name+"-load-ms")
			if s > 0 {
				b.ReportMetric(median(ms[s])/direct, side.name+"/direct")
			}
			b.ReportMetric(median(peaks[s]), side.name+"-conns")
			b.ReportMetric(float64(queries[s])/pageRounds, side.name+"-queries/load")
		}
	}
}
