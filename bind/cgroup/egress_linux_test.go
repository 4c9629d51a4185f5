package cgroup

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/cilium/ebpf"
)

// packet is an Ethernet frame (what BPF_PROG_TEST_RUN takes) carrying an
// IP packet to dst with protocol proto and, for TCP and UDP, dport.
func packet(dst netip.Addr, proto uint8, dport uint16) []byte {
	eth := make([]byte, 14)
	var ip []byte
	if dst.Is4() {
		binary.BigEndian.PutUint16(eth[12:], ethPIP)
		ip = make([]byte, 20)
		ip[0] = 0x45
		ip[9] = proto
		copy(ip[12:], []byte{192, 0, 2, 48})
		a := dst.As4()
		copy(ip[16:], a[:])
	} else {
		binary.BigEndian.PutUint16(eth[12:], ethPIPv6)
		ip = make([]byte, 40)
		ip[0] = 0x60
		ip[6] = proto
		a := dst.As16()
		copy(ip[24:], a[:])
	}
	l4 := make([]byte, 8)
	binary.BigEndian.PutUint16(l4[2:], dport)
	total := len(ip) + len(l4)
	if dst.Is4() {
		binary.BigEndian.PutUint16(ip[2:], uint16(total))
	} else {
		binary.BigEndian.PutUint16(ip[4:], uint16(len(l4)))
	}
	return append(append(eth, ip...), l4...)
}

// TestEgressProgram runs the egress program on packets in the kernel
// (BPF_PROG_TEST_RUN), each as if leaving by a given device: it passes
// loopback and the rule's NIC, drops another NIC and rejected
// destinations, and counts each drop.
func TestEgressProgram(t *testing.T) {
	// Real interface indexes: the test run looks the device up.
	lo, other := 1, 0
	if ifs, err := netInterfaces(); err == nil {
		for _, i := range ifs {
			if i != 1 {
				other = i
				break
			}
		}
	}
	if other == 0 {
		t.Skip("no interface besides loopback to leave by")
	}
	pinOther := Verdict{Action: Pin, NIC: "other", Index: other}
	pinLo := Verdict{Action: Pin, NIC: "lo", Index: lo}
	p := Policy{
		Default: pinLo, // every packet not loopback must be the rules'
		Rules: []Rule{
			{Dst: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}, Verdict: pinOther},
			{Dst: []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")}, Network: TCP, Ports: []PortRange{{443, 443}}, Verdict: pinOther},
			{Dst: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}, Verdict: Verdict{Action: Reject}},
			{Dst: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, Verdict: Verdict{Action: System}},
		},
	}
	progs, err := Load(p, nil)
	if errors.Is(err, ErrPermission) || errors.Is(err, os.ErrPermission) {
		t.Skipf("cannot load BPF programs here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer progs.Close()
	prog := progs.coll.Programs["nicproxy_egress"]
	var drops uint64
	for _, c := range []struct {
		name    string
		dst     string
		proto   uint8
		port    uint16
		ifindex int
		pass    bool
	}{
		{"UDP to the rule's NIC", "198.51.100.10", ipprotoUDP, 53, other, true},
		{"ICMP to the rule's NIC", "198.51.100.10", 1, 0, other, true},
		{"UDP by loopback", "198.51.100.10", ipprotoUDP, 53, lo, true},
		{"to the default by another NIC", "10.0.0.1", ipprotoTCP, 80, other, false},
		{"rejected", "203.0.113.9", ipprotoUDP, 53, other, false},
		{"system, any NIC", "192.0.2.7", ipprotoTCP, 80, other, true},
		{"IPv6 TCP 443 to the rule's NIC", "2001:db8::1", ipprotoTCP, 443, other, true},
		{"IPv6 TCP 80 is the default's", "2001:db8::1", ipprotoTCP, 80, other, false},
		{"IPv6 UDP 443 is the default's", "2001:db8::1", ipprotoUDP, 443, other, false},
	} {
		ctx := make([]byte, 192) // struct __sk_buff
		binary.NativeEndian.PutUint32(ctx[offSkbIfindex:], uint32(c.ifindex))
		ret, err := prog.Run(&ebpf.RunOptions{Data: packet(netip.MustParseAddr(c.dst), c.proto, c.port), Context: ctx})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if (ret == 1) != c.pass {
			t.Errorf("%s: returned %d, want pass %v", c.name, ret, c.pass)
		}
		if !c.pass {
			drops++
		}
	}
	if n, err := progs.Dropped(); err != nil || n != drops {
		t.Errorf("Dropped() = %d, %v; want %d", n, err, drops)
	}
}

// netInterfaces are the interface indexes of this network namespace.
func netInterfaces() ([]int, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []int
	for _, i := range ifs {
		out = append(out, i.Index)
	}
	return out, nil
}
