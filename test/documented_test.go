package test

import (
	"bufio"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"nicproxy/test/netlab"
)

// The README's behaviours that users rely on, each end to end: via:
// system, least-connections, domain rules, log.access: false. Every flow
// is proved by the address the server saw and by both NICs' counters.

// carrierOf names the NIC whose address the server saw.
func carrierOf(t *testing.T, seen netip.Addr) netlab.NIC {
	t.Helper()
	for _, nic := range []netlab.NIC{netlab.Ens33, netlab.Ens160} {
		if seen == nic.Addr {
			return nic
		}
	}
	t.Fatalf("server saw %v, neither NIC's address", seen)
	return netlab.NIC{}
}

// otherNIC is the lab's NIC that is not nic.
func otherNIC(nic netlab.NIC) netlab.NIC {
	if nic == netlab.Ens33 {
		return netlab.Ens160
	}
	return netlab.Ens33
}

func TestDocumentedRouting(t *testing.T) {
	lab := netlab.New(t)
	s := &servingLab{Lab: lab, web: lab.StartWeb(), echo: lab.StartEcho()}
	lab.UseDNS(lab.StartDNS(map[string]netip.Addr{
		"web.test":    netlab.Server,
		"a.corp.test": netlab.Server,
		"corp.test":   netlab.Server,
		"other.test":  netlab.Server,
	}))
	proc := lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", `
listen:
  - {name: sys, addr: "127.0.0.1:1080"}
  - {name: least, addr: "127.0.0.1:1081"}
  - {name: domains, addr: "127.0.0.1:1082"}
rules:
  - {listener: [sys], via: system}
  - {listener: [least], via: {balance: [ens33, ens160], strategy: least-connections}}
  - {name: exact, listener: [domains], domain: [web.test], via: ens33}
  - {name: suffix, listener: [domains], domain: [.corp.test], via: ens33}
default: ens160
log: {format: json}
`)
	// flow uploads through proxy to host and returns the NIC that carried
	// it, proved twice.
	flow := func(t *testing.T, proxy, host string) netlab.NIC {
		t.Helper()
		s := s.with(t)
		before := s.Snapshot()
		f := s.curlUpload(t, nil, s.url("http", host, "/echo"), "--proxy", proxy)
		carrier := carrierOf(t, f.seen)
		checkPinned(t, before, f, carrier, otherNIC(carrier))
		return carrier
	}

	t.Run("via: system follows the routing table", func(t *testing.T) {
		lab := lab.With(t)
		// The kernel prefers ens33 (metric 100); an address literal, so no
		// lookup moves a counter.
		if got := flow(t, "socks5h://127.0.0.1:1080", netlab.Server.String()); got != netlab.Ens33 {
			t.Errorf("carried by %s, want ens33, the main table's choice", got.Name)
		}
		// A host route through ens160 changes the table's answer, and so
		// the NIC: system is the routing table, not a pin to ens33.
		route := []string{"route", "add", netlab.Server.String() + "/32", "via", netlab.Gateway.String(), "dev", "ens160"}
		if out, err := lab.Command("ip", route...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(route, " "), err, out)
		}
		defer func() { _ = lab.Command("ip", append([]string{"route", "del"}, route[2:]...)...).Run() }()
		if got := flow(t, "socks5h://127.0.0.1:1080", netlab.Server.String()); got != netlab.Ens160 {
			t.Errorf("with a host route via ens160, carried by %s", got.Name)
		}
	})

	t.Run("least-connections sends new flows to the NIC with fewer open", func(t *testing.T) {
		// A tunnel held open on the first NIC (a tie goes to the first).
		held := dialProxyAt(t, lab, "127.0.0.1:1081")
		if rep, err := socks5Dial(held, "", "", netlab.Server.String(), s.echo.TCP.Port()); err != nil || rep != 0 {
			t.Fatalf("connect: %#x %v", rep, err)
		}
		busy := carrierOf(t, netlab.MustSeen(t, bufio.NewReader(held)).Addr())
		if busy != netlab.Ens33 {
			t.Errorf("with no connections open, the first went to %s, want ens33 (the first listed)", busy.Name)
		}
		// Round-robin would alternate; least-connections keeps choosing
		// the NIC without the open tunnel.
		for i := range 3 {
			if got := flow(t, "socks5h://127.0.0.1:1081", "web.test"); got == busy {
				t.Errorf("flow %d went to %s, which holds the open tunnel", i, got.Name)
			}
		}
		held.Close()
		// Once nicproxy has seen the tunnel close, both NICs are even again
		// and the first listed wins.
		var got netlab.NIC
		eventually(t, 5*time.Second, func() bool {
			got = flow(t, "socks5h://127.0.0.1:1081", "web.test")
			return got == netlab.Ens33
		}, func() string { return "after the tunnel closed, new flows still went to " + got.Name })
	})

	t.Run("domain rules match a name exactly or a suffix", func(t *testing.T) {
		for _, tt := range []struct {
			host string
			want netlab.NIC
		}{
			{"web.test", netlab.Ens33},              // exact
			{"a.corp.test", netlab.Ens33},           // under .corp.test
			{"corp.test", netlab.Ens160},            // .corp.test is not corp.test itself
			{"other.test", netlab.Ens160},           // no rule: the default
			{"WEB.test", netlab.Ens33},              // names are case-insensitive
			{"web.test.", netlab.Ens33},             // and may end in a dot
			{netlab.Server.String(), netlab.Ens160}, // an address is not a name
		} {
			for _, proxy := range []string{"socks5h://127.0.0.1:1082", "http://127.0.0.1:1082"} {
				if got := flow(t, proxy, tt.host); got != tt.want {
					t.Errorf("%s through %s: carried by %s, want %s", tt.host, proxy, got.Name, tt.want.Name)
				}
			}
		}
	})

	t.Run("log.access: false writes no access line", func(t *testing.T) {
		lab := lab.With(t)
		quiet := lab.StartProxy(nicproxyBinary, "127.0.0.1:1090", `
listen: [{addr: "127.0.0.1:1090"}]
rules: [{name: no-9, port: [9], action: reject}]
default: ens160
log: {format: json, access: false}
`)
		flow(t, "socks5h://127.0.0.1:1090", "web.test")
		conn := dialProxyAt(t, lab, "127.0.0.1:1090")
		if rep, err := socks5Dial(conn, "", "", netlab.Server.String(), 9); err != nil || rep != 0x02 {
			t.Errorf("rejected flow: %#x %v, want 0x02", rep, err)
		}
		conn.Close()
		// Every connection has ended, and been logged or not, before the
		// process exits.
		if err := quiet.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code, err := quiet.Wait(15 * time.Second); code != 0 || err != nil {
			t.Fatalf("exit %d, %v after SIGTERM", code, err)
		}
		out := quiet.Output()
		if !strings.Contains(out, "nicproxy stopped") {
			t.Fatalf("no orderly stop in the log:\n%s", out)
		}
		if lines := accessLines(t, out); len(lines) != 0 {
			t.Errorf("%d access lines with log.access: false:\n%s", len(lines), out)
		}
		// The same flows through the proxy with the default do log: the
		// check above can see a line when there is one.
		before := len(accessLines(t, proc.Output()))
		flow(t, "socks5h://127.0.0.1:1080", netlab.Server.String())
		eventually(t, 5*time.Second, func() bool { return len(accessLines(t, proc.Output())) > before },
			func() string { return "no access line with the default log.access:\n" + proc.Output() })
	})
}

// TestInterfaceOptions: interfaces.NIC.source is the source address of the
// NIC's flows, and interfaces.NIC.mark reaches the kernel as SO_MARK: a
// policy rule for the mark gives marked flows a route with another
// source, which the server sees; flows without the mark keep the NIC's
// own address.
func TestInterfaceOptions(t *testing.T) {
	lab := newServingLab(t)
	source, marked := netip.MustParseAddr("192.0.2.49"), netip.MustParseAddr("192.0.2.81")
	lab.AddAddress("ens160", source)
	lab.AddAddress("ens33", marked)
	for _, args := range [][]string{
		{"rule", "add", "fwmark", "42", "lookup", "142"},
		{"route", "add", "default", "via", netlab.Gateway.String(), "dev", "ens33", "src", marked.String(), "table", "142"},
	} {
		if out, err := lab.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", fmt.Sprintf(`
listen: [{addr: "127.0.0.1:1080"}, {name: marked, addr: "127.0.0.1:1081"}]
interfaces:
  ens160: {source: %s}
  ens33: {mark: 42}
rules: [{listener: [marked], via: ens33}]
default: ens160
`, source))
	lab.StartProxy(nicproxyBinary, "127.0.0.1:1082", "", "-i", "ens33", "-l", "127.0.0.1:1082") // no mark
	for _, tt := range []struct {
		name  string
		proxy string
		seen  netip.Addr
		nic   netlab.NIC
	}{
		{"source", "127.0.0.1:1080", source, netlab.Ens160},
		{"mark", "127.0.0.1:1081", marked, netlab.Ens33},
		{"no mark, the NIC's own address", "127.0.0.1:1082", netlab.Ens33.Addr, netlab.Ens33},
	} {
		for _, scheme := range []string{"socks5h", "http"} {
			t.Run(tt.name+" over "+scheme, func(t *testing.T) {
				lab := lab.with(t)
				before := lab.Snapshot()
				f := lab.curlUpload(t, nil, lab.url("http", "web.test", "/echo"), "--proxy", scheme+"://"+tt.proxy)
				if f.seen != tt.seen {
					t.Errorf("server saw %v, want %v", f.seen, tt.seen)
				}
				checkCounters(t, before, f.sent, tt.nic, otherNIC(tt.nic))
			})
		}
	}
}

// TestInterfaceDNS: interfaces.NIC.dns is where names for that NIC are
// asked, through that NIC. The system's nameserver here is black-holed,
// so a NIC without dns cannot resolve (the control), and one with it can.
func TestInterfaceDNS(t *testing.T) {
	lab := netlab.New(t)
	s := &servingLab{Lab: lab, web: lab.StartWeb(), echo: lab.StartEcho()}
	dns := lab.StartDNSZone(netlab.Zone{Records: map[string][]netip.Addr{
		"web.test":   {netlab.Server},
		"other.test": {netlab.Server},
	}})
	lab.UseDNS(netip.AddrPortFrom(netlab.Blackhole, 53))
	lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", fmt.Sprintf(`
interfaces: {ens160: {dns: ["%s"]}}
rules: [{name: system-dns, domain: [other.test], via: ens33}]
default: ens160
`, dns.Addr()))

	before := lab.Snapshot()
	f := s.curlUpload(t, nil, s.url("http", "web.test", "/echo"), "--proxy", "socks5h://127.0.0.1:1080")
	checkPinned(t, before, f, netlab.Ens160, netlab.Ens33)
	if seen := dns.Seen(); len(seen) != 1 || seen[0] != netlab.Ens160.Addr {
		t.Errorf("the DNS server was asked from %v, want ens160's %v alone", seen, netlab.Ens160.Addr)
	}

	// ens33 has no dns: it asks the system's nameserver, which never answers.
	conn := dialProxy(t, lab)
	if rep, err := socks5Dial(conn, "", "", "other.test", s.web.HTTP.Port()); err != nil || rep != 0x04 {
		t.Errorf("other.test via ens33 with the system's dead nameserver: reply %#x, %v; want 0x04", rep, err)
	}
	if n := dns.Queries("other.test", dnsmessage.TypeA); n != 0 {
		t.Errorf("the lab's DNS server was asked for other.test %d times: ens33 has no dns", n)
	}
}
