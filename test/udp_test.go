package test

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"nicproxy/proxy/socks5udp"
	"nicproxy/test/netlab"
)

// udpAssociate asks the proxy on 127.0.0.1:1080 for a UDP relay.
func udpAssociate(t *testing.T, lab *netlab.Lab) (net.Conn, netip.AddrPort, *net.UDPConn) {
	t.Helper()
	return udpAssociateOn(t, lab, "127.0.0.1:1080")
}

// udpAssociateOn asks the proxy at proxy for a UDP relay and returns the
// control connection, the relay's address and a client UDP socket made in
// the host namespace.
func udpAssociateOn(t *testing.T, lab *netlab.Lab, proxy string) (net.Conn, netip.AddrPort, *net.UDPConn) {
	t.Helper()
	control, err := lab.DialHost("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { control.Close() })
	_ = control.SetDeadline(time.Now().Add(20 * time.Second))
	rep, relay, err := socks5Request(control, "", "", socks5UDPAssociate, "0.0.0.0", 0)
	if err != nil || rep != 0x00 {
		t.Fatalf("UDP ASSOCIATE: reply %#x, %v", rep, err)
	}
	var udp *net.UDPConn
	if err := lab.InHost(func() (err error) {
		udp, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { udp.Close() })
	return control, relay, udp
}

// udpDatagram is payload for host:port (an address or a name) with its
// SOCKS5 UDP header.
func udpDatagram(host string, port uint16, payload []byte) []byte {
	var hdr []byte
	if a, err := netip.ParseAddr(host); err == nil {
		hdr = socks5udp.AppendHeader(nil, netip.AddrPortFrom(a, port))
	} else { // AppendHeader writes addresses only
		hdr = append([]byte{0, 0, 0, 0x03, byte(len(host))}, host...)
		hdr = binary.BigEndian.AppendUint16(hdr, port)
	}
	return append(hdr, payload...)
}

// udpReceive reads one datagram from the relay and returns its source and
// data.
func udpReceive(t *testing.T, udp *net.UDPConn) (netip.AddrPort, []byte) {
	t.Helper()
	_ = udp.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64<<10)
	n, err := udp.Read(buf)
	if err != nil {
		t.Fatalf("no reply through the relay: %v", err)
	}
	from, data, err := socks5udp.Parse(buf[:n])
	if err != nil || !from.Addr.IsValid() {
		t.Fatalf("reply header %x: %v, want one that names an address", buf[:min(n, 10)], err)
	}
	return netip.AddrPortFrom(from.Addr, from.Port), data
}

// udpExchange sends payload to dest (an address or a name) through the
// relay and returns the reply's source and data.
func udpExchange(t *testing.T, udp *net.UDPConn, relay netip.AddrPort, host string, port uint16, payload []byte) (string, string) {
	t.Helper()
	udpSend(t, udp, relay, host, port, string(payload))
	from, data := udpReceive(t, udp)
	return from.String(), string(data)
}

// echoed splits an Echo server's UDP reply into the address it saw and the
// datagram it echoed.
func echoed(t *testing.T, reply string) (netip.Addr, string) {
	t.Helper()
	seen, data, _ := strings.Cut(reply, " ")
	ap, err := netip.ParseAddrPort(seen)
	if err != nil {
		t.Fatalf("echo reply %.40q does not start with the address the server saw: %v", reply, err)
	}
	return ap.Addr(), data
}

// relayClosed reports whether the relay's UDP port is free again, that is,
// whether nicproxy has closed the association's client-facing socket: a
// positive sign the association ended, where "no reply came" is only the
// absence of one.
func relayClosed(lab *netlab.Lab, relay netip.AddrPort) bool {
	return lab.InHost(func() error {
		pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(relay))
		if err == nil {
			pc.Close()
		}
		return err
	}) == nil
}

