package cgroup

import (
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// The programs are written with cilium/ebpf's asm package rather than in C:
// they are a few dozen instructions, and building them in Go keeps
// `go build` free of clang and of generated objects to keep in step.

// Offsets in struct bpf_sock_addr (include/uapi/linux/bpf.h), the context
// of connect and sendmsg programs.
const (
	offUserIP4  = 4
	offUserIP6  = 8
	offUserPort = 24
	offType     = 32
	offProtocol = 36
	offSk       = 64
)

// Offsets in struct bpf_sock, the context of sock_create programs and what
// bpf_sock_addr.sk points to.
const (
	offBoundDevIf = 0
	offSockType   = 8
	offSockProto  = 12
)

// Kernel constants the programs use.
const (
	solSocket       = 1  // SOL_SOCKET
	soBindToIfindex = 62 // SO_BINDTOIFINDEX
	sockStream      = 1  // SOCK_STREAM
	ipprotoUDP      = 17 // IPPROTO_UDP
)

// Names of the maps the programs refer to.
const (
	mapRules = "nicproxy_rules"
	mapLocal = "nicproxy_local"
	mapPorts = "nicproxy_ports"
)

// Stack layout of the sock_addr programs, as offsets from R10:
//
//	-24 rules key: prefixlen u32, class u8, transport u8, 2 zero bytes, addr [16]u8
//	-48 local key: prefixlen u32, addr [16]u8
//	-52 the interface index passed to bpf_setsockopt
//	-56 scratch key (port)
const (
	stRulesKey = -24
	stRulesCP  = -20
	stRulesIP  = -16
	stLocalKey = -48
	stLocalIP  = -44
	stIfindex  = -52
	stScratch  = -56
)

// Key sizes of the tries: prefixlen, then the data the prefix covers.
const (
	rulesKeySize = 4 + 4 + 16
	localKeySize = 4 + 16
	rulesKeyBits = 32 + 128 // class and transport always match in full
)

// Registers the sock_addr and egress programs keep across helper calls
// (R6 to R9 survive them; R0 to R5 do not).
const (
	rCtx = asm.R6 // the program's context
	rA   = asm.R7 // the port class, then the verdict's action
	rB   = asm.R8 // the transport, then the verdict's interface index
)

// sockAddrProgram builds the connect or sendmsg program for one family.
//
// It looks the destination up in the local trie (loopback, the host's own
// addresses): those are left alone, and a socket exec pinned (at creation)
// is unpinned, since a pinned socket cannot reach them. Otherwise it looks
// up the port's class and the (class, transport, destination) verdict:
// reject returns 0 (EPERM), system unpins what exec pinned, and pin binds
// the socket with SO_BINDTOIFINDEX. If bpf_setsockopt fails, the call
// fails: the socket never leaves unpinned.
//
// A connect program changes the socket before the kernel routes it. A
// sendmsg program runs after the kernel has read the socket's device for
// this datagram, so when the pin must change it changes it for the next
// datagram and refuses this one (EPERM) rather than let it leave the wrong
// way. ours are the interface indexes exec pins to: a socket bound to any
// other device was bound by the program itself and is not unpinned.
func sockAddrProgram(v6, sendmsg bool, ours []int) asm.Instructions {
	insns := asm.Instructions{asm.Mov.Reg(rCtx, asm.R1)}
	insns = append(insns, sockAddrDestination(v6)...)
	if sendmsg {
		insns = append(insns, connectedPeer(v6)...)
	}
	insns = append(insns, lookupLocal("unpin")...)
	insns = append(insns, sockAddrPort()...)
	insns = append(insns, portClass()...)
	insns = append(insns, socketTransport()...)
	insns = append(insns, lookupVerdict("deny")...)
	insns = append(insns,
		asm.JEq.Imm(rA, int32(Reject), "deny"),
		asm.JEq.Imm(rA, int32(System), "unpin"),
	)
	insns = append(insns, pinTo()...)
	insns = append(insns, unpinOurs(ours)...)
	insns = append(insns, setPin(sendmsg)...)
	return append(insns, allowOrDeny()...)
}

// sockAddrDestination copies the destination, as a 16-byte address (IPv4
// mapped), into both the rules key and the local key.
func sockAddrDestination(v6 bool) asm.Instructions {
	if v6 {
		var insns asm.Instructions
		for i := int16(0); i < 4; i++ {
			insns = append(insns,
				asm.LoadMem(asm.R2, rCtx, offUserIP6+4*i, asm.Word),
				asm.StoreMem(asm.RFP, stRulesIP+4*i, asm.R2, asm.Word),
				asm.StoreMem(asm.RFP, stLocalIP+4*i, asm.R2, asm.Word),
			)
		}
		return insns
	}
	insns := v4MappedPrefix(stRulesIP, stLocalIP)
	return append(insns,
		asm.LoadMem(asm.R2, rCtx, offUserIP4, asm.Word),
		asm.StoreMem(asm.RFP, stRulesIP+12, asm.R2, asm.Word),
		asm.StoreMem(asm.RFP, stLocalIP+12, asm.R2, asm.Word),
	)
}

// connectedPeer lets a sendmsg with no destination (a zero address) go
// as it is. The kernel runs sendmsg programs on a connected socket when
// the call carries a per-packet option (IP_TOS, IP_TTL, IPV6_TCLASS, as
// QUIC stacks send), with no address: the datagram goes to the connected
// peer, which connect's program already pinned for. Taking the zero
// address for "this host" would unpin the socket, and every later send()
// would follow the routing table.
func connectedPeer(v6 bool) asm.Instructions {
	if !v6 {
		return asm.Instructions{
			asm.LoadMem(asm.R2, asm.RFP, stRulesIP+12, asm.Word),
			asm.JEq.Imm(asm.R2, 0, "allow"),
		}
	}
	insns := asm.Instructions{asm.Mov.Imm(asm.R3, 0)}
	for i := int16(0); i < 4; i++ {
		insns = append(insns,
			asm.LoadMem(asm.R2, asm.RFP, stRulesIP+4*i, asm.Word),
			asm.Or.Reg(asm.R3, asm.R2),
		)
	}
	return append(insns, asm.JEq.Imm(asm.R3, 0, "allow"))
}

// v4MappedPrefix writes ::ffff: (the first 12 bytes of an IPv4-mapped
// address) at each stack offset. The third word holds the bytes 00 00 ff
// ff, which is 0xffff0000 read little-endian (HostTo swaps it on
// big-endian hosts, and is a no-op elsewhere).
func v4MappedPrefix(at ...int16) asm.Instructions {
	insns := asm.Instructions{
		asm.Mov.Imm32(asm.R2, -0x10000),
		asm.HostTo(asm.LE, asm.R2, asm.Word),
	}
	for _, off := range at {
		insns = append(insns,
			asm.StoreImm(asm.RFP, off, 0, asm.Word),
			asm.StoreImm(asm.RFP, off+4, 0, asm.Word),
			asm.StoreMem(asm.RFP, off+8, asm.R2, asm.Word),
		)
	}
	return insns
}

// lookupLocal jumps to local when the local key's address is in the local
// trie.
func lookupLocal(local string) asm.Instructions {
	return asm.Instructions{
		asm.StoreImm(asm.RFP, stLocalKey, 128, asm.Word),
		asm.LoadMapPtr(asm.R1, 0).WithReference(mapLocal),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stLocalKey),
		asm.FnMapLookupElem.Call(),
		asm.JNE.Imm(asm.R0, 0, local),
	}
}

