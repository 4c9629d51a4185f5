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
	fams, err := listAddrFamilies(h, nil)
	if err != nil {
		return nil, err
	}
	return listRouteFamilies(h, fams)
}

// listAddrFamilies sets Addr4 and Addr6 from the NICs' addresses in a copy
// of old (nil: none), keeping its Route6.
func listAddrFamilies(h *netlink.Handle, old map[int]Families) (map[int]Families, error) {
	addrs, err := h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	fams := make(map[int]Families, len(old))
	for i, f := range old {
		fams[i] = Families{Route6: f.Route6}
	}
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
	return fams, nil
}

// listRouteFamilies sets Route6 from the IPv6 routes in a copy of old,
// keeping its addresses.
func listRouteFamilies(h *netlink.Handle, old map[int]Families) (map[int]Families, error) {
	// Every table: a NIC used with policy routing may have its IPv6
	// routes outside main.
	routes, err := h.RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list IPv6 routes: %w", err)
	}
	fams := make(map[int]Families, len(old))
	for i, f := range old {
		f.Route6 = false
		fams[i] = f
	}
	for _, r := range routes {
		for _, i := range route6Links(r) {
			f := fams[i]
			f.Route6 = true
			fams[i] = f
		}
	}
	return fams, nil
}

// route6Links returns the links an IPv6 route can carry traffic off the
// host through: none for a route that is not unicast (local, multicast,
// blackhole, unreachable) or that reaches only link-local or multicast
// destinations.
func route6Links(r netlink.Route) []int {
	if r.Family != netlink.FAMILY_V6 && r.Family != 0 || r.Type != unix.RTN_UNICAST {
		return nil
	}
	if r.Dst != nil {
		dst, ok := netip.AddrFromSlice(r.Dst.IP)
		if !ok || dst.Is4() || dst.IsLinkLocalUnicast() || dst.IsMulticast() {
			return nil
		}
	}
	var links []int
	if r.LinkIndex > 0 {
		links = append(links, r.LinkIndex)
	}
	for _, hop := range r.MultiPath {
		if hop.LinkIndex > 0 {
			links = append(links, hop.LinkIndex)
		}
	}
	return links
}
