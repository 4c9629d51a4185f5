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
	const (
		ctx = asm.R6
		a   = asm.R7
		b   = asm.R8
	)
	insns := asm.Instructions{asm.Mov.Reg(ctx, asm.R1)}

	// The destination, as a 16-byte address in both keys (IPv4 mapped).
	if v6 {
		for i := int16(0); i < 4; i++ {
			insns = append(insns,
				asm.LoadMem(asm.R2, ctx, offUserIP6+4*i, asm.Word),
				asm.StoreMem(asm.RFP, stRulesIP+4*i, asm.R2, asm.Word),
				asm.StoreMem(asm.RFP, stLocalIP+4*i, asm.R2, asm.Word),
			)
		}
	} else {
		// ::ffff:a.b.c.d: the third word holds the bytes 00 00 ff ff,
		// which is 0xffff0000 read little-endian (HostTo swaps it on
		// big-endian hosts, and is a no-op elsewhere).
		insns = append(insns,
			asm.Mov.Imm32(asm.R2, -0x10000),
			asm.HostTo(asm.LE, asm.R2, asm.Word),
			asm.StoreImm(asm.RFP, stRulesIP, 0, asm.Word),
			asm.StoreImm(asm.RFP, stRulesIP+4, 0, asm.Word),
			asm.StoreMem(asm.RFP, stRulesIP+8, asm.R2, asm.Word),
			asm.StoreImm(asm.RFP, stLocalIP, 0, asm.Word),
			asm.StoreImm(asm.RFP, stLocalIP+4, 0, asm.Word),
			asm.StoreMem(asm.RFP, stLocalIP+8, asm.R2, asm.Word),
			asm.LoadMem(asm.R2, ctx, offUserIP4, asm.Word),
			asm.StoreMem(asm.RFP, stRulesIP+12, asm.R2, asm.Word),
			asm.StoreMem(asm.RFP, stLocalIP+12, asm.R2, asm.Word),
		)
	}

	// Local destination?
	insns = append(insns,
		asm.StoreImm(asm.RFP, stLocalKey, 128, asm.Word),
		asm.LoadMapPtr(asm.R1, 0).WithReference(mapLocal),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stLocalKey),
		asm.FnMapLookupElem.Call(),
		asm.JNE.Imm(asm.R0, 0, "unpin"),
	)

	// Port class (0 when the port has none).
	insns = append(insns,
		asm.LoadMem(asm.R2, ctx, offUserPort, asm.Word),
		asm.StoreMem(asm.RFP, stScratch, asm.R2, asm.Word),
		asm.LoadMapPtr(asm.R1, 0).WithReference(mapPorts),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stScratch),
		asm.FnMapLookupElem.Call(),
		asm.Mov.Imm(a, 0),
		asm.JEq.Imm(asm.R0, 0, "transport"),
		asm.LoadMem(a, asm.R0, 0, asm.Word),
		asm.And.Imm(a, 0xff),

		// Transport: 0 stream, 1 UDP, 2 anything else.
		asm.Mov.Imm(b, transportTCP).WithSymbol("transport"),
		asm.LoadMem(asm.R2, ctx, offType, asm.Word),
		asm.JEq.Imm(asm.R2, sockStream, "key"),
		asm.Mov.Imm(b, transportOther),
		asm.LoadMem(asm.R2, ctx, offProtocol, asm.Word),
		asm.JNE.Imm(asm.R2, ipprotoUDP, "key"),
		asm.Mov.Imm(b, transportUDP),

		// Bytes class, transport, 0, 0 of the key's first data word.
		asm.LSh.Imm(b, 8).WithSymbol("key"),
		asm.Or.Reg(b, a),
		asm.HostTo(asm.LE, b, asm.Word),
		asm.StoreMem(asm.RFP, stRulesCP, b, asm.Word),
		asm.StoreImm(asm.RFP, stRulesKey, rulesKeyBits, asm.Word),
		asm.LoadMapPtr(asm.R1, 0).WithReference(mapRules),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stRulesKey),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "deny"), // no verdict: fail closed
		asm.LoadMem(a, asm.R0, 0, asm.Word),
		asm.LoadMem(b, asm.R0, 4, asm.Word),
		asm.JEq.Imm(a, int32(Reject), "deny"),
		asm.JEq.Imm(a, int32(System), "unpin"),

		// Pin to b unless already pinned there.
		asm.LoadMem(asm.R1, ctx, offSk, asm.DWord),
		asm.LoadMem(asm.R2, asm.R1, offBoundDevIf, asm.Word),
		asm.JEq.Reg(asm.R2, b, "allow"),
		asm.Ja.Label("set"),

		// Unpin if exec pinned it: bound to one of ours.
		asm.LoadMem(asm.R1, ctx, offSk, asm.DWord).WithSymbol("unpin"),
		asm.LoadMem(asm.R2, asm.R1, offBoundDevIf, asm.Word),
		asm.Mov.Imm(b, 0),
	)
	for _, idx := range ours {
		insns = append(insns, asm.JEq.Imm(asm.R2, int32(idx), "set"))
	}
	insns = append(insns,
		asm.Ja.Label("allow"),

		asm.StoreMem(asm.RFP, stIfindex, b, asm.Word).WithSymbol("set"),
		asm.Mov.Reg(asm.R1, ctx),
		asm.Mov.Imm(asm.R2, solSocket),
		asm.Mov.Imm(asm.R3, soBindToIfindex),
		asm.Mov.Reg(asm.R4, asm.RFP),
		asm.Add.Imm(asm.R4, stIfindex),
		asm.Mov.Imm(asm.R5, 4),
		asm.FnSetsockopt.Call(),
		asm.JNE.Imm(asm.R0, 0, "deny"),
	)
	if sendmsg {
		// This datagram was routed by the old pin: refuse it.
		insns = append(insns, asm.Ja.Label("deny"))
	}
	insns = append(insns,
		asm.Mov.Imm(asm.R0, 1).WithSymbol("allow"),
		asm.Return(),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("deny"),
		asm.Return(),
	)
	return insns
}

// sockCreateProgram builds the cgroup/sock_create program. Stream sockets
// are left for connect to pin, so loopback connections keep working. Every
// other socket (UDP, ICMP, raw) is pinned to the creation verdict before it
// can send anything, because a sendmsg program cannot change the device of
// the datagram it sees and raw and ICMP sockets meet no other hook. When
// the creation verdict rejects, sockets other than UDP (which sendmsg and
// connect judge per destination) cannot be created at all.
func sockCreateProgram(create Verdict) asm.Instructions {
	insns := asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, offSockType, asm.Word),
		asm.JEq.Imm(asm.R2, sockStream, "allow"),
	}
	switch create.Action {
	case Pin:
		insns = append(insns,
			asm.Mov.Imm(asm.R2, int32(create.Index)),
			asm.StoreMem(asm.R1, offBoundDevIf, asm.R2, asm.Word),
		)
	case Reject:
		insns = append(insns,
			asm.LoadMem(asm.R2, asm.R1, offSockProto, asm.Word),
			asm.JEq.Imm(asm.R2, ipprotoUDP, "allow"),
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		)
	}
	return append(insns,
		asm.Mov.Imm(asm.R0, 1).WithSymbol("allow"),
		asm.Return(),
	)
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
	}
}

// bpfFNoPrealloc is BPF_F_NO_PREALLOC, which LPM tries require.
const bpfFNoPrealloc = 1