// TestUDPAssociate: datagrams relayed by SOCKS5 UDP ASSOCIATE leave through
// the rule's NIC, names included, and the reply comes back with its source.
func TestUDPAssociate(t *testing.T) {
	lab := newServingLab(t)
	rejected := lab.StartEcho() // a server that would answer, behind a reject rule
	const idle = 2 * time.Second
	lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", fmt.Sprintf(`
rules:
  - {name: no-udp-there, network: udp, port: [%d], action: reject}
default: ens160
timeouts: {idle: %v}
`, rejected.UDP.Port(), idle))
	payload := []byte(strings.Repeat("datagram ", 100))
	server := netlab.Server.String()
	udpPort := lab.echo.UDP.Port()

	for _, dest := range []string{server, "web.test"} {
		t.Run("to "+dest, func(t *testing.T) {
			lab := lab.with(t)
			_, relay, udp := udpAssociate(t, lab.Lab)
			before := lab.Snapshot()
			from, reply := udpExchange(t, udp, relay, dest, udpPort, payload)
			if from != lab.echo.UDP.String() {
				t.Errorf("reply from %s, want %s", from, lab.echo.UDP)
			}
			seen, data := echoed(t, reply)
			if data != string(payload) {
				t.Errorf("echo %d bytes, want the %d-byte payload", len(data), len(payload))
			}
			checkPinned(t, before, flow{seen: seen, sent: len(payload)}, netlab.Ens160, netlab.Ens33)
		})
	}
	t.Run("a network: udp rule picks the NIC", func(t *testing.T) {
		lab := lab.with(t)
		lab.StartProxy(nicproxyBinary, "127.0.0.1:1081", fmt.Sprintf(`
listen: [{addr: "127.0.0.1:1081"}]
rules:
  - {name: tcp-only, network: tcp, via: ens160}
  - {name: udp-echo, network: udp, port: [%d], via: ens33}
default: ens160
`, udpPort))
		_, relay, udp := udpAssociateOn(t, lab.Lab, "127.0.0.1:1081")
		before := lab.Snapshot()
		_, reply := udpExchange(t, udp, relay, "web.test", udpPort, payload)
		seen, _ := echoed(t, reply)
		checkPinned(t, before, flow{seen: seen, sent: len(payload)}, netlab.Ens33, netlab.Ens160)
	})
	t.Run("a reject rule drops the datagram", func(t *testing.T) {
		lab := lab.with(t)
		_, relay, udp := udpAssociate(t, lab.Lab)
		before := lab.Snapshot()
		big := []byte(strings.Repeat("rejected ", 200))
		udpSend(t, udp, relay, server, rejected.UDP.Port(), string(big))
		// The fence: a permitted datagram sent after it, through the same
		// association. Its reply proves the rejected one was handled by then.
		udpSend(t, udp, relay, server, udpPort, "fence")
		from, data := udpReceive(t, udp)
		if from == rejected.UDP {
			t.Fatalf("the rejected datagram got a reply: %.40q", data)
		}
		if _, echo := echoed(t, string(data)); echo != "fence" {
			t.Errorf("the fence's reply echoed %.40q", echo)
		}
		// ens160 carried the small fence, not the big rejected datagram.
		if tx := before.TxSince("ens160"); tx == 0 || tx >= uint64(len(big)) {
			t.Errorf("ens160 sent %d bytes, want the fence's (under the %d-byte rejected datagram)", tx, len(big))
		}
		if tx := before.TxSince("ens33"); tx != 0 {
			t.Errorf("ens33 sent %d bytes, want 0", tx)
		}
	})
	t.Run("only the client's own address may use its association", func(t *testing.T) {
		lab := lab.with(t)
		_, relay, udp := udpAssociate(t, lab.Lab)
		udpExchange(t, udp, relay, server, udpPort, []byte("mine")) // fixes the client's address
		var intruder *net.UDPConn
		if err := lab.InHost(func() (err error) {
			intruder, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer intruder.Close()
		if _, err := intruder.WriteToUDPAddrPort(udpDatagram(server, udpPort, []byte("intruder")), relay); err != nil {
			t.Fatal(err)
		}
		// The fence: had the intruder's datagram been relayed, its echo
		// would reach the client before this one's.
		_, data := udpExchange(t, udp, relay, server, udpPort, []byte("fence"))
		if _, echo := echoed(t, data); echo != "fence" {
			t.Errorf("the client's next reply echoed %q, want its own fence", echo)
		}
		_ = intruder.SetReadDeadline(time.Now().Add(50 * time.Millisecond)) // anything would be queued by now
		if n, err := intruder.Read(make([]byte, 100)); err == nil {
			t.Errorf("another socket used the association and got a %d-byte reply", n)
		}
	})
	t.Run("the association ends with its TCP connection", func(t *testing.T) {
		lab := lab.with(t)
		control, relay, udp := udpAssociate(t, lab.Lab)
		udpExchange(t, udp, relay, server, udpPort, []byte("x"))
		if relayClosed(lab.Lab, relay) {
			t.Fatal("the relay's port is free while the association is open: the check cannot tell")
		}
		control.Close()
		eventually(t, 5*time.Second, func() bool { return relayClosed(lab.Lab, relay) },
			func() string { return "the relay socket stayed open after the TCP connection closed" })
	})
	t.Run("the association ends after timeouts.idle", func(t *testing.T) {
		lab := lab.with(t)
		control, relay, udp := udpAssociate(t, lab.Lab)
		udpExchange(t, udp, relay, server, udpPort, []byte("x"))
		last := time.Now()
		_ = control.SetReadDeadline(time.Now().Add(idle + 10*time.Second))
		n, err := control.Read(make([]byte, 1))
		if err != io.EOF {
			t.Fatalf("control connection: read %d bytes, %v; want it closed (EOF) by the idle timeout", n, err)
		}
		if d := time.Since(last); d < idle-100*time.Millisecond {
			t.Errorf("closed %v after the last datagram, before timeouts.idle (%v)", d, idle)
		}
		eventually(t, 5*time.Second, func() bool { return relayClosed(lab.Lab, relay) },
			func() string { return "the relay socket stayed open after the idle timeout" })
	})
}
