package cgroup

import "github.com/cilium/ebpf/asm"

// The programs that pin a socket before it has a destination: when it is
// made (sock_create) and when it is bound (bind4, bind6).

// sockCreateProgram builds the cgroup/sock_create program. Stream sockets
// are left for connect to pin, so loopback connections keep working.
// Datagram and raw sockets are pinned before they can send anything,
// because a sendmsg program cannot change the device of the datagram it
// sees, and ICMP and raw sockets meet no other hook: UDP to udp (the
// default's verdict; with udpAtFirstUse, UDP is left for connect and
// sendmsg, see Policy.UDPAtFirstUse), the rest to other. An "other"
// verdict of System leaves the socket to the routing table (and the
// egress program); Reject refuses the socket itself. UDP is never refused
// here: connect and sendmsg judge it per destination.
func sockCreateProgram(udp, other Verdict, udpAtFirstUse bool) asm.Instructions {
	insns := asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, offSockType, asm.Word),
		asm.JEq.Imm(asm.R2, sockStream, "allow"),
		asm.LoadMem(asm.R2, asm.R1, offSockProto, asm.Word),
		asm.JNE.Imm(asm.R2, ipprotoUDP, "other"),
	}
	if !udpAtFirstUse && udp.Action == Pin {
		insns = append(insns,
			asm.Mov.Imm(asm.R2, int32(udp.Index)),
			asm.StoreMem(asm.R1, offBoundDevIf, asm.R2, asm.Word),
		)
	}
	insns = append(insns, asm.Ja.Label("allow"))
	switch other.Action {
	case Pin:
		insns = append(insns,
			asm.Mov.Imm(asm.R2, int32(other.Index)).WithSymbol("other"),
			asm.StoreMem(asm.R1, offBoundDevIf, asm.R2, asm.Word),
		)
	case Reject:
		insns = append(insns, asm.Mov.Imm(asm.R0, 0).WithSymbol("other"), asm.Return())
	default:
		insns = append(insns, asm.Mov.Imm(asm.R0, 1).WithSymbol("other"), asm.Return())
	}
	return append(insns,
		asm.Mov.Imm(asm.R0, 1).WithSymbol("allow"),
		asm.Return(),
	)
}

// bindProgram builds the bind4 or bind6 program: a socket bound to a
// loopback address is a server for the host itself, so a pin exec gave it
// at creation comes off (a UDP socket pinned to a NIC never receives from
// loopback, and cannot bind ::1 at all). Other addresses keep the pin.
func bindProgram(v6 bool, ours []int) asm.Instructions {
	if len(ours) == 0 {
		// exec pins nothing: there is nothing to take off.
		return asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()}
	}
	insns := asm.Instructions{asm.Mov.Reg(rCtx, asm.R1)}
	if v6 {
		// ::1, or ::ffff:127.x.y.z.
		insns = append(insns,
			asm.LoadMem(asm.R2, rCtx, offUserIP6, asm.Word),
			asm.LoadMem(asm.R3, rCtx, offUserIP6+4, asm.Word),
			asm.Or.Reg(asm.R2, asm.R3),
			asm.JNE.Imm(asm.R2, 0, "allow"),
			asm.LoadMem(asm.R2, rCtx, offUserIP6+8, asm.Word),
			asm.JEq.Imm(asm.R2, 0, "v6loopback"),
			asm.Mov.Imm32(asm.R3, -0x10000),
			asm.HostTo(asm.LE, asm.R3, asm.Word),
			asm.JNE.Reg(asm.R2, asm.R3, "allow"),
			asm.LoadMem(asm.R2, rCtx, offUserIP6+12, asm.Byte),
			asm.JEq.Imm(asm.R2, 127, "unpin"),
			asm.Ja.Label("allow"),
			asm.LoadMem(asm.R2, rCtx, offUserIP6+12, asm.Word).WithSymbol("v6loopback"),
			asm.Mov.Imm32(asm.R3, 1),
			asm.HostTo(asm.BE, asm.R3, asm.Word),
			asm.JEq.Reg(asm.R2, asm.R3, "unpin"),
			asm.Ja.Label("allow"),
		)
	} else {
		insns = append(insns,
			asm.LoadMem(asm.R2, rCtx, offUserIP4, asm.Byte),
			asm.JEq.Imm(asm.R2, 127, "unpin"),
			asm.Ja.Label("allow"),
		)
	}
	insns = append(insns, unpinOurs(ours)...)
	insns = append(insns, setPin(false)...)
	return append(insns, allowOrDeny()...)
}
