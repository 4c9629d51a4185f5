package admin

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestAdminRefusesNamesAgainstDNSRebinding(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	hostOwns := func(a netip.Addr) bool { return a.IsLoopback() || a == netip.MustParseAddr("192.0.2.7") }
	for _, tt := range []struct {
		listen string
		hosts  map[string]int
	}{
		{"127.0.0.1", map[string]int{
			"127.0.0.1:9090":         http.StatusOK,
			"localhost:9090":         http.StatusOK,
			"[::ffff:127.0.0.1]":     http.StatusOK,
			"[::1]:9090":             http.StatusMisdirectedRequest, // not where it listens
			"192.0.2.7":              http.StatusMisdirectedRequest,
			"0.0.0.0:9090":           http.StatusMisdirectedRequest,
			"[::]:9090":              http.StatusMisdirectedRequest,
			"rebind.example:9090":    http.StatusMisdirectedRequest,
			"127.0.0.1.nip.io:9090":  http.StatusMisdirectedRequest,
			"localhost.example:9090": http.StatusMisdirectedRequest,
		}},
		{"::", map[string]int{
			"[::1]:9090":    http.StatusOK,
			"192.0.2.7":     http.StatusOK, // the host's own address
			"198.51.100.10": http.StatusMisdirectedRequest,
			"0.0.0.0:9090":  http.StatusMisdirectedRequest,
			"[::]:9090":     http.StatusMisdirectedRequest,
		}},
	} {
		h := hostGuard(netip.MustParseAddr(tt.listen), hostOwns, ok)
		for host, want := range tt.hosts {
			r := httptest.NewRequest("GET", "/api/status", nil)
			r.Host = host
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != want {
				t.Errorf("listening on %s, Host %s: %d, want %d", tt.listen, host, w.Code, want)
			}
		}
	}
}
