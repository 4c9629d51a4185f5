package test

import (
	"bufio"
	"encoding/json"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"nicproxy/proxy/socks5udp"
	"nicproxy/test/netlab"
)

// udpSend sends payload to host:port through the relay without waiting.
func udpSend(t *testing.T, udp *net.UDPConn, relay netip.AddrPort, host string, port uint16, payload string) {
	t.Helper()
	var hdr []byte
	if a, err := netip.ParseAddr(host); err == nil {
		hdr = socks5udp.AppendHeader(nil, netip.AddrPortFrom(a, port))
	} else {
		hdr = append([]byte{0, 0, 0, 0x03, byte(len(host))}, host...)
		hdr = append(hdr, byte(port>>8), byte(port))
	}
	if _, err := udp.WriteToUDPAddrPort(append(hdr, payload...), relay); err != nil {
		t.Fatal(err)
	}
}

// udpReply reads the next datagram the relay sends the client: the echo
// server's address, the address the echo server saw, and what it echoed.
func udpReply(t *testing.T, udp *net.UDPConn, timeout time.Duration) (from, seen netip.AddrPort, payload string) {
	t.Helper()
	buf := make([]byte, 64<<10)
	_ = udp.SetReadDeadline(time.Now().Add(timeout))
	n, err := udp.Read(buf)
	if err != nil {
		t.Fatalf("no reply through the relay: %v", err)
	}
	dest, data, err := socks5udp.Parse(buf[:n])
	if err != nil {
		t.Fatalf("reply header: %v", err)
	}
	seenText, echoed, _ := strings.Cut(string(data), " ")
	seen, err = netip.ParseAddrPort(seenText)
	if err != nil {
		t.Fatalf("echo reply %q: %v", data, err)
	}
	return netip.AddrPortFrom(dest.Addr, dest.Port), seen, echoed
}

// accessLines returns the JSON access-log lines of the proxy's output.
func accessLines(t *testing.T, output string) []map[string]any {
	t.Helper()
	return logLines(output, "access")
}

// logLines returns the JSON log lines of the proxy's output whose msg is
// msg.
func logLines(output, msg string) []map[string]any {
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(output))
	for sc.Scan() {
		var entry map[string]any
		if json.Unmarshal(sc.Bytes(), &entry) == nil && entry["msg"] == msg {
			lines = append(lines, entry)
		}
	}
	return lines
}

