package test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"nicproxy/test/netlab"
)

// TestRejectMessage: a reject rule is said once, in words, in the access
// log and the 403 page: "rejected by rule NAME", not "rule NAME rejects
// it: rejected".
func TestRejectMessage(t *testing.T) {
	lab := netlab.New(t)
	proc := lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", `
rules:
  - {name: no-9999, port: [9999], action: reject}
default: ens33
`)
	conn := dialProxy(t, lab)
	if rep, err := socks5Dial(conn, "", "", netlab.Server.String(), 9999); err != nil || rep != 0x02 {
		t.Fatalf("socks5: reply %#x %v, want 0x02", rep, err)
	}
	conn.Close()
	resp, _, err := httpConnect(dialProxy(t, lab), netlab.Server.String(), 9999, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "rejected by rule no-9999") || strings.Contains(string(body), "rejects it") {
		t.Errorf("CONNECT: %d %q", resp.StatusCode, body)
	}
	// Access lines are written as the connections close.
	eventually(t, 5*time.Second, func() bool { return strings.Count(proc.Output(), "rejected by rule no-9999") >= 2 },
		func() string { return "no access line for each of the two rejected flows:\n" + proc.Output() })
	if out := proc.Output(); strings.Contains(out, "rejects it") {
		t.Errorf("the log still says it twice:\n%s", out)
	}
}
