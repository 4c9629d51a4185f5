package proxy

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestAdminRefusesNamesAgainstDNSRebinding(t *testing.T) {
	h := hostGuard(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	for host, want := range map[string]int{
		"127.0.0.1:9090":         http.StatusOK,
		"[::1]:9090":             http.StatusOK,
		"localhost:9090":         http.StatusOK,
		"192.0.2.7":              http.StatusOK,
		"rebind.example:9090":    http.StatusMisdirectedRequest,
		"127.0.0.1.nip.io:9090":  http.StatusMisdirectedRequest,
		"localhost.example:9090": http.StatusMisdirectedRequest,
	} {
		r := httptest.NewRequest("GET", "/api/status", nil)
		r.Host = host
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("Host %s: %d, want %d", host, w.Code, want)
		}
	}
}
