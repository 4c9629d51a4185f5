package cgroup

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"nicproxy/bind"
)

// alwaysLocal are destinations on the host whatever its addresses:
// loopback, and the unspecified addresses, which connect(2) takes to mean
// this host.
var alwaysLocal = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("0.0.0.0/32"),
	netip.MustParsePrefix("::/128"),
}

// LocalPrefixes are the destinations the programs leave alone now:
// loopback and every address of the host's NICs.
func LocalPrefixes() ([]netip.Prefix, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("list the host's addresses: %w", err)
	}
	out := append([]netip.Prefix(nil), alwaysLocal...)
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(ipn.IP); ok {
				ip = ip.Unmap()
				out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
			}
		}
	}
	return out, nil
}

// WatchLocal keeps the programs' local addresses in step with the host's
// until ctx ends, so an address added while the command runs (DHCP, a VPN)
// is reached directly and not through a NIC, and one that left is pinned
// again. It follows bind.AddrWatcher, which subscribes again and re-lists
// when notifications are lost. errs gets what it cannot apply; it returns
// once its watcher has stopped.
func (p *Programs) WatchLocal(ctx context.Context, errs func(error)) error {
	w, err := bind.NewAddrWatcher()
	if err != nil {
		return fmt.Errorf("watch the host's addresses: %w", err)
	}
	applied := map[netip.Addr]bool{}
	sync := func() {
		now := w.Addrs()
		for a := range now {
			if !applied[a] {
				if err := p.AddLocal(netip.PrefixFrom(a, a.BitLen())); err != nil {
					errs(err)
				}
			}
		}
		for a := range applied {
			if !now[a] && !a.IsLoopback() && !a.IsUnspecified() {
				if err := p.RemoveLocal(netip.PrefixFrom(a, a.BitLen())); err != nil {
					errs(err)
				}
			}
		}
		applied = now
	}
	if err := w.Run(ctx, sync); err != nil && ctx.Err() == nil {
		errs(err)
	}
	return nil
}
