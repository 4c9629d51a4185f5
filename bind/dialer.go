package bind

import (
	"context"
	"fmt"
	"net"
	"net/netip"
)

// Options are the per-NIC extras from the config, applied after the pin.
type Options struct {
	// Source, when valid, is bound as the source address of sockets of its
	// family before connect.
	Source netip.Addr
	// Mark, when non-zero, is set as SO_MARK (Linux; needs CAP_NET_ADMIN).
	Mark uint32
}

// Dialer dials TCP and UDP through one NIC. It fails closed: when the socket
// cannot be pinned (NIC missing or down, permission, bind error) the dial
// fails; it never leaves through whatever NIC the routing table prefers.
type Dialer struct {
	NIC     string
	Options Options
	// Links reports the NIC's state before each dial; nil asks the kernel.
	Links Links
}

// NewDialer returns a Dialer for nic that looks the NIC up in links.
func NewDialer(nic string, opts Options, links Links) *Dialer {
	return &Dialer{NIC: nic, Options: opts, Links: links}
}

// DialContext connects to address through the Dialer's NIC. The context
// bounds the whole dial, so its deadline is the dial timeout. Failures are
// *DialError values whose Kind tells them apart.
func (d *Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	ready, err := d.Check(network, address)
	if err != nil {
		return nil, err
	}
	return d.DialChecked(ctx, ready, network, address)
}

// Checked is the NIC as Check found it: present and up. Only Check makes
// one, and only the Dialer that made it accepts it, so no caller can hand
// DialChecked a link of another NIC, or none at all.
type Checked struct {
	dialer *Dialer
	link   Link
}

// DialChecked is DialContext through a NIC Check has just found ready, for
// callers that check the NIC before other work (resolving a name) and
// should not look it up again for every address they try. The kernel still
// refuses a NIC that went down in between: the pin fails closed. A Checked
// from another Dialer (or the zero value) fails with ErrNICMissing.
func (d *Dialer) DialChecked(ctx context.Context, ready Checked, network, address string) (net.Conn, error) {
	if ready.dialer != d {
		return nil, &DialError{NIC: d.NIC, Network: network, Address: address, Kind: ErrNICMissing,
			Err: fmt.Errorf("interface %s was not checked by this dialer", d.NIC)}
	}
	dialer := net.Dialer{Control: d.control(ready.link, true)}
	conn, err := dialer.DialContext(ctx, network, address)
	if err != nil {
		return nil, d.dialError(network, address, err)
	}
	return conn, nil
}

// ListenPacket opens an unconnected UDP socket pinned to the Dialer's NIC,
// for relaying datagrams to several destinations (SOCKS5 UDP ASSOCIATE).
// address is the local address; when it has no host and the NIC has a source
// address of network's family, that source is used.
func (d *Dialer) ListenPacket(ctx context.Context, network, address string) (net.PacketConn, error) {
	ready, err := d.Check(network, address)
	if err != nil {
		return nil, err
	}
	// Source binding is left to the standard library's own bind(2) here:
	// Go binds the local address after Control, and binding twice fails.
	if d.Options.Source.IsValid() {
		if host, port, splitErr := net.SplitHostPort(address); splitErr == nil && host == "" &&
			(network == "udp" || (network == "udp4") == d.Options.Source.Is4()) {
			address = net.JoinHostPort(d.Options.Source.String(), port)
		}
	}
	lc := net.ListenConfig{Control: d.control(ready.link, false)}
	pc, err := lc.ListenPacket(ctx, network, address)
	if err != nil {
		return nil, d.dialError(network, address, err)
	}
	return pc, nil
}

// Check reports, without making a socket, whether the NIC can carry a dial
// now, and returns what DialChecked needs: a *DialError of kind
// ErrNICMissing or ErrNICDown when it cannot. Callers that must do work
// before dialing (resolve a name) check first, so a missing NIC is reported
// as missing rather than as a failed lookup.
func (d *Dialer) Check(network, address string) (Checked, error) {
	links := d.Links
	if links == nil {
		links = SystemLinks{}
	}
	link, err := links.Link(d.NIC)
	if err != nil {
		return Checked{}, d.dialError(network, address, err)
	}
	if link.Name != d.NIC || link.Index < 1 {
		return Checked{}, &DialError{NIC: d.NIC, Network: network, Address: address, Kind: ErrNICMissing,
			Err: fmt.Errorf("interface %s: looked up as %q, index %d", d.NIC, link.Name, link.Index)}
	}
	if !link.Up {
		return Checked{}, &DialError{NIC: d.NIC, Network: network, Address: address, Kind: ErrNICDown}
	}
	return Checked{dialer: d, link: link}, nil
}

// control pins to the link, then marks, then (for dials) binds the source.
func (d *Dialer) control(link Link, bindSourceAddr bool) Control {
	controls := []Control{pinToInterface(link.Name, link.Index)}
	if d.Options.Mark != 0 {
		controls = append(controls, setMark(d.Options.Mark))
	}
	if bindSourceAddr && d.Options.Source.IsValid() {
		controls = append(controls, bindSource(d.Options.Source))
	}
	return Chain(controls...)
}

func (d *Dialer) dialError(network, address string, err error) error {
	return NewDialError(d.NIC, network, address, err)
}
