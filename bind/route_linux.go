package bind

import (
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// DefaultRouteInterface names the NIC the kernel would pick for traffic with
// no more specific route: the IPv4 default route with the lowest metric in
// the main table, or failing that the IPv6 one.
//
// It asks netlink rather than parsing /proc/net/route: netlink gives IPv6 and
// metrics in the same shape, and the same library watches links for hot-plug.
func DefaultRouteInterface() (string, error) {
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := netlink.RouteListFiltered(family,
			&netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return "", fmt.Errorf("list routes: %w", err)
		}
		best, bestIndex := -1, 0
		for _, r := range routes {
			if !isDefault(r) || r.LinkIndex == 0 {
				continue
			}
			if best == -1 || r.Priority < best {
				best, bestIndex = r.Priority, r.LinkIndex
			}
		}
		if best != -1 {
			ifi, err := net.InterfaceByIndex(bestIndex)
			if err != nil {
				return "", fmt.Errorf("default route interface %d: %w", bestIndex, err)
			}
			return ifi.Name, nil
		}
	}
	return "", fmt.Errorf("no default route")
}

func isDefault(r netlink.Route) bool {
	if r.Dst == nil {
		return true
	}
	ones, _ := r.Dst.Mask.Size()
	return ones == 0
}
