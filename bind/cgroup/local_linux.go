package cgroup

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
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
// is reached directly and not through a NIC. errs gets what it cannot
// apply; it returns once its goroutine has stopped.
func (p *Programs) WatchLocal(ctx context.Context, errs func(error)) error {
	updates := make(chan netlink.AddrUpdate, 64)
	done := make(chan struct{})
	report := func(err error) {
		// Closing the subscription makes its pending receive fail: that
		// is the end, not an error.
		if ctx.Err() == nil {
			errs(err)
		}
	}
	if err := netlink.AddrSubscribeWithOptions(updates, done, netlink.AddrSubscribeOptions{
		ErrorCallback: report,
		ListExisting:  true,
	}); err != nil {
		return fmt.Errorf("watch the host's addresses: %w", err)
	}
	defer func() {
		close(done)
		for range updates { // netlink closes it once its goroutine ends
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-updates:
			if !ok {
				return nil
			}
			ip, ok := netip.AddrFromSlice(u.LinkAddress.IP)
			if !ok {
				continue
			}
			ip = ip.Unmap()
			pre := netip.PrefixFrom(ip, ip.BitLen())
			var err error
			if u.NewAddr {
				err = p.AddLocal(pre)
			} else if !ip.IsLoopback() && !ip.IsUnspecified() {
				err = p.RemoveLocal(pre)
			}
			if err != nil {
				errs(err)
			}
		}
	}
}
