package test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
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
	pageRounds   = 5
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

// BenchmarkPageLoad loads a page of 60 resources on 12 names in a real
// Chromium, on the IPv6-less host behind a 20 ms resolver that answers
// AAAA without an SOA, with a modelled 20 ms round trip: directly (the
// browser resolving and connecting itself) and through nicproxy's SOCKS5
// listener (names resolved by nicproxy), interleaved, each round on fresh
// names so neither side has them cached. It reports each median of the
// page's load event, their ratio (goal: SOCKS5 at most 0.90x the direct
// browser's, as mihomo measured) and the DNS queries for the page's names
// per load through SOCKS5 (goal: 12, one A query per name).
//
//	go test -run '^$' -bench PageLoad -benchtime 1x ./test/
func BenchmarkPageLoad(b *testing.B) {
	browser := chromium(b)
	lab := netlab.New(b)
	zone := map[string][]netip.Addr{}
	for r := range 2 * pageRounds {
		for i := range pageNames {
			zone[fmt.Sprintf(pageNamesFmt, r, i)] = []netip.Addr{netlab.Server}
		}
	}
	dns := lab.StartDNSZone(netlab.Zone{Records: zone, NoSOA: true, Delay: pageRTT})
	lab.UseDNS(dns.Addr())
	ln := lab.ListenUpstream(netlab.Server)
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	srv := &http.Server{
		Handler: pageServer(port),
		ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
			start := time.Now()
			return context.WithValue(ctx, connStart{}, &start)
		},
	}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Close() })
	lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", "default: ens160\n")

	loadRe := regexp.MustCompile(`<title>load=(\d+)</title>`)
	load := func(round int, socks bool) (ms float64, queries int) {
		b.Helper()
		args := []string{"--dump-dom", fmt.Sprintf("http://"+pageNamesFmt+":%d/page?round=%d", round, 0, port, round)}
		if socks {
			args = append([]string{"--proxy-server=socks5://127.0.0.1:1080"}, args...)
		}
		dom := headless(b, lab, browser, args...)
		m := loadRe.FindStringSubmatch(dom)
		if m == nil {
			b.Fatalf("no load time in the page (socks %v):\n%.2000s", socks, dom)
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		// The page's own names only: the browser may ask names of its own.
		for i := range pageNames {
			name := fmt.Sprintf(pageNamesFmt, round, i)
			queries += dns.Queries(name, dnsmessage.TypeA) + dns.Queries(name, dnsmessage.TypeAAAA)
		}
		return v, queries
	}
	for b.Loop() {
		var direct, socks []float64
		var queries int
		for r := range pageRounds {
			d, _ := load(2*r, false)
			s, q := load(2*r+1, true)
			direct, socks, queries = append(direct, d), append(socks, s), queries+q
		}
		slices.Sort(direct)
		slices.Sort(socks)
		b.ReportMetric(direct[pageRounds/2], "direct-load-ms")
		b.ReportMetric(socks[pageRounds/2], "socks5-load-ms")
		b.ReportMetric(socks[pageRounds/2]/direct[pageRounds/2], "socks5/direct")
		b.ReportMetric(float64(queries)/pageRounds, "socks5-queries/load")
	}
}
