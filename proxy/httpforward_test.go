package proxy

import (
	"net/netip"
	"testing"

	"go.uber.org/zap/zaptest"

	"nicproxy/config"
	"nicproxy/proxy/router"
)

// TestStickyTransportsBounded: a sticky balance keeps one keep-alive pool
// per NIC picked, not one per client address ever seen (issue 17).
func TestStickyTransportsBounded(t *testing.T) {
	cfg, err := config.Parse("test.yaml", []byte("default: {balance: [eth0, eth1], strategy: sticky}\n"),
		config.Options{Interfaces: []string{"eth0", "eth1"}})
	if err != nil {
		t.Fatal(err)
	}
	s := New(cfg, zaptest.NewLogger(t), Options{})
	st := s.state.Load()
	defer st.http.close()
	d := router.Decision{Via: cfg.Default}
	picked := map[string]bool{}
	for i := range 1000 {
		client := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 40000)
		picked[st.dialer.StickyPick(d, client, "web.test")] = true
		st.http.transport(d, client, "web.test")
	}
	st.http.mu.Lock()
	n := len(st.http.transports)
	st.http.mu.Unlock()
	if n > len(cfg.Default.NICs) {
		t.Errorf("1000 clients of one sticky rule made %d keep-alive pools, want at most one per NIC (%d)", n, len(cfg.Default.NICs))
	}
	if len(picked) != 2 {
		t.Errorf("1000 clients were picked onto %v, want both NICs", picked)
	}
}
