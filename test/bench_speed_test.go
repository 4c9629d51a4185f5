package test

import (
	"bufio"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// loadReport is what test/loadgen prints.
type loadReport struct {
	Conns      int64   `json:"conns"`
	Errors     int64   `json:"errors"`
	FirstError string  `json:"first_error"`
	Rate       float64 `json:"rate_per_sec"`
	P50        float64 `json:"p50_us"`
}

// buildTool builds one of the test's helper commands into dir.
func buildTool(tb testing.TB, dir, pkg string) string {
	tb.Helper()
	out := filepath.Join(dir, filepath.Base(pkg))
	if msg, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
		tb.Fatalf("build %s: %v\n%s", pkg, err, msg)
	}
	return out
}

// BenchmarkSpeed measures, in one run and one lab (a DNS server with a
// 20 ms round trip), what the speed issue asks of nicproxy, each figure
// beside its baseline from the same run:
//
//   - connections per second at 64 concurrent clients, direct (pinned to
//     ens160), through a bare splice relay (test/barerelay), and through
//     nicproxy by SOCKS5 and HTTP CONNECT (goal: at least 0.85x the bare
//     relay, no errors);
//   - p50 of connect + first echoed byte, one client at a time, against the
//     direct client (goal: at most 3.0x), and to a cached name against its
//     IP literal (goal: within 2 ms);
//   - DNS queries for 200 connections to one name (goal: one per family);
//   - the time to connect to a name whose first address is black-holed
//     (goal: under 1 s).
//
// The access log is on, as users run it. Run it with
//
//	go test -run '^$' -bench Speed -benchtime 1x ./test/
func BenchmarkSpeed(b *testing.B) {
	lab := newSpeedLab(b, 600)
	// Tens of thousands of short connections from one source address to
	// one server: without reusing TIME_WAIT ports the host runs out of
	// ephemeral ports partway and connect(2) crawls, whoever dials.
	for _, kv := range []string{"net.ipv4.tcp_tw_reuse=1", "net.ipv4.ip_local_port_range=1024 65535"} {
		if out, err := exec.Command("ip", "netns", "exec", lab.Host, "sysctl", "-qw", kv).CombinedOutput(); err != nil {
			b.Fatalf("sysctl %s: %v %s", kv, err, out)
		}
	}
	dir := b.TempDir()
	loadgen := buildTool(b, dir, "nicproxy/test/loadgen")
	barerelay := buildTool(b, dir, "nicproxy/test/barerelay")
	echo := lab.echo.TCP.String()
	proc := lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", "default: ens160\n")

	relay := lab.Command(barerelay, "-l", "127.0.0.1:2080", "-t", echo, "-i", "ens160")
	stdout, err := relay.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := relay.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = relay.Process.Kill(); _ = relay.Wait() })
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || !strings.HasPrefix(line, "listening") {
		b.Fatalf("barerelay: %q %v", line, err)
	}

	run := func(b *testing.B, args ...string) loadReport {
		b.Helper()
		return runLoadgen(b, lab.Lab, loadgen, args...)
	}
	modes := []struct{ name, mode, proxy string }{
		{"direct", "direct", ""},
		{"bare-relay", "relay", "127.0.0.1:2080"},
		{"socks5", "socks5", "127.0.0.1:1080"},
		{"http-connect", "connect", "127.0.0.1:1080"},
	}

	b.Run("rate-64", func(b *testing.B) {
		for b.Loop() {
			// Rounds of one second per mode, interleaved, so that a change
			// in the machine's load falls on every mode alike.
			conns := map[string]float64{}
			for range 4 {
				for _, m := range modes {
					r := run(b, "-mode", m.mode, "-proxy", m.proxy, "-target", echo, "-c", "64", "-d", "1s")
					conns[m.name] += r.Rate
				}
			}
			for _, m := range modes {
				b.ReportMetric(conns[m.name]/4, m.name+"-conn/s")
			}
			b.ReportMetric(conns["bare-relay"]/conns["direct"], "bare/direct")
			b.ReportMetric(conns["socks5"]/conns["bare-relay"], "socks5/bare")
			b.ReportMetric(conns["http-connect"]/conns["bare-relay"], "connect/bare")
		}
	})

	b.Run("latency-p50", func(b *testing.B) {
		for b.Loop() {
			// Rounds of 300 connections per mode, interleaved; each
			// mode's figure is the median of its rounds' p50s, so one
			// round that met a busy moment does not decide it.
			const rounds = 5
			p50s := map[string][]float64{}
			for range rounds {
				for _, m := range modes {
					r := run(b, "-mode", m.mode, "-proxy", m.proxy, "-target", echo, "-n", "300", "-d", "60s")
					p50s[m.name] = append(p50s[m.name], r.P50)
				}
			}
			p50 := map[string]float64{}
			for _, m := range modes {
				slices.Sort(p50s[m.name])
				p50[m.name] = p50s[m.name][rounds/2]
				b.ReportMetric(p50[m.name], m.name+"-p50-us")
			}
			b.ReportMetric(p50["socks5"]/p50["direct"], "socks5/direct")
			b.ReportMetric(p50["http-connect"]/p50["direct"], "connect/direct")
			// A name against its IP literal, once cached.
			name := fmt.Sprintf("www.example.test:%d", lab.echo.TCP.Port())
			for _, m := range modes[2:] {
				run(b, "-mode", m.mode, "-target", name, "-n", "1") // fill the cache
				r := run(b, "-mode", m.mode, "-target", name, "-n", "500", "-d", "60s")
				b.ReportMetric((r.P50-p50[m.name])/1000, m.name+"-name-minus-ip-ms")
			}
		}
	})

	b.Run("dns-200", func(b *testing.B) {
		for b.Loop() {
			name := "many.example.test"
			before := lab.dns.Total()
			run(b, "-mode", "socks5", "-target", fmt.Sprintf("%s:%d", name, lab.echo.TCP.Port()), "-n", "200", "-c", "8", "-d", "60s")
			b.ReportMetric(float64(lab.dns.Total()-before), "queries/200conns")
		}
	})

	b.Run("black-hole-first", func(b *testing.B) {
		for b.Loop() {
			start := time.Now()
			run(b, "-mode", "socks5", "-target", fmt.Sprintf("hole.example.test:%d", lab.echo.TCP.Port()), "-n", "1")
			b.ReportMetric(time.Since(start).Seconds(), "s-to-connect")
		}
	})
	if strings.Contains(proc.Output(), "panic") {
		b.Errorf("nicproxy panicked:\n%s", proc.Output())
	}
}