// sockAddrPort stores the destination port as the ports array's key:
// user_port as it sits in memory, network byte order in the low half.
func sockAddrPort() asm.Instructions {
	return asm.Instructions{
		asm.LoadMem(asm.R2, rCtx, offUserPort, asm.Word),
		asm.StoreMem(asm.RFP, stScratch, asm.R2, asm.Word),
	}
}

// portClass sets rA to the class of the port keyed at stScratch (0 when
// the port has none).
func portClass() asm.Instructions {
	return asm.Instructions{
		asm.LoadMapPtr(asm.R1, 0).WithReference(mapPorts),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stScratch),
		asm.FnMapLookupElem.Call(),
		asm.Mov.Imm(rA, 0),
		asm.JEq.Imm(asm.R0, 0, "classed"),
		asm.LoadMem(rA, asm.R0, 0, asm.Word),
		asm.And.Imm(rA, 0xff),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("classed"),
	}
}

// socketTransport sets rB to the socket's transport: 0 stream, 1 UDP, 2
// anything else.
func socketTransport() asm.Instructions {
	return asm.Instructions{
		asm.Mov.Imm(rB, transportTCP),
		asm.LoadMem(asm.R2, rCtx, offType, asm.Word),
		asm.JEq.Imm(asm.R2, sockStream, "transported"),
		asm.Mov.Imm(rB, transportOther),
		asm.LoadMem(asm.R2, rCtx, offProtocol, asm.Word),
		asm.JNE.Imm(asm.R2, ipprotoUDP, "transported"),
		asm.Mov.Imm(rB, transportUDP),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("transported"),
	}
}

