package main

import (
	"fmt"

	"nicproxy/bind/sockdiag"
	"nicproxy/proxy/router"
)

// routePeer is who `route --from-pid PID` or `--unit NAME` says the
// client is; nil when neither was given (rules with unit, cgroup, uid or
// program then match nothing, as for a client the proxy cannot tell).
func routePeer(pid int, unit string) (*router.Peer, error) {
	switch {
	case pid != 0 && unit != "":
		return nil, usageError{"give --from-pid or --unit, not both"}
	case unit != "":
		return router.KnownPeer(-1, "", unit, ""), nil
	case pid == 0:
		return nil, nil
	case pid < 0:
		return nil, usageError{fmt.Sprintf("--from-pid %d: want a process id", pid)}
	}
	mount, err := sockdiag.FindMount()
	if err != nil {
		return nil, err
	}
	p, err := sockdiag.ProcessOf(pid, mount)
	if err != nil {
		return nil, err
	}
	return router.KnownPeer(int64(p.UID), p.Cgroup, p.Unit, p.Program), nil
}

// describePeer says who the client was taken to be, "?" for what is
// unknown.
func describePeer(p router.PeerInfo) string {
	if p.Err != "" {
		return "unknown (" + p.Err + "): unit, cgroup, uid and program rules match none"
	}
	or := func(s string) string {
		if s == "" {
			return "?"
		}
		return s
	}
	uid := "?"
	if p.UID >= 0 {
		uid = fmt.Sprint(p.UID)
	}
	return fmt.Sprintf("unit %s, cgroup %s, uid %s, program %s", or(p.Unit), or(p.Cgroup), uid, or(p.Program))
}
