package bind

import (
	"net"
	"net/netip"
)

// listLocal lists the host's addresses through the kernel, each once. A
// listing that fails gives what it could read.
func listLocal() map[netip.Addr]bool {
	addrs, _ := net.InterfaceAddrs()
	out := make(map[netip.Addr]bool, len(addrs))
	for _, addr := range addrs {
		if p, ok := addr.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(p.IP); ok {
				out[ip.Unmap()] = true
			}
		}
	}
	return out
}
