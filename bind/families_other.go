//go:build !linux

package bind

import (
	"fmt"
	"net"
	"net/netip"
)

// kernelFamilies reads the NIC's addresses. Without netlink the routes are
// not read: a global IPv6 address is taken to come with its route.
func kernelFamilies(name string) (Families, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return Families{}, fmt.Errorf("interface %s: %w", name, err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return Families{}, fmt.Errorf("addresses of %s: %w", name, err)
	}
	f := Families{Known: true}
	for _, a := range addrs {
		ipnet, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipnet.IP)
		if !ok {
			continue
		}
		if ip = ip.Unmap(); ip.Is4() {
			f.Addr4 = true
		} else if globalIPv6(ip) {
			f.Addr6, f.Route6 = true, true
		}
	}
	return f, nil
}
