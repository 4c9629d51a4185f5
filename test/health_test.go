package test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"nicproxy/test/netlab"
)

// TestHealthCheck: while ens160's check target refuses, a failover list
// skips ens160 although the NIC is up; when the target answers again,
// traffic returns to ens160. The probes themselves leave through ens160.
func TestHealthCheck(t *testing.T) {
	lab := newServingLab(t)
	// The check target: a listener the test opens and closes at will.
	var target *net.TCPListener
	var port uint16
	open := func() {
		t.Helper()
		err := lab.InUpstream(func() error {
			var err error
			target, err = net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(netip.AddrPortFrom(netlab.Server, port)))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		port = target.Addr().(*net.TCPAddr).AddrPort().Port()
		go func(ln *net.TCPListener) {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}(target)
	}
	open()
	t.Cleanup(func() { target.Close() })

	lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", `
admin: {addr: "127.0.0.1:9090"}
interfaces:
  ens160:
    check: {target: "`+netip.AddrPortFrom(netlab.Server, port).String()+`", interval: 200ms}
default: [ens160, ens33]
`)
	url := lab.url("http", "web.test", "/echo")
	checkState := func() string {
		out, _, _ := lab.Curl("http://127.0.0.1:9090/api/status")
		var s struct {
			NICs []struct{ Name, Check string } `json:"nics"`
		}
		_ = json.Unmarshal([]byte(out), &s)
		for _, n := range s.NICs {
			if n.Name == "ens160" {
				return n.Check
			}
		}
		return ""
	}
	waitCheck := func(prefix string) {
		t.Helper()
		eventually(t, 5*time.Second, func() bool { return strings.HasPrefix(checkState(), prefix) },
			func() string { return fmt.Sprintf("ens160's check is %q, want %s…", checkState(), prefix) })
	}

	waitCheck("passing")
	before := lab.Snapshot()
	f := lab.curlUpload(t, nil, url, "--proxy", "socks5h://127.0.0.1:1080")
	if f.seen != netlab.Ens160.Addr || before.TxSince("ens33") != 0 {
		t.Errorf("with the check passing: server saw %v, ens33 sent %d", f.seen, before.TxSince("ens33"))
	}

	target.Close()
	waitCheck("failing")
	before = lab.Snapshot()
	f = lab.curlUpload(t, nil, url, "--proxy", "socks5h://127.0.0.1:1080")
	if f.seen != netlab.Ens33.Addr {
		t.Errorf("with ens160's check failing, server saw %v, want ens33", f.seen)
	}
	if tx := before.TxSince("ens33"); tx < uint64(f.sent) {
		t.Errorf("ens33 sent %d bytes, want at least %d", tx, f.sent)
	}
	// Only the probes (a SYN every 200ms) may move ens160's counter.
	if tx := before.TxSince("ens160"); tx >= uint64(f.sent)/4 {
		t.Errorf("ens160 sent %d bytes while skipped", tx)
	}

	open()
	waitCheck("passing")
	before = lab.Snapshot()
	f = lab.curlUpload(t, nil, url, "--proxy", "socks5h://127.0.0.1:1080")
	if f.seen != netlab.Ens160.Addr || before.TxSince("ens33") != 0 {
		t.Errorf("after recovery: server saw %v, ens33 sent %d", f.seen, before.TxSince("ens33"))
	}
}
