package bind

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// kernelFamilies reads one NIC's addresses and IPv6 routes from netlink.
func kernelFamilies(name string) (Families, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return Families{}, fmt.Errorf("families of %s: %w", name, err)
	}
	defer h.Close()
	link, err := h.LinkByName(name)
	if err != nil {
		return Families{}, fmt.Errorf("families of %s: %w", name, err)
	}
	index := link.Attrs().Index
	all, err := listFamilies(h)
	if err != nil {
		return Families{}, fmt.Errorf("families of %s: %w", name, err)
	}
	f := all[index]
	f.Known = true
	return f, nil
}

// listFamilies reads every NIC's addresses and IPv6 routes, by link index.
// The entries' Known is left to the caller.
func listFamilies(h *netlink.Handle) (map[int]Families, error) {
	addrs, err := h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	// Every table: a NIC used with policy routing may have its IPv6
	// routes outside main.
	routes, err := h.RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list IPv6 routes: %w", err)
	}
	fams := map[int]Families{}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		f := fams[a.LinkIndex]
		switch ip = ip.Unmap(); {
		case ip.Is4():
			f.Addr4 = true
		case globalIPv6(ip) && a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) == 0:
			f.Addr6 = true
		}
		fams[a.LinkIndex] = f
	}
	for _, r := range routes {
		if r.Type != unix.RTN_UNICAST {
			continue // local, multicast, blackhole, unreachable: nothing leaves
		}
		if r.Dst != nil {
			dst, ok := netip.AddrFromSlice(r.Dst.IP)
			if !ok || dst.IsLinkLocalUnicast() || dst.IsMulticast() {
				continue
			}
		}
		indexes := []int{r.LinkIndex}
		for _, hop := range r.MultiPath {
			indexes = append(indexes, hop.LinkIndex)
		}
		for _, i := range indexes {
			if i > 0 {
				f := fams[i]
				f.Route6 = true
				fams[i] = f
			}
		}
	}
	return fams, nil
}
