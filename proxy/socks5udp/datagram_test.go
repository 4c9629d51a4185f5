package socks5udp

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    string
		payload string
		err     error
	}{
		{"ipv4", []byte{0, 0, 0, 1, 198, 51, 100, 10, 0, 53, 'h', 'i'}, "198.51.100.10:53", "hi", nil},
		{"ipv6", append([]byte{0, 0, 0, 4, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 187}, 'x'), "[2001:db8::1]:443", "x", nil},
		{"domain", []byte{0, 0, 0, 3, 8, 'w', 'e', 'b', '.', 't', 'e', 's', 't', 0, 80}, "web.test:80", "", nil},
		{"fragment", []byte{0, 0, 1, 1, 1, 2, 3, 4, 0, 53}, "", "", ErrFragmented},
		{"reserved", []byte{0, 1, 0, 1, 1, 2, 3, 4, 0, 53}, "", "", ErrReserved},
		{"bad type", []byte{0, 0, 0, 9, 1, 2, 3, 4, 0, 53}, "", "", ErrAddrType},
		{"short ipv4", []byte{0, 0, 0, 1, 1, 2, 3}, "", "", ErrShort},
		{"short domain", []byte{0, 0, 0, 3, 9, 'a'}, "", "", ErrShort},
		{"empty domain", []byte{0, 0, 0, 3, 0, 0, 53}, "", "", ErrDomain},
		{"empty", nil, "", "", ErrShort},
	}
	for _, tt := range tests {
		d, payload, err := Parse(tt.in)
		if !errors.Is(err, tt.err) {
			t.Errorf("%s: error %v, want %v", tt.name, err, tt.err)
			continue
		}
		if err == nil && (d.String() != tt.want || string(payload) != tt.payload) {
			t.Errorf("%s: %s %q, want %s %q", tt.name, d, payload, tt.want, tt.payload)
		}
	}
}

func TestAppendHeaderRoundTrips(t *testing.T) {
	for _, from := range []string{"198.51.100.10:53", "[2001:db8::1]:443", "[::ffff:192.0.2.1]:9"} {
		ap := netip.MustParseAddrPort(from)
		b := append(AppendHeader(nil, ap), "data"...)
		d, payload, err := Parse(b)
		if err != nil || d.Addr != ap.Addr().Unmap() || d.Port != ap.Port() || string(payload) != "data" {
			t.Errorf("%s: %v %s %q", from, err, d, payload)
		}
	}
}

// FuzzParse: never panics; what it accepts re-encodes to the same header
// (for address destinations) and the payload is the datagram's tail.
func FuzzParse(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 198, 51, 100, 10, 0, 53, 'h', 'i'})
	f.Add([]byte{0, 0, 0, 3, 3, 'a', '.', 'b', 0, 80})
	f.Add([]byte{0, 0, 0, 4, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 187})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, payload, err := Parse(b)
		if err != nil {
			return
		}
		if !bytes.HasSuffix(b, payload) {
			t.Fatalf("payload %x is not the tail of %x", payload, b)
		}
		if d.Host == "" && b[3] == atypIPv4 {
			again := append(AppendHeader(nil, netip.AddrPortFrom(d.Addr, d.Port)), payload...)
			if !bytes.Equal(again, b) {
				t.Fatalf("re-encoded %x, parsed from %x", again, b)
			}
		}
	})
}
