package bind

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestNameservers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resolv.conf")
	conf := "# written by systemd-resolved\nnameserver 192.0.2.53\nnameserver 127.0.0.53\nnameserver 2001:db8::53\nnameserver fe80::1%eth0\nsearch example\nnameserver bogus\n"
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	want := []netip.AddrPort{netip.MustParseAddrPort("192.0.2.53:53"), netip.MustParseAddrPort("[2001:db8::53]:53")}
	if got := nameservers(path); !slices.Equal(got, want) {
		t.Errorf("nameservers = %v, want %v", got, want)
	}
	if got := nameservers(filepath.Join(t.TempDir(), "missing")); got != nil {
		t.Errorf("missing file: %v", got)
	}
}

// A loopback stub with no known upstream must fail, naming the fix, and
// never be dialed unpinned.
func TestResolverRefusesLoopbackStub(t *testing.T) {
	d := NewDialer("nicproxy-none0", Options{}, nil)
	r := d.resolver(nil, filepath.Join(t.TempDir(), "missing"))
	_, err := r.Dial(context.Background(), "udp", "127.0.0.53:53")
	if !errors.Is(err, ErrNoRoute) || !strings.Contains(err.Error(), "set interfaces.nicproxy-none0.dns") {
		t.Errorf("got %v, want ErrNoRoute naming interfaces.nicproxy-none0.dns", err)
	}
	// A non-loopback server is dialed through the NIC (missing here).
	_, err = r.Dial(context.Background(), "udp", "192.0.2.53:53")
	if !errors.Is(err, ErrNICMissing) {
		t.Errorf("got %v, want ErrNICMissing", err)
	}
}
