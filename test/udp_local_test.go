package test

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"nicproxy/test/netlab"
)

// hostUDP is a UDP echo server on the wildcard address of the host
// namespace: reached through loopback or the host's own addresses, never
// from off the host (the lab's upstream has no route to it but through a
// NIC, and nothing there sends to it). It counts what it received.
type hostUDP struct {
	port     uint16
	received atomic.Int64
}

func startHostUDP(t *testing.T, lab *netlab.Lab) *hostUDP {
	t.Helper()
	var pc *net.UDPConn
	if err := lab.InHost(func() (err error) {
		pc, err = net.ListenUDP("udp4", &net.UDPAddr{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	s := &hostUDP{port: pc.LocalAddr().(*net.UDPAddr).AddrPort().Port()}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 64<<10)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			s.received.Add(1)
			_, _ = pc.WriteToUDPAddrPort(append([]byte(from.String()+" "), buf[:n]...), from)
		}
	}()
	t.Cleanup(func() { pc.Close(); wg.Wait() })
	return s
}

// socks5ConnectReply opens a connection to the proxy at proxy and returns
// its reply to a CONNECT to host:port.
func socks5ConnectReply(t *testing.T, lab *netlab.Lab, proxy, host string, port uint16) byte {
	t.Helper()
	conn := dialProxyAt(t, lab, proxy)
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	rep, err := socks5Dial(conn, "", "", host, port)
	if err != nil {
		t.Fatalf("SOCKS5 CONNECT %s:%d: %v", host, port, err)
	}
	return rep
}

// TestUDPLocalDestinations: a SOCKS5 UDP datagram to a name is checked
// like a TCP flow to it once the name has resolved, whichever lookup
// resolved it. Under local_destinations: deny with a dst rule covering
// every address (so the rule's own lookup gives the address), a datagram
// to a name resolving to 127.0.0.1 or to the host's own address is
// dropped, and says so, as the same names over TCP get 0x02 (it was
// relayed to the host's server). Under allow, a name resolving to
// 127.0.0.1 reaches the loopback server unpinned, and no NIC sends a byte
// (it was sent through a socket pinned to ens160, which ARPed for
// 127.0.0.1 and never arrived).
func TestUDPLocalDestinations(t *testing.T) {
	lab := netlab.New(t)
	echo := lab.StartEcho()
	lab.UseDNS(lab.StartDNS(map[string]netip.Addr{
		"lo.test":   netip.MustParseAddr("127.0.0.1"),
		"self.test": netlab.Ens33.Addr,
	}))
	host := startHostUDP(t, lab)
	deny := lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", `
local_destinations: deny
rules: [{name: everywhere, dst: [0.0.0.0/0], via: ens160}]
default: ens160
log: {format: json}
`)
	lab.StartProxy(nicproxyBinary, "127.0.0.1:1081", `
listen: [{addr: "127.0.0.1:1081"}]
local_destinations: allow
default: ens160
`)

	t.Run("deny", func(t *testing.T) {
		lab := lab.With(t)
		for _, name := range []string{"lo.test", "self.test"} {
			if rep := socks5ConnectReply(t, lab, "127.0.0.1:1080", name, host.port); rep != 0x02 {
				t.Errorf("SOCKS5 CONNECT %s:%d: reply %#x, want 0x02", name, host.port, rep)
			}
			_, relay, udp := udpAssociate(t, lab)
			before := lab.Snapshot()
			udpSend(t, udp, relay, name, host.port, "must not arrive")
			dest := fmt.Sprintf("%s:%d", name, host.port)
			eventually(t, 10*time.Second, func() bool {
				return slices.ContainsFunc(logLines(deny.Output(), "udp: destination not relayed"), func(l map[string]any) bool {
					return l["dest"] == dest && l["result"] == "rejected"
				})
			}, func() string { return "no line saying the datagram to " + dest + " was rejected:\n" + deny.Output() })
			// Pinning still works in the same association: the echo
			// server sees ens160, and ens33 sends nothing.
			_, reply := udpExchange(t, udp, relay, netlab.Server.String(), echo.UDP.Port(), []byte("fence"))
			seen, _ := echoed(t, reply)
			checkPinned(t, before, flow{seen: seen, sent: len("fence")}, netlab.Ens160, netlab.Ens33)
		}
		if n := host.received.Load(); n != 0 {
			t.Errorf("the host's UDP server received %d datagrams, want none under deny", n)
		}
	})

	t.Run("allow: loopback is reached unpinned", func(t *testing.T) {
		lab := lab.With(t)
		// The name's first lookup goes through ens160, as it must; a
		// first association warms ens160's cache so the counted one
		// asks nothing.
		_, relay, udp := udpAssociateOn(t, lab, "127.0.0.1:1081")
		udpSend(t, udp, relay, "lo.test", host.port, "warm")
		_, relay, udp = udpAssociateOn(t, lab, "127.0.0.1:1081")
		before := lab.Snapshot()
		udpSend(t, udp, relay, "lo.test", host.port, "to loopback")
		from, seen, payload := udpReply(t, udp, 10*time.Second)
		if payload != "to loopback" || from.Addr() != netip.MustParseAddr("127.0.0.1") || !seen.Addr().IsLoopback() {
			t.Errorf("reply %q from %v, server saw %v; want the datagram echoed by 127.0.0.1 from loopback", payload, from, seen)
		}
		for _, nic := range []netlab.NIC{netlab.Ens33, netlab.Ens160} {
			if tx := before.TxSince(nic.Name); tx != 0 {
				t.Errorf("%s sent %d bytes for a datagram to loopback, want 0", nic.Name, tx)
			}
		}
	})
}

// TestUDPIPv6OnlyNameKeepsItsNIC: under balancing, a name with only IPv6
// answers is sent through the NIC that looked it up. (The IPv6 socket was
// opened by a second balancing pick, which round-robin put on the other
// NIC: the lookup left through one NIC and the datagram through the
// other.)
func TestUDPIPv6OnlyNameKeepsItsNIC(t *testing.T) {
	lab := netlab.New(t)
	lab.EnableIPv6()
	echo := lab.StartEchoOn(netlab.Server6)
	dns := lab.StartDNSZone(netlab.Zone{Records: map[string][]netip.Addr{"v6.test": {netlab.Server6}}})
	lab.UseDNS(dns.Addr())
	lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", `
default: {balance: [ens33, ens160], strategy: round-robin}
`)
	_, relay, udp := udpAssociate(t, lab)
	before := lab.Snapshot()
	udpSend(t, udp, relay, "v6.test", echo.UDP.Port(), "v6 only")
	from, seen, payload := udpReply(t, udp, 10*time.Second)
	if payload != "v6 only" || from != echo.UDP {
		t.Fatalf("reply %q from %v, want the datagram echoed by %v", payload, from, echo.UDP)
	}
	asked := dns.Seen()
	if len(asked) != 1 {
		t.Fatalf("DNS queries came from %v, want one NIC's address", asked)
	}
	want, other := netlab.Ens33, netlab.Ens160
	if asked[0] == netlab.Ens160.Addr {
		want, other = other, want
	}
	if seen.Addr() != want.Addr6 {
		t.Errorf("the lookup left through %s, the datagram through %v (server saw it), want %s's %v",
			want.Name, seen.Addr(), want.Name, want.Addr6)
	}
	if tx := before.TxSince(other.Name); tx != 0 {
		t.Errorf("%s sent %d bytes, want 0: the lookup and the datagram both went through %s", other.Name, tx, want.Name)
	}
}