// lookupVerdict looks (class rA, transport rB, the rules key's address)
// up in the rules trie and leaves the verdict's action in rA and its
// interface index in rB. With no verdict it jumps to none: fail closed.
func lookupVerdict(none string) asm.Instructions {
	return asm.Instructions{
		// Bytes class, transport, 0, 0 of the key's first data word.
		asm.LSh.Imm(rB, 8),
		asm.Or.Reg(rB, rA),
		asm.HostTo(asm.LE, rB, asm.Word),
		asm.StoreMem(asm.RFP, stRulesCP, rB, asm.Word),
		asm.StoreImm(asm.RFP, stRulesKey, rulesKeyBits, asm.Word),
		asm.LoadMapPtr(asm.R1, 0).WithReference(mapRules),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stRulesKey),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, none),
		asm.LoadMem(rA, asm.R0, 0, asm.Word),
		asm.LoadMem(rB, asm.R0, 4, asm.Word),
	}
}

// pinTo jumps to set to bind the socket to rB, the verdict's interface,
// or to allow when it is already pinned there.
func pinTo() asm.Instructions {
	return asm.Instructions{
		asm.LoadMem(asm.R1, rCtx, offSk, asm.DWord),
		asm.LoadMem(asm.R2, asm.R1, offBoundDevIf, asm.Word),
		asm.JEq.Reg(asm.R2, rB, "allow"),
		asm.Mov.Reg(rA, asm.R2), // the old pin, for setPin
		asm.Ja.Label("set"),
	}
}

// unpinOurs, entered at "unpin", jumps to set with rB 0 (unbind) when one
// of ours (the interfaces exec pins to) holds the socket, and to allow
// otherwise: a socket bound to any other device was bound by the program
// itself.
func unpinOurs(ours []int) asm.Instructions {
	insns := asm.Instructions{
		asm.LoadMem(asm.R1, rCtx, offSk, asm.DWord).WithSymbol("unpin"),
		asm.LoadMem(asm.R2, asm.R1, offBoundDevIf, asm.Word),
		asm.Mov.Reg(rA, asm.R2),
		asm.Mov.Imm(rB, 0),
	}
	for _, idx := range ours {
		insns = append(insns, asm.JEq.Imm(asm.R2, int32(idx), "set"))
	}
	return append(insns, asm.Ja.Label("allow"))
}

// setPin binds the socket to rB with SO_BINDTOIFINDEX (0 unbinds). If
// the kernel refuses, so does the program: the socket never leaves the
// wrong way. A sendmsg program also refuses the datagram it sees when the
// socket had a pin (rA), which the kernel routed that datagram by; an
// unbound socket's datagram follows the routing table, and the egress
// program passes it only if that is the NIC the rule names.
func setPin(sendmsg bool) asm.Instructions {
	insns := asm.Instructions{asm.StoreMem(asm.RFP, stIfindex, rB, asm.Word).WithSymbol("set")}
	insns = append(insns, bindToIfindex()...)
	insns = append(insns, asm.JNE.Imm(asm.R0, 0, "deny"))
	if sendmsg {
		insns = append(insns,
			asm.JEq.Imm(rA, 0, "allow"),
			asm.Ja.Label("deny"),
		)
	}
	return insns
}

// bindToIfindex calls bpf_setsockopt(ctx, SOL_SOCKET, SO_BINDTOIFINDEX)
// with the index stored at stIfindex; R0 is its result.
func bindToIfindex() asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg(asm.R1, rCtx),
		asm.Mov.Imm(asm.R2, solSocket),
		asm.Mov.Imm(asm.R3, soBindToIfindex),
		asm.Mov.Reg(asm.R4, asm.RFP),
		asm.Add.Imm(asm.R4, stIfindex),
		asm.Mov.Imm(asm.R5, 4),
		asm.FnSetsockopt.Call(),
	}
}

// allowOrDeny are the two ends: "allow" returns 1 (go on), "deny" 0
// (EPERM, or for a packet, drop).
func allowOrDeny() asm.Instructions {
	return asm.Instructions{
		asm.Mov.Imm(asm.R0, 1).WithSymbol("allow"),
		asm.Return(),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("deny"),
		asm.Return(),
	}
}

// mapSpecs are the maps the programs look up, sized for the policy.
func mapSpecs(rulesEntries, localEntries int) map[string]*ebpf.MapSpec {
	return map[string]*ebpf.MapSpec{
		mapRules: {
			Name: mapRules, Type: ebpf.LPMTrie, KeySize: rulesKeySize, ValueSize: 8,
			MaxEntries: uint32(max(rulesEntries, 1)), Flags: bpfFNoPrealloc,
		},
		mapLocal: {
			Name: mapLocal, Type: ebpf.LPMTrie, KeySize: localKeySize, ValueSize: 4,
			MaxEntries: uint32(max(localEntries, 1)), Flags: bpfFNoPrealloc,
		},
		mapPorts: {
			Name: mapPorts, Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 65536,
		},
		mapDrops: dropsSpec.Copy(),
	}
}

// bpfFNoPrealloc is BPF_F_NO_PREALLOC, which LPM tries require.
const bpfFNoPrealloc = 1
