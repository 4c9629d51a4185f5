package test

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"nicproxy/test/netlab"
)

// TestNICHotPlug: a NIC declared in the config but absent at start-up is a
// warning, dials through it fail closed with 0x03, and once it appears it
// carries traffic without a restart.
func TestNICHotPlug(t *testing.T) {
	lab := newServingLab(t)
	ens200 := netlab.NIC{Name: "ens200", Addr: netip.MustParseAddr("192.0.2.200"), Metric: 102}
	proc := lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", `
interfaces: {ens200: {}}
default: ens200
`)
	if !strings.Contains(proc.Output(), "interfaces.ens200: not present on this host now; it will be used when it appears") {
		t.Errorf("no warning about the absent NIC:\n%s", proc.Output())
	}
	before := lab.Snapshot()
	rep, err := socks5Dial(dialProxy(t, lab.Lab), "", "", netlab.Server.String(), lab.web.HTTP.Port())
	if err != nil || rep != 0x03 {
		t.Errorf("before ens200 exists: reply %#x %v, want 0x03", rep, err)
	}
	resp, _, err := httpConnect(dialProxy(t, lab.Lab), netlab.Server.String(), lab.web.HTTP.Port(), nil)
	if err != nil || resp.StatusCode != http.StatusBadGateway {
		t.Errorf("before ens200 exists: CONNECT %v %v, want 502", resp, err)
	}
	if tx := before.TxSince("ens33") + before.TxSince("ens160"); tx != 0 {
		t.Errorf("the other NICs sent %d bytes while ens200 was missing", tx)
	}

	lab.AddNIC(ens200)
	before = lab.Snapshot()
	ens200Before := lab.Counters(ens200.Name)
	f := lab.curlUpload(t, nil, lab.url("http", "web.test", "/echo"), "--proxy", "socks5h://127.0.0.1:1080")
	if f.seen != ens200.Addr {
		t.Errorf("after ens200 appeared, server saw %v, want %v", f.seen, ens200.Addr)
	}
	if tx := lab.Counters(ens200.Name).Tx - ens200Before.Tx; tx < uint64(f.sent) {
		t.Errorf("ens200 sent %d bytes, want at least the %d uploaded", tx, f.sent)
	}
	if tx := before.TxSince("ens33") + before.TxSince("ens160"); tx != 0 {
		t.Errorf("ens33 and ens160 sent %d bytes, want 0", tx)
	}
}
