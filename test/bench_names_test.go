package test

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"nicproxy/test/netlab"
)

// runLoadgen runs test/loadgen in the lab's host namespace and returns its
// report; a connection that failed fails the benchmark.
func runLoadgen(b testing.TB, lab *netlab.Lab, loadgen string, args ...string) loadReport {
	b.Helper()
	out, err := lab.Command(loadgen, args...).Output()
	if err != nil {
		b.Fatalf("loadgen %v: %v\n%s", args, err, out)
	}
	var r loadReport
	if err := json.Unmarshal(out, &r); err != nil {
		b.Fatalf("loadgen %v: %v: %s", args, err, out)
	}
	if r.Errors != 0 {
		b.Errorf("loadgen %v: %d of %d connections failed, first: %s", args, r.Errors, r.Conns, r.FirstError)
	}
	return r
}

// BenchmarkNamesRealHost measures, beside BenchmarkSpeed, what issue 16
// asks of names on a host like a real LAN host: IPv6 disabled, behind a
// resolver (20 ms round trip) that answers AAAA with NOERROR, no records
// and no SOA. Each figure has its baseline from the same run:
//
//   - p50 of connect + first echoed byte to a cached name against its IP
//     literal, through SOCKS5 and HTTP CONNECT (goal: within 2 ms);
//   - DNS queries for 200 connections to one name (goal: 1, the A query);
//   - with IPv6 on and a resolver that never answers AAAA: the wait of a
//     connection to an uncached name beyond its IP literal and the DNS
//     round trip, against the Resolution Delay (goal: at most 50 ms).
//
// Run it with
//
//	go test -run '^$' -bench NamesRealHost -benchtime 1x ./test/
func BenchmarkNamesRealHost(b *testing.B) {
	dir := b.TempDir()
	loadgen := buildTool(b, dir, "nicproxy/test/loadgen")
	run := func(b *testing.B, lab *speedLab, args ...string) loadReport {
		b.Helper()
		return runLoadgen(b, lab.Lab, loadgen, args...)
	}
	modes := []struct{ name, mode, host string }{
		{"socks5", "socks5", "socks.example.test"},
		{"http-connect", "connect", "connect.example.test"},
	}

	b.Run("ipv6-less-no-soa", func(b *testing.B) {
		lab := newNamesLab(b, netlab.Zone{NoSOA: true}, false, "attempts:1 timeout:1")
		proc := lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", "default: ens160\n")
		port := lab.echo.TCP.Port()
		for b.Loop() {
			for _, m := range modes {
				name := fmt.Sprintf("%s:%d", m.host, port)
				before := lab.dns.Total()
				run(b, lab, "-mode", m.mode, "-target", name, "-n", "200", "-c", "8", "-d", "60s")
				b.ReportMetric(float64(lab.dns.Total()-before), m.name+"-queries/200conns")
				// Median of five interleaved rounds of 300 each, literal
				// and cached name, so one busy moment decides nothing.
				var ip, named []float64
				for range 5 {
					ip = append(ip, run(b, lab, "-mode", m.mode, "-target", lab.echo.TCP.String(), "-n", "300", "-d", "60s").P50)
					named = append(named, run(b, lab, "-mode", m.mode, "-target", name, "-n", "300", "-d", "60s").P50)
				}
				slices.Sort(ip)
				slices.Sort(named)
				b.ReportMetric(ip[2], m.name+"-ip-p50-us")
				b.ReportMetric(named[2], m.name+"-name-p50-us")
				b.ReportMetric((named[2]-ip[2])/1000, m.name+"-name-minus-ip-ms")
			}
		}
		_ = proc
	})

	b.Run("aaaa-never-answered", func(b *testing.B) {
		zone := map[string][]netip.Addr{}
		for i := range 64 {
			zone[fmt.Sprintf("n%d.example.test", i)] = []netip.Addr{netlab.Server}
		}
		lab := newNamesLab(b, netlab.Zone{Records: zone, SilentAAAA: true}, true, "attempts:1 timeout:30")
		lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", "default: ens160\ntimeouts: {dial: 120s}\n")
		next := 0
		for b.Loop() {
			var waits []float64
			for range 15 {
				if next == len(zone) {
					b.Fatal("out of fresh names")
				}
				name := fmt.Sprintf("n%d.example.test:%d", next, lab.echo.TCP.Port())
				next++
				ip := run(b, lab, "-mode", "socks5", "-target", lab.echo.TCP.String(), "-n", "1").P50
				fresh := run(b, lab, "-mode", "socks5", "-target", name, "-n", "1").P50
				waits = append(waits, (fresh-ip)/1000-20) // less the modelled 20 ms DNS round trip
			}
			slices.Sort(waits)
			b.ReportMetric(waits[len(waits)/2], "wait-beyond-A-ms")
			b.ReportMetric(waits[len(waits)/2]/50, "wait/resolution-delay")
		}
	})
}
