package bind

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

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
