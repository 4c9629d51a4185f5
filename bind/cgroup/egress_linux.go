package cgroup

import (
	"encoding/binary"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// The egress program is the guarantee behind the socket hooks. They pin a
// socket when it connects or sends, which gives it the right source
// address and a clear EPERM; but a socket option is only a default: an
// IPv4 IP_PKTINFO with another interface index, a socket made before
// the programs were attached, a listener's accepted sockets, an ICMP or
// raw socket under a dst rule all route around it. cgroup_skb/egress sees
// every packet of the cgroup's sockets after routing, with the device it
// leaves by, and passes it only when that device is loopback or the NIC
// its destination's rule names (the same tries the socket hooks use);
// everything else is dropped and counted. systemd's
// RestrictNetworkInterfaces= is the same kind of program.

// Offsets in struct __sk_buff, the context of cgroup_skb programs.
const (
	offSkbProtocol = 16 // skb->protocol, network byte order
	offSkbIfindex  = 40 // the device the packet leaves by
)

// Packet facts the egress program reads. At cgroup egress the packet
// starts at its IP header, and IPv4 fragmentation has not happened yet.
const (
	loopbackIfindex = 1 // LOOPBACK_IFINDEX, in every network namespace
	ethPIP          = 0x0800
	ethPIPv6        = 0x86dd
	ipprotoTCP      = 6
	ipv4HeaderLen   = 20
	ipv4Proto       = 9
	ipv4Frag        = 6
	ipv4Dst         = 16
	ipv6NextHeader  = 6
	ipv6Dst         = 24
	ipv6HeaderLen   = 40
	l4DstPort       = 2 // in both the TCP and the UDP header
)

// mapDrops counts the packets the egress program dropped: one u64.
const mapDrops = "nicproxy_drops"

// stHeader is where the egress program copies the fixed IPv4 header (or
// IPv6's next-header byte); the socket programs' local key lives there.
const stHeader = -48

// rIfindex holds the device the packet leaves by.
const rIfindex = asm.R9

// egressProgram builds the cgroup_skb/egress program: the packet's
// destination, transport and port make the same rules key the socket
// programs look up; a pin verdict passes only through its own device,
// system through any, reject through none. Loopback always passes. What
// cannot be read or has no verdict is dropped: fail closed.
func egressProgram() asm.Instructions {
	insns := asm.Instructions{
		asm.Mov.Reg(rCtx, asm.R1),
		asm.LoadMem(rIfindex, rCtx, offSkbIfindex, asm.Word),
		asm.JEq.Imm(rIfindex, loopbackIfindex, "allow"),
		asm.StoreImm(asm.RFP, stScratch, 0, asm.Word), // port 0 unless read
		asm.LoadMem(asm.R2, rCtx, offSkbProtocol, asm.Word),
		asm.JEq.Imm(asm.R2, int32(networkOrder16(ethPIPv6)), "v6"),
		asm.JNE.Imm(asm.R2, int32(networkOrder16(ethPIP)), "drop"),
	}
	insns = append(insns, egressIPv4()...)
	insns = append(insns, egressIPv6()...)
	classify := portClass()
	classify[0] = classify[0].WithSymbol("classify")
	insns = append(insns, classify...)
	insns = append(insns, lookupVerdict("drop")...)
	insns = append(insns,
		asm.JEq.Imm(rA, int32(Reject), "drop"),
		asm.JEq.Imm(rA, int32(System), "allow"),
		asm.JEq.Reg(rIfindex, rB, "allow"),
	)
	insns = append(insns, countDrop()...)
	return append(insns, allowOrDeny()...)
}

// egressIPv4 reads an IPv4 packet's destination (into the rules key, as
// an IPv4-mapped address), its transport (rB) and, for TCP and UDP, its
// destination port (the first fragment's; later ones keep port 0).
func egressIPv4() asm.Instructions {
	insns := loadBytes(0, stHeader, ipv4HeaderLen)
	insns = append(insns, v4MappedPrefix(stRulesIP)...)
	insns = append(insns,
		asm.LoadMem(asm.R2, asm.RFP, stHeader+ipv4Dst, asm.Word),
		asm.StoreMem(asm.RFP, stRulesIP+12, asm.R2, asm.Word),
		asm.LoadMem(asm.R2, asm.RFP, stHeader+ipv4Proto, asm.Byte),
	)
	insns = append(insns, packetTransport("v4transported")...)
	insns = append(insns,
		asm.JEq.Imm(rB, transportOther, "classify").WithSymbol("v4transported"),
		// The fragment offset: the low 13 bits of bytes 6 and 7.
		asm.LoadMem(asm.R3, asm.RFP, stHeader+ipv4Frag, asm.Byte),
		asm.And.Imm(asm.R3, 0x1f),
		asm.LoadMem(asm.R4, asm.RFP, stHeader+ipv4Frag+1, asm.Byte),
		asm.Or.Reg(asm.R3, asm.R4),
		asm.JNE.Imm(asm.R3, 0, "classify"),
		// The port follows the header, whose length is IHL words.
		asm.LoadMem(asm.R2, asm.RFP, stHeader, asm.Byte),
		asm.And.Imm(asm.R2, 0xf),
		asm.LSh.Imm(asm.R2, 2),
		asm.Add.Imm(asm.R2, l4DstPort),
	)
	insns = append(insns, loadBytes(fromR2, stScratch, 2)...)
	return append(insns, asm.Ja.Label("classify"))
}

// egressIPv6 is egressIPv4 for IPv6; a packet with extension headers
// counts as "other" transport, port 0.
func egressIPv6() asm.Instructions {
	insns := loadBytes(ipv6Dst, stRulesIP, 16)
	insns[0] = insns[0].WithSymbol("v6")
	insns = append(insns, loadBytes(ipv6NextHeader, stHeader, 1)...)
	insns = append(insns, asm.LoadMem(asm.R2, asm.RFP, stHeader, asm.Byte))
	insns = append(insns, packetTransport("v6transported")...)
	insns = append(insns, asm.JEq.Imm(rB, transportOther, "classify").WithSymbol("v6transported"))
	insns = append(insns, loadBytes(ipv6HeaderLen+l4DstPort, stScratch, 2)...)
	return append(insns, asm.Ja.Label("classify"))
}

// fromR2 as loadBytes' offset means the offset is already in R2.
const fromR2 = -1

// loadBytes copies n bytes of the packet from offset (or, with fromR2,
// from R2's) to the stack at to; a packet too short is dropped.
func loadBytes(offset int32, to int16, n int32) asm.Instructions {
	insns := asm.Instructions{asm.Mov.Reg(asm.R1, rCtx)}
	if offset != fromR2 {
		insns = append(insns, asm.Mov.Imm(asm.R2, offset))
	}
	return append(insns,
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, int32(to)),
		asm.Mov.Imm(asm.R4, n),
		asm.FnSkbLoadBytes.Call(),
		asm.JNE.Imm(asm.R0, 0, "drop"),
	)
}

