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

// PacketConn opens an unconnected UDP socket for datagrams the decision
// routes: pinned to the first of its NICs that is present and up (healthy
// ones first; a balance's pick first), or unpinned for `system`. UDP has
// no handshake to fail over on, so the choice is made once, here.
// network is "udp4" or "udp6".
func (d *Dialer) PacketConn(ctx context.Context, network string, decision router.Decision, client netip.AddrPort, host string) (net.PacketConn, string, error) {
	if decision.Action == config.ActionReject {
		return nil, "", errors.New("rejected")
	}
	if decision.Via.Mode == config.ViaSystem {
		var lc net.ListenConfig
		pc, err := lc.ListenPacket(ctx, network, ":0")
		return pc, System, err
	}
	nics := decision.Via.NICs
	if len(nics) == 0 {
		return nil, "", fmt.Errorf("rule %s names no NIC", decision.RuleName)
	}
	if decision.Via.Mode == config.ViaBalance {
		nics = d.balancer.order(decision, client, host)
	}
	var lastErr error
	for _, name := range d.healthyFirst(nics) {
		pc, err := d.nic(name).dialer.ListenPacket(ctx, network, ":0")
		if err == nil {
			return pc, name, nil
		}
		lastErr = err
		if !errors.Is(err, bind.ErrNICMissing) && !errors.Is(err, bind.ErrNICDown) {
			break
		}
	}
	return nil, "", lastErr
}

// Lookup resolves host through nic (the system resolver for System), as a
// pinned dial through that NIC would.
func (d *Dialer) Lookup(ctx context.Context, nic, host string) ([]netip.Addr, error) {
	return d.addresses(ctx, d.Resolver(nic), Target{Host: host}, nil)
}
