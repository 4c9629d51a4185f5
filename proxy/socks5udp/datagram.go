// Package socks5udp encodes and decodes the header SOCKS5 puts in front of
// each UDP datagram relayed for a UDP ASSOCIATE (RFC 1928, section 7):
//
//	+----+------+------+----------+----------+----------+
//	|RSV | FRAG | ATYP | DST.ADDR | DST.PORT |   DATA   |
//	+----+------+------+----------+----------+----------+
//	| 2  |  1   |  1   | Variable |    2     | Variable |
package socks5udp

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// Address types.
const (
	atypIPv4   = 0x01
	atypDomain = 0x03
	atypIPv6   = 0x04
)

// Errors from Parse.
var (
	ErrShort      = errors.New("socks5 udp: datagram shorter than its header")
	ErrReserved   = errors.New("socks5 udp: reserved bytes are not zero")
	ErrFragmented = errors.New("socks5 udp: fragmented datagrams are not supported")
	ErrAddrType   = errors.New("socks5 udp: unknown address type")
	ErrDomain     = errors.New("socks5 udp: empty domain name")
)

// Destination is where a client's datagram is going: an address, or a
// domain name for the proxy to resolve.
type Destination struct {
	Addr netip.Addr // zero when Host is set
	Host string     // a domain name; "" when Addr is set
	Port uint16
}

// String renders the destination as host:port.
func (d Destination) String() string {
	if d.Host != "" {
		return d.Host + ":" + itoa(d.Port)
	}
	return netip.AddrPortFrom(d.Addr, d.Port).String()
}

// Parse splits a client's datagram into its destination and payload. The
// payload aliases b.
func Parse(b []byte) (Destination, []byte, error) {
	if len(b) < 4 {
		return Destination{}, nil, ErrShort
	}
	if b[0] != 0 || b[1] != 0 {
		return Destination{}, nil, ErrReserved
	}
	if b[2] != 0 {
		return Destination{}, nil, ErrFragmented
	}
	var d Destination
	rest := b[4:]
	switch b[3] {
	case atypIPv4:
		if len(rest) < 4+2 {
			return Destination{}, nil, ErrShort
		}
		d.Addr = netip.AddrFrom4([4]byte(rest[:4]))
		rest = rest[4:]
	case atypIPv6:
		if len(rest) < 16+2 {
			return Destination{}, nil, ErrShort
		}
		d.Addr = netip.AddrFrom16([16]byte(rest[:16])).Unmap()
		rest = rest[16:]
	case atypDomain:
		if len(rest) < 1 {
			return Destination{}, nil, ErrShort
		}
		n := int(rest[0])
		if n == 0 {
			return Destination{}, nil, ErrDomain
		}
		if len(rest) < 1+n+2 {
			return Destination{}, nil, ErrShort
		}
		d.Host = string(rest[1 : 1+n])
		rest = rest[1+n:]
	default:
		return Destination{}, nil, ErrAddrType
	}
	d.Port = binary.BigEndian.Uint16(rest[:2])
	return d, rest[2:], nil
}

// AppendHeader appends the header for a datagram that came from `from` to
// dst, ready for the payload to be appended after it.
func AppendHeader(dst []byte, from netip.AddrPort) []byte {
	dst = append(dst, 0, 0, 0)
	addr := from.Addr().Unmap()
	if addr.Is4() {
		a := addr.As4()
		dst = append(append(dst, atypIPv4), a[:]...)
	} else {
		a := addr.As16()
		dst = append(append(dst, atypIPv6), a[:]...)
	}
	return binary.BigEndian.AppendUint16(dst, from.Port())
}

func itoa(p uint16) string {
	var b [5]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + p%10)
		p /= 10
		if p == 0 {
			return string(b[i:])
		}
	}
}
