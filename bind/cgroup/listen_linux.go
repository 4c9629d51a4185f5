package cgroup

import "github.com/cilium/ebpf/asm"

// A listener's accepted sockets meet none of the socket hooks: the kernel
// clones them from the listener, and routes the SYN-ACK from the request
// before any exists. Pinned with the listener, they answer through the
// listener's NIC; unpinned, they answer by the routing table, which the
// egress program then holds to the rules (dropping a reply through
// another NIC). So the sock_ops program pins a TCP listener, when it
// starts listening, to the default verdict's NIC, unless it listens on
// loopback only or is bound to a device already. The price: a listener
// pinned to a NIC takes no connections from the host itself.

// Offsets in struct bpf_sock_ops, the context of sock_ops programs.
const (
	offOpsOp       = 0
	offOpsFamily   = 20
	offOpsLocalIP4 = 28
	offOpsLocalIP6 = 48
	offOpsSk       = 184
)

// Kernel constants the sock_ops program uses.
const (
	sockOpsTCPListen = 11 // BPF_SOCK_OPS_TCP_LISTEN_CB
	afInet6          = 10 // AF_INET6
)

// listenProgram builds the sock_ops program that pins listeners to pin
// (a Pin verdict); with no pin it does nothing.
func listenProgram(pin Verdict) asm.Instructions {
	if pin.Action != Pin {
		return asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()}
	}
	insns := asm.Instructions{
		asm.Mov.Reg(rCtx, asm.R1),
		asm.LoadMem(asm.R2, rCtx, offOpsOp, asm.Word),
		asm.JNE.Imm(asm.R2, sockOpsTCPListen, "allow"),
		// Bound to a device by the program itself: leave it.
		asm.LoadMem(asm.R1, rCtx, offOpsSk, asm.DWord),
		asm.JEq.Imm(asm.R1, 0, "allow"),
		asm.LoadMem(asm.R2, asm.R1, offBoundDevIf, asm.Word),
		asm.JNE.Imm(asm.R2, 0, "allow"),
		asm.LoadMem(asm.R2, rCtx, offOpsFamily, asm.Word),
		asm.JEq.Imm(asm.R2, afInet6, "v6"),
		asm.LoadMem(asm.R2, rCtx, offOpsLocalIP4, asm.Word),
		asm.Ja.Label("v4"),
	}
	// IPv6: ::1 is loopback; ::ffff:a.b.c.d is judged by a.
	insns = append(insns,
		asm.LoadMem(asm.R2, rCtx, offOpsLocalIP6, asm.Word).WithSymbol("v6"),
		asm.LoadMem(asm.R3, rCtx, offOpsLocalIP6+4, asm.Word),
		asm.Or.Reg(asm.R2, asm.R3),
		asm.JNE.Imm(asm.R2, 0, "set"),
		asm.LoadMem(asm.R3, rCtx, offOpsLocalIP6+8, asm.Word),
		asm.LoadMem(asm.R2, rCtx, offOpsLocalIP6+12, asm.Word),
		asm.JEq.Imm(asm.R3, 0, "v6low"),
		asm.Mov.Imm32(asm.R4, -0x10000),
		asm.HostTo(asm.LE, asm.R4, asm.Word),
		asm.JEq.Reg(asm.R3, asm.R4, "v4"),
		asm.Ja.Label("set"),
		asm.HostTo(asm.BE, asm.R2, asm.Word).WithSymbol("v6low"),
		asm.JEq.Imm(asm.R2, 1, "allow"),
		asm.Ja.Label("set"),
	)
	// IPv4 (in R2, network order): 127/8 is loopback.
	insns = append(insns,
		asm.HostTo(asm.BE, asm.R2, asm.Word).WithSymbol("v4"),
		asm.RSh.Imm32(asm.R2, 24),
		asm.JEq.Imm(asm.R2, 127, "allow"),

		asm.Mov.Imm(asm.R2, int32(pin.Index)).WithSymbol("set"),
		asm.StoreMem(asm.RFP, stIfindex, asm.R2, asm.Word),
	)
	insns = append(insns, bindToIfindex()...)
	// A listener that cannot be pinned still listens: egress holds its
	// replies to the rules.
	return append(insns,
		asm.Mov.Imm(asm.R0, 1).WithSymbol("allow"),
		asm.Return(),
	)
}