// TestUDPSlowNameStallsNoOtherDestination: a name whose lookup is slow
// holds back only its own datagrams. The association's datagrams to other
// destinations, and their replies, keep flowing while it resolves, and the
// slow name's datagram goes out once it has resolved, through the same NIC.
// (Before, the association's reader resolved the name itself, holding its
// lock, so the second datagram waited behind the lookup: its reply came
// second.)
func TestUDPSlowNameStallsNoOtherDestination(t *testing.T) {
	lab := netlab.New(t)
	echo := lab.StartEcho()
	// Under the lab resolv.conf's timeout of 1 s, and far above a round
	// trip through the lab (a few milliseconds, even under -race).
	const delay = 600 * time.Millisecond
	dns := lab.StartDNSZone(netlab.Zone{Records: map[string][]netip.Addr{"slow.test": {netlab.Server}}, Delay: delay})
	lab.UseDNS(dns.Addr())
	lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", `
default: ens160
`)
	_, relay, udp := udpAssociate(t, lab)
	server, port := netlab.Server.String(), echo.UDP.Port()
	udpExchange(t, udp, relay, server, port, []byte("warm")) // opens the pinned socket: only the lookup is slow now

	before := lab.Snapshot()
	start := time.Now()
	udpSend(t, udp, relay, "slow.test", port, "slow")
	udpSend(t, udp, relay, server, port, "fast")
	from, seen, payload := udpReply(t, udp, 10*time.Second)
	if payload != "fast" {
		t.Fatalf("first reply %q from %v after %v, want the literal's reply while slow.test still resolves",
			payload, from, time.Since(start).Round(time.Millisecond))
	}
	if from != echo.UDP || seen.Addr() != netlab.Ens160.Addr {
		t.Errorf("literal's reply from %v, server saw %v; want %v and ens160", from, seen, echo.UDP)
	}
	from, seen, payload = udpReply(t, udp, 10*time.Second)
	if payload != "slow" {
		t.Fatalf("second reply %q, want the slow name's datagram, sent once it resolved", payload)
	}
	if elapsed := time.Since(start); elapsed < delay {
		t.Errorf("slow.test's reply after %v, before its lookup could end (%v)", elapsed, delay)
	}
	if from != echo.UDP || seen.Addr() != netlab.Ens160.Addr {
		t.Errorf("slow name's reply from %v, server saw %v; want %v and ens160", from, seen, echo.UDP)
	}
	checkPinned(t, before, flow{seen: seen.Addr(), sent: len("slow") + len("fast")}, netlab.Ens160, netlab.Ens33)
	if got := dns.Seen(); !slices.Equal(got, []netip.Addr{netlab.Ens160.Addr}) {
		t.Errorf("DNS queries came from %v, want ens160's address only", got)
	}
}

// TestUDPNameThatDoesNotResolve: a datagram to a name that does not resolve
// is not dropped silently: a line names the destination, the NIC that
// looked it up and the reason, and the association's access line says
// resolve-failed with that NIC, not ok with none.
func TestUDPNameThatDoesNotResolve(t *testing.T) {
	lab := netlab.New(t)
	echo := lab.StartEcho()
	dns := lab.StartDNSZone(netlab.Zone{Records: map[string][]netip.Addr{"web.test": {netlab.Server}}})
	lab.UseDNS(dns.Addr())
	proxy := lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", `
default: ens160
log: {format: json}
`)
	control, relay, udp := udpAssociate(t, lab)
	before := lab.Snapshot()
	udpSend(t, udp, relay, "nx.test", echo.UDP.Port(), "lost")
	eventually(t, 10*time.Second, func() bool {
		return strings.Contains(proxy.Output(), "udp: destination not relayed")
	}, func() string { return "no line about the dropped datagram:\n" + proxy.Output() })
	control.Close()
	var line map[string]any
	eventually(t, 10*time.Second, func() bool {
		for _, l := range accessLines(t, proxy.Output()) {
			if l["protocol"] == "socks5-udp" {
				line = l
				return true
			}
		}
		return false
	}, func() string { return "no access line for the association:\n" + proxy.Output() })

	dest := "nx.test:" + echo.UDP.String()[strings.LastIndex(echo.UDP.String(), ":")+1:]
	if line["dest"] != dest || line["nic"] != "ens160" || line["result"] != "resolve-failed" {
		t.Errorf("access line dest %v nic %v result %v, want %s, ens160, resolve-failed", line["dest"], line["nic"], line["result"], dest)
	}
	if e, _ := line["error"].(string); !strings.Contains(e, "nx.test") || !strings.Contains(e, "ens160") {
		t.Errorf("access line error %q, want the name and the NIC that looked it up", e)
	}
	var dropped map[string]any
	sc := bufio.NewScanner(strings.NewReader(proxy.Output()))
	for sc.Scan() {
		var entry map[string]any
		if json.Unmarshal(sc.Bytes(), &entry) == nil && entry["msg"] == "udp: destination not relayed" {
			dropped = entry
		}
	}
	if dropped["dest"] != dest || dropped["nic"] != "ens160" || dropped["result"] != "resolve-failed" {
		t.Errorf("drop line %v, want dest %s, nic ens160, result resolve-failed", dropped, dest)
	}
	// The lookup left through ens160, and nothing else left at all.
	if got := dns.Seen(); !slices.Equal(got, []netip.Addr{netlab.Ens160.Addr}) {
		t.Errorf("DNS queries came from %v, want ens160's address only", got)
	}
	if tx := before.TxSince(netlab.Ens33.Name); tx != 0 {
		t.Errorf("ens33 sent %d bytes, want 0", tx)
	}
	if tx := before.TxSince(netlab.Ens160.Name); tx == 0 {
		t.Error("ens160 sent nothing: the name was not looked up through it")
	}
}
