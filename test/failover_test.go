package test

import (
	"fmt"
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
	flow := func(t *testing.T, url, proxy string, args ...string) netlab.NIC {
		t.Helper()
		lab := lab.with(t)
		// The flow before may have been the other NIC's: its last packets
		// must not count against this one.
		before := lab.Settled()
		f := lab.curlUpload(t, nil, url, append([]string{"--proxy", proxy}, args...)...)
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
		lab := lab.with(t)
		if got := flow(t, url, "socks5h://127.0.0.1:1080"); got != netlab.Ens160 {
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
		if got := flow(t, url, "http://127.0.0.1:1080"); got != netlab.Ens160 {
			t.Errorf("after ens160 came back, carried by %s", got.Name)
		}
	})
	t.Run("round-robin alternates", func(t *testing.T) {
		var seq []string
		for range 4 {
			seq = append(seq, flow(t, url, "socks5h://127.0.0.1:1081").Name)
		}
		if seq[0] == seq[1] || seq[0] != seq[2] || seq[1] != seq[3] {
			t.Errorf("NICs in turn: %v", seq)
		}
	})
	t.Run("sticky keeps a client and site on one NIC", func(t *testing.T) {
		// Always the first NIC would also keep each pair on one NIC: vary
		// the client address and the site until both NICs have carried a
		// pair (a pair lands on either with even odds, so 16 pairs all on
		// one NIC is a 1 in 32,768 chance), and show each pair stays.
		carried := map[string]bool{}
		for i := range 16 {
			client := fmt.Sprintf("127.0.0.%d", 1+i/2)
			site := []string{url, lab.url("http", netlab.Server.String(), "/echo")}[i%2]
			first := flow(t, site, "socks5h://127.0.0.1:1082", "--interface", client)
			for range 2 {
				if got := flow(t, site, "socks5h://127.0.0.1:1082", "--interface", client); got != first {
					t.Fatalf("client %s, site %s: sticky moved from %s to %s", client, site, first.Name, got.Name)
				}
			}
			if carried[first.Name] = true; len(carried) == 2 {
				return
			}
		}
		t.Errorf("16 client and site pairs all on %v: not balanced", carried)
	})
}
