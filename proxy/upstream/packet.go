package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"nicproxy/bind"
	"nicproxy/config"
	"nicproxy/proxy/router"
)

// PacketRoute is where one destination's datagrams go: the NIC that
// carries them (System when unpinned) and the address they are sent to.
type PacketRoute struct {
	NIC  string
	Addr netip.Addr
}

// RoutePacket decides where datagrams for t go under decision, without
// making a socket. UDP has no handshake to fail over on, so the choice is
// made once, here: the first of the decision's NICs that is present and up
// (healthy ones first; a balance's pick first), and through it the address:
// the one a dst rule matched, the literal, or the name looked up through
// that NIC, IPv4 answers first. The address passes Options.CheckAddr, as
// every address a TCP dial tries does. A loopback address is System: it
// never leaves the host, whatever the rules say. The caller opens the
// socket with ListenPacket for exactly this NIC and the address's family,
// so an IPv6-only name is sent through the NIC that resolved it.
func (d *Dialer) RoutePacket(ctx context.Context, decision router.Decision, client netip.AddrPort, t Target) (PacketRoute, error) {
	if decision.Action == config.ActionReject {
		return PacketRoute{}, fmt.Errorf("route %s: rejected by rule %s", t, decision.RuleName)
	}
	if isLoopback(t) {
		return d.packetAddr(ctx, System, nil, t, nil)
	}
	if decision.Via.Mode == config.ViaSystem {
		return d.packetAddr(ctx, System, d.system, t, reusable(decision, System))
	}
	nics := decision.Via.NICs
	if len(nics) == 0 {
		return PacketRoute{}, fmt.Errorf("route %s: rule %s names no NIC", t, decision.RuleName)
	}
	if decision.Via.Mode == config.ViaBalance {
		nics = d.balancer.order(decision, client, t.Host)
	}
	var lastErr error
	for _, name := range d.healthyFirst(nics) {
		nd := d.nic(name)
		if _, err := nd.dialer.Check("udp", t.String()); err != nil {
			lastErr = err
			if errors.Is(err, bind.ErrNICMissing) || errors.Is(err, bind.ErrNICDown) {
				continue
			}
			break
		}
		return d.packetAddr(ctx, name, nd.resolver, t, reusable(decision, name))
	}
	return PacketRoute{}, lastErr
}

// packetAddr resolves t through nic's resolver and checks the address
// datagrams will be sent to.
func (d *Dialer) packetAddr(ctx context.Context, nic string, resolver Resolver, t Target, known *router.Lookup) (PacketRoute, error) {
	addrs, err := d.addresses(ctx, resolver, t, known)
	if err != nil {
		return PacketRoute{}, &bind.DialError{NIC: nic, Network: "udp", Address: t.String(), Kind: ErrResolve, Err: err}
	}
	a := addrs[0] // IPv4 first, as addresses orders them
	if err := d.check(a, t.Port); err != nil {
		return PacketRoute{}, err
	}
	if a.IsLoopback() {
		nic = System // a name that resolved to loopback never leaves the host
	}
	return PacketRoute{NIC: nic, Addr: a}, nil
}

// ListenPacket opens an unconnected UDP socket for datagrams through nic:
// pinned to it, or unpinned for System. network is "udp4" or "udp6".
func (d *Dialer) ListenPacket(ctx context.Context, nic, network string) (net.PacketConn, error) {
	if nic == System {
		var lc net.ListenConfig
		pc, err := lc.ListenPacket(ctx, network, ":0")
		if err != nil {
			return nil, fmt.Errorf("open an unpinned %s socket: %w", network, err)
		}
		return pc, nil
	}
	return d.nic(nic).dialer.ListenPacket(ctx, network, ":0")
}
