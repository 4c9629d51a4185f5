package cgroup

import (
	"errors"

	"golang.org/x/sys/unix"

	"nicproxy/bind"
)

// Doctor says whether `nicproxy exec` can work on this host, and why not:
// the kernel, a cgroup v2 hierarchy, and permission to load the programs
// (it loads them, attaching nothing). A host where exec cannot work is a
// warning: the proxy itself does not need it.
func Doctor() bind.NICReport {
	r := bind.NICReport{NIC: "exec (pin in the kernel)"}
	add := r.Add
	var uts unix.Utsname
	if err := unix.Uname(&uts); err == nil {
		add(bind.OK, "kernel", "%s (exec needs 5.7+ for clone3 into a cgroup and bpf_link)", unix.ByteSliceToString(uts.Release[:]))
	}
	switch m, err := FindHierarchy(); {
	case err != nil:
		add(bind.Warn, "cgroup2", "%v", err)
	case m == "":
		add(bind.OK, "cgroup2", "no cgroup v2 hierarchy mounted (cgroup v1 only); exec mounts one at %s", FallbackMount)
	default:
		add(bind.OK, "cgroup2", "hierarchy at %s", m)
	}
	// A pin verdict, so that every path of the programs meets the verifier.
	progs, err := Load(Policy{Default: Verdict{Action: Pin, NIC: "lo", Index: loopbackIfindex}}, nil)
	switch {
	case errors.Is(err, ErrPermission):
		add(bind.Warn, "bpf", "cannot load cgroup BPF programs: %v; run exec as root, or with CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN", err)
	case err != nil:
		add(bind.Warn, "bpf", "cannot load cgroup BPF programs: %v; this kernel may lack the cgroup/connect and sendmsg hooks", err)
	default:
		progs.Close()
		add(bind.OK, "bpf", "connect4/6, sendmsg4/6, bind4/6, sock_create and sock_ops programs load")
	}
	// exec fails closed without egress enforcement, so say it apart.
	if err := egressLoads(); err != nil {
		add(bind.Warn, "egress", "cannot load the cgroup_skb/egress program that drops packets leaving through another NIC than their rule names: %v; exec will not start commands", err)
	} else {
		add(bind.OK, "egress", "cgroup_skb/egress loads: packets leaving through another NIC than their rule names are dropped and counted")
	}
	return r
}