// packetTransport sets rB from the IP protocol number in R2, as
// socketTransport does from the socket: TCP, UDP, or other.
func packetTransport(done string) asm.Instructions {
	return asm.Instructions{
		asm.Mov.Imm(rB, transportTCP),
		asm.JEq.Imm(asm.R2, ipprotoTCP, done),
		asm.Mov.Imm(rB, transportUDP),
		asm.JEq.Imm(asm.R2, ipprotoUDP, done),
		asm.Mov.Imm(rB, transportOther),
		asm.Ja.Label(done),
	}
}

// countDrop adds one to the drops counter and drops the packet.
func countDrop() asm.Instructions {
	return asm.Instructions{
		asm.StoreImm(asm.RFP, stIfindex, 0, asm.Word).WithSymbol("drop"),
		asm.LoadMapPtr(asm.R1, 0).WithReference(mapDrops),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stIfindex),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "deny"),
		asm.Mov.Imm(asm.R1, 1),
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
		asm.Ja.Label("deny"),
	}
}

// networkOrder16 is v as a network-order u16 reads on this host.
func networkOrder16(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

// Dropped is how many packets the egress program has dropped: packets of
// the cgroup's sockets that would have left through another NIC than
// their destination's rule names, or to a rejected destination.
func (p *Programs) Dropped() (uint64, error) {
	var n uint64
	if err := p.coll.Maps[mapDrops].Lookup(uint32(0), &n); err != nil {
		return 0, fmt.Errorf("read the egress drop counter: %w", err)
	}
	return n, nil
}

// dropsSpec is the drops counter's map.
var dropsSpec = &ebpf.MapSpec{Name: mapDrops, Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1}

// egressLoads loads the egress program alone, with empty maps, and
// unloads it: whether this kernel lets exec enforce at egress.
func egressLoads() error {
	spec := &ebpf.CollectionSpec{
		Maps: mapSpecs(1, 1),
		Programs: map[string]*ebpf.ProgramSpec{"nicproxy_egress": {
			Name: "nicproxy_egress", Type: ebpf.CGroupSKB, AttachType: ebpf.AttachCGroupInetEgress,
			Instructions: egressProgram(), License: "GPL",
		}},
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return err
	}
	coll.Close()
	return nil
}
