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
	if _, err := control.Write([]byte{0x05, 0x01, 0x00, 0x05, 0x03, 0x00, 0x01, 0, 0, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, 2+4+4+2)
	if _, err := io.ReadFull(control, reply); err != nil || reply[3] != 0x00 {
		t.Fatalf("UDP ASSOCIATE reply %v %v", reply, err)
	}
	relay := netip.AddrPortFrom(netip.AddrFrom4([4]byte(reply[6:10])), binary.BigEndian.Uint16(reply[10:12]))
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

// udpExchange sends payload to dest (an address or a name) through the
// relay and returns the reply's source and data.
func udpExchange(t *testing.T, udp *net.UDPConn, relay netip.AddrPort, host string, port uint16, payload []byte) (string, string) {
	t.Helper()
	hdr := []byte{0, 0, 0}
	if a, err := netip.ParseAddr(host); err == nil {
		hdr = append(append(hdr, 0x01), a.AsSlice()...)
	} else {
		hdr = append(append(hdr, 0x03, byte(len(host))), host...)
	}
	hdr = binary.BigEndian.AppendUint16(hdr, port)
	if _, err := udp.WriteToUDPAddrPort(append(hdr, payload...), relay); err != nil {
		t.Fatal(err)
	}
	_ = udp.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64<<10)
	n, err := udp.Read(buf)
	if err != nil {
		t.Fatalf("no reply through the relay: %v", err)
	}
	if n < 10 || buf[3] != 0x01 {
		t.Fatalf("reply header %x", buf[:min(n, 10)])
	}
	from := netip.AddrPortFrom(netip.AddrFrom4([4]byte(buf[4:8])), binary.BigEndian.Uint16(buf[8:10]))
	return from.String(), string(buf[10:n])
}

// TestUDPAssociate: datagrams relayed by SOCKS5 UDP ASSOCIATE leave through
// the rule's NIC, names included, and the reply comes back with its source.
func TestUDPAssociate(t *testing.T) {
	lab := newServingLab(t)
	lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", `
rules:
  - {name: no-udp-25, network: udp, port: [25], action: reject}
default: ens160
timeouts: {idle: 2s}
`)
	payload := []byte(strings.Repeat("datagram ", 100))
	server := netlab.Server.String()
	udpPort := lab.echo.UDP.Port()

	for _, dest := range []string{server, "web.test"} {
		t.Run("to "+dest, func(t *testing.T) {
			_, relay, udp := udpAssociate(t, lab.Lab)
			before := lab.Snapshot()
			from, reply := udpExchange(t, udp, relay, dest, udpPort, payload)
			if from != lab.echo.UDP.String() {
				t.Errorf("reply from %s, want %s", from, lab.echo.UDP)
			}
			seen, echoed, _ := strings.Cut(reply, " ")
			if got := netip.MustParseAddrPort(seen).Addr(); got != netlab.Ens160.Addr {
				t.Errorf("echo server saw %v, want ens160", got)
			}
			if echoed != string(payload) {
				t.Errorf("echo %d bytes, want the %d-byte payload", len(echoed), len(payload))
			}
			checkPinned(t, before, flow{seen: netlab.Ens160.Addr, sent: len(payload)}, netlab.Ens160, netlab.Ens33)
		})
	}
	t.Run("a network: udp rule picks the NIC", func(t *testing.T) {
		lab.StartProxy(nicproxyBinary, "127.0.0.1:1081", fmt.Sprintf(`
listen: [{addr: "127.0.0.1:1081"}]
rules:
  - {name: tcp-only, network: tcp, via: ens160}
  - {name: udp-echo, network: udp, port: [%d], via: ens33}
default: ens160
`, udpPort))
		_, relay, udp := udpAssociateOn(t, lab.Lab, "127.0.0.1:1081")
		before := lab.Snapshot()
		_, echoed := udpExchange(t, udp, relay, "web.test", udpPort, payload)
		seen, _, _ := strings.Cut(echoed, " ")
		if got := netip.MustParseAddrPort(seen).Addr(); got != netlab.Ens33.Addr {
			t.Errorf("echo server saw %v, want ens33", got)
		}
		checkPinned(t, before, flow{seen: netlab.Ens33.Addr, sent: len(payload)}, netlab.Ens33, netlab.Ens160)
	})
	t.Run("a reject rule drops the datagram", func(t *testing.T) {
		_, relay, udp := udpAssociate(t, lab.Lab)
		before := lab.Snapshot()
		hdr := append([]byte{0, 0, 0, 0x01}, netlab.Server.AsSlice()...)
		hdr = binary.BigEndian.AppendUint16(hdr, 25)
		if _, err := udp.WriteToUDPAddrPort(append(hdr, "smtp?"...), relay); err != nil {
			t.Fatal(err)
		}
		_ = udp.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if _, err := udp.Read(make([]byte, 100)); err == nil {
			t.Error("a datagram to a rejected port got a reply")
		}
		if tx := before.TxSince("ens33") + before.TxSince("ens160"); tx != 0 {
			t.Errorf("a rejected datagram moved %d bytes", tx)
		}
	})
	t.Run("only the client's own address may use its association", func(t *testing.T) {
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
		hdr := append([]byte{0, 0, 0, 0x01}, netlab.Server.AsSlice()...)
		hdr = binary.BigEndian.AppendUint16(hdr, udpPort)
		if _, err := intruder.WriteToUDPAddrPort(append(hdr, "intruder"...), relay); err != nil {
			t.Fatal(err)
		}
		_ = intruder.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if _, err := intruder.Read(make([]byte, 100)); err == nil {
			t.Error("another socket used the association and got a reply")
		}
		_ = udp.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if n, err := udp.Read(make([]byte, 100)); err == nil {
			t.Errorf("the client got a reply to a datagram it did not send (%d bytes)", n)
		}
	})
	t.Run("the association ends with its TCP connection", func(t *testing.T) {
		control, relay, udp := udpAssociate(t, lab.Lab)
		udpExchange(t, udp, relay, server, udpPort, []byte("x"))
		control.Close()
		time.Sleep(200 * time.Millisecond)
		hdr := append([]byte{0, 0, 0, 0x01}, netlab.Server.AsSlice()...)
		hdr = binary.BigEndian.AppendUint16(hdr, udpPort)
		_, _ = udp.WriteToUDPAddrPort(append(hdr, 'y'), relay)
		_ = udp.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if _, err := udp.Read(make([]byte, 100)); err == nil {
			t.Error("the relay still answered after the TCP connection closed")
		}
	})
}
