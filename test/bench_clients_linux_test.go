package test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	"nicproxy/test/netlab"
)

// BenchmarkClientRules measures what rules by unit and by program cost:
// connections per second at 64 concurrent SOCKS5 clients through three
// nicproxy instances in one lab, the same configuration without client
// keys, with a unit rule, and with a program rule, each a ratio to the
// first (goals: at least 0.95x with unit, 0.90x with program). The
// clients run in a cgroup of their own that neither rule names, so every
// connection is looked up and goes by the default, as most of a host's
// connections would. Each ratio is the median of nine rounds;
// plain-again/plain, the plain configuration against itself, shows how far
// the machine's load alone moves a ratio in this run. Beside the rates,
// the CPU time each proxy spent per connection (from its /proc stat), as
// a ratio to the plain one's: what a rule costs the proxy itself, which
// the machine's load moves far less than a rate. Run it with
//
//	go test -run '^$' -bench ClientRules -benchtime 1x ./test/
func BenchmarkClientRules(b *testing.B) {
	lab := newSpeedLab(b, 600)
	for _, kv := range []string{"net.ipv4.tcp_tw_reuse=1", "net.ipv4.ip_local_port_range=1024 65535"} {
		if out, err := exec.Command("ip", "netns", "exec", lab.Host, "sysctl", "-qw", kv).CombinedOutput(); err != nil {
			b.Fatalf("sysctl %s: %v %s", kv, err, out)
		}
	}
	tree := mountCgroup2(b)
	clients := tree.make(b, "/system.slice/t-bench.service")
	loadgen := buildTool(b, b.TempDir(), "nicproxy/test/loadgen")
	echo := lab.echo.TCP.String()
	const lan = "  - {name: lan, dst: [203.0.113.0/24], via: ens33}\n"
	configs := []struct{ name, addr, rule string }{
		{"plain", "127.0.0.1:1080", ""},
		{"unit", "127.0.0.1:1081", "  - {name: apt, unit: [apt-daily.service], via: ens33}\n"},
		{"program", "127.0.0.1:1082", "  - {name: browser, program: [firefox], via: ens33}\n"},
		// The plain configuration again: its ratio is the noise floor
		// of this run, to read the two others against.
		{"plain-again", "127.0.0.1:1083", ""},
	}
	procs := map[string]*netlab.Proc{}
	for _, c := range configs {
		procs[c.name] = lab.StartProxy(nicproxyBinary, c.addr, "listen: [{addr: "+c.addr+"}]\nrules:\n"+c.rule+lan+"default: ens160\n")
	}
	run := func(b *testing.B, proxy string) loadReport {
		b.Helper()
		out, err := lab.Command("sh", inCgroup(clients, loadgen, "-mode", "socks5", "-proxy", proxy, "-target", echo, "-c", "64", "-d", "1s")...).Output()
		if err != nil {
			b.Fatalf("loadgen via %s: %v\n%s", proxy, err, out)
		}
		var r loadReport
		if err := json.Unmarshal(out, &r); err != nil {
			b.Fatalf("loadgen: %v: %s", err, out)
		}
		if r.Errors != 0 {
			b.Errorf("loadgen via %s: %d of %d connections failed, first: %s", proxy, r.Errors, r.Conns, r.FirstError)
		}
		return r
	}
	b.Run("rate-64", func(b *testing.B) {
		for b.Loop() {
			// Interleaved one-second rounds, in a rotating order, so a
			// change in the machine's load falls on every configuration
			// alike; each ratio is the median of the rounds' ratios, so
			// one busy moment does not decide it.
			const rounds = 9
			rate := map[string]float64{}
			ratios := map[string][]float64{}
			cpu := map[string]time.Duration{}
			conns := map[string]int64{}
			for i := range rounds {
				round := map[string]float64{}
				for j := range configs {
					c := configs[(i+j)%len(configs)]
					before := cpuTime(b, procs[c.name].Pid())
					r := run(b, c.addr)
					cpu[c.name] += cpuTime(b, procs[c.name].Pid()) - before
					conns[c.name] += r.Conns
					round[c.name] = r.Rate
					rate[c.name] += round[c.name] / rounds
				}
				for _, c := range configs[1:] {
					ratios[c.name] = append(ratios[c.name], round[c.name]/round["plain"])
				}
			}
			perConn := func(name string) float64 { return float64(cpu[name]) / float64(conns[name]) }
			for _, c := range configs {
				b.ReportMetric(rate[c.name], c.name+"-conn/s")
				b.ReportMetric(perConn(c.name)/1e3, c.name+"-cpu-µs/conn")
			}
			for _, c := range configs[1:] {
				slices.Sort(ratios[c.name])
				b.ReportMetric(ratios[c.name][rounds/2], c.name+"/plain")
				b.ReportMetric(perConn(c.name)/perConn("plain"), c.name+"-cpu/plain")
			}
		}
	})
}

// cpuTime is the CPU time process pid and its threads, live and gone,
// have spent, user and system, from /proc/PID/stat in clock ticks (the
// kernel's USER_HZ, 100 on Linux).
func cpuTime(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		tb.Fatal(err)
	}
	// The command name, in parentheses, may hold spaces: fields are
	// counted after its closing one. utime and stime are fields 14, 15.
	fields := bytes.Fields(stat[bytes.LastIndexByte(stat, ')')+1:])
	if len(fields) < 13 {
		tb.Fatalf("/proc/%d/stat: %q", pid, stat)
	}
	var ticks int64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseInt(string(f), 10, 64)
		if err != nil {
			tb.Fatalf("/proc/%d/stat: %q: %v", pid, stat, err)
		}
		ticks += n
	}
	const userHZ = 100
	return time.Duration(ticks) * time.Second / userHZ
}
