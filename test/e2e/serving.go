package e2e

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"nicproxy/test/netlab"
)

// Serving is a lab with web, echo and DNS servers upstream; names
// resolve only through the lab's DNS server (web.test), reached through a
// NIC.
type Serving struct {
	Lab  *netlab.Lab
	Web  *netlab.Web
	Echo *netlab.Echo
}

// StartServing builds the lab and starts its servers.
func StartServing(t *testing.T) Serving {
	t.Helper()
	lab := netlab.New(t)
	s := Serving{Lab: lab, Web: lab.StartWeb(), Echo: lab.StartEcho()}
	lab.UseDNS(lab.StartDNS(map[string]netip.Addr{"web.test": netlab.Server}))
	return s
}

// URL is scheme://host:port/path on web's port for the scheme.
func URL(web *netlab.Web, scheme, host, path string) string {
	port := web.HTTP.Port()
	if scheme == "https" {
		port = web.HTTPS.Port()
	}
	return fmt.Sprintf("%s://%s:%d%s", scheme, host, port, path)
}

// CurlUpload POSTs a random payload to url (web's /echo) with curl in the
// lab's host, checks the echo, and returns the client address the web
// server saw and the bytes uploaded.
func CurlUpload(t *testing.T, lab *netlab.Lab, web *netlab.Web, env []string, url string, args ...string) (seen netip.Addr, sent int) {
	t.Helper()
	dir := t.TempDir()
	payload := make([]byte, 64<<10)
	_, _ = rand.Read(payload)
	in, body, head := filepath.Join(dir, "in"), filepath.Join(dir, "body"), filepath.Join(dir, "head")
	if err := os.WriteFile(in, payload, 0o600); err != nil {
		t.Fatal(err)
	}
	args = append(args, "--cacert", web.CAFile, "--data-binary", "@"+in, "-o", body, "-D", head, url)
	if _, stderr, err := lab.CurlEnv(env, append([]string{"-v"}, args...)...); err != nil {
		t.Fatalf("curl %v: %v: %s", args, err, stderr)
	}
	got, _ := os.ReadFile(body)
	if !bytes.Equal(got, payload) {
		t.Errorf("echoed body is %d bytes, not the %d-byte payload", len(got), len(payload))
	}
	headers, _ := os.ReadFile(head)
	return SeenHeader(t, string(headers)), len(payload)
}

// SeenHeader is the address in the web server's X-Seen response header:
// the client address it saw.
func SeenHeader(t *testing.T, headers string) netip.Addr {
	t.Helper()
	for _, line := range strings.Split(headers, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "X-Seen") {
			ap, err := netip.ParseAddrPort(strings.TrimSpace(v))
			if err != nil {
				t.Fatalf("X-Seen %q: %v", v, err)
			}
			return ap.Addr()
		}
	}
	t.Fatalf("no X-Seen header in:\n%s", headers)
	return netip.Addr{}
}

// CheckPinned asserts a flow left through want: the server saw want's
// address, want sent at least the upload, and other sent nothing at all.
func CheckPinned(t *testing.T, before netlab.Snapshot, seen netip.Addr, sent int, want, other netlab.NIC) {
	t.Helper()
	if seen != want.Addr {
		t.Errorf("server saw %v, want %s's address %v", seen, want.Name, want.Addr)
	}
	CheckCounters(t, before, sent, want, other)
}

// CheckCounters asserts, from the counters alone, that want sent at least
// sent bytes and other nothing at all; the other half of the proof is
// the address the server saw.
func CheckCounters(t *testing.T, before netlab.Snapshot, sent int, want, other netlab.NIC) {
	t.Helper()
	if tx := before.TxSince(want.Name); tx < uint64(sent) {
		t.Errorf("%s sent %d bytes, want at least the %d uploaded", want.Name, tx, sent)
	}
	if tx := before.TxSince(other.Name); tx != 0 {
		t.Errorf("%s sent %d bytes, want 0", other.Name, tx)
	}
}
