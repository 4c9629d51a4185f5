package test

import (
	"testing"

	"nicproxy/test/netlab"
)

// TestFailoverAndBalance: a failover list skips a NIC that is down and
// returns to it when it is back; round-robin alternates NICs per new
// connection; sticky keeps a client and site on one NIC. Each flow is
// checked by the address the server saw and both NICs' counters.
func TestFailoverAndBalance(t *testing.T) {
	lab := newServingLab(t)
	lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", `
listen:
  - {name: failover, addr: "127.0.0.1:1080"}
  - {name: rr, addr: "127.0.0.1:1081"}
  - {name: sticky, addr: "127.0.0.1:1082"}
rules:
  - {listener: [rr], via: {balance: [ens33, ens160], strategy: round-robin}}
  - {listener: [sticky], via: {balance: [ens33, ens160], strategy: sticky}}
default: [ens160, ens33]
`)
	url := lab.url("http", "web.test", "/echo")
	other := map[string]netlab.NIC{"ens33": netlab.Ens160, "ens160": netlab.Ens33}
	flow := func(t *testing.T, proxy string) netlab.NIC {
		t.Helper()
		before := lab.Snapshot()
		f := lab.curlUpload(t, nil, url, "--proxy", proxy)
		var carrier netlab.NIC
		switch f.seen {
		case netlab.Ens33.Addr:
			carrier = netlab.Ens33
		case netlab.Ens160.Addr:
			carrier = netlab.Ens160
		default:
			t.Fatalf("server saw %v", f.seen)
		}
		checkPinned(t, before, f, carrier, other[carrier.Name])
		return carrier
	}

	t.Run("failover skips a down NIC and comes back", func(t *testing.T) {
		if got := flow(t, "socks5h://127.0.0.1:1080"); got != netlab.Ens160 {
			t.Errorf("with both up, carried by %s, want ens160", got.Name)
		}
		lab.SetDown("ens160")
		// ens160 is down, so only ens33 may move; the DNS query fails over too.
		before := lab.Snapshot()
		f := lab.curlUpload(t, nil, url, "--proxy", "socks5h://127.0.0.1:1080")
		if f.seen != netlab.Ens33.Addr {
			t.Errorf("with ens160 down, server saw %v, want ens33", f.seen)
		}
		if tx := before.TxSince("ens33"); tx < uint64(f.sent) {
			t.Errorf("ens33 sent %d bytes", tx)
		}
		lab.SetUp(netlab.Ens160)
		if got := flow(t, "http://127.0.0.1:1080"); got != netlab.Ens160 {
			t.Errorf("after ens160 came back, carried by %s", got.Name)
		}
	})
	t.Run("round-robin alternates", func(t *testing.T) {
		var seq []string
		for range 4 {
			seq = append(seq, flow(t, "socks5h://127.0.0.1:1081").Name)
		}
		if seq[0] == seq[1] || seq[0] != seq[2] || seq[1] != seq[3] {
			t.Errorf("NICs in turn: %v", seq)
		}
	})
	t.Run("sticky keeps a client and site on one NIC", func(t *testing.T) {
		first := flow(t, "socks5h://127.0.0.1:1082")
		for range 3 {
			if got := flow(t, "socks5h://127.0.0.1:1082"); got != first {
				t.Fatalf("sticky moved from %s to %s", first.Name, got.Name)
			}
		}
	})
}
