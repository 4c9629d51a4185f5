package execpin

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"nicproxy/config"
)

// TestPrivateResolvConfSources: behind a loopback stub, CMD's resolv.conf
// names --dns first, then the NIC's dns, then its link's own servers,
// then the stub's upstreams; with none, exec refuses and says --dns. A
// link's own servers replace a host nameserver that is no stub too.
func TestPrivateResolvConfSources(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	stubHost := write("stub.conf", "nameserver 127.0.0.53\nsearch lan\n")
	plainHost := write("plain.conf", "nameserver 192.0.2.1\n")
	upstreams := write("upstreams.conf", "nameserver 198.51.100.7\n")
	missing := filepath.Join(dir, "missing")
	parse := func(yaml string) *config.Config {
		cfg, err := config.Parse("c.yaml", []byte(yaml), config.Options{Interfaces: []string{"ens33", "ens160"}})
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	plain := parse("default: ens160\n")
	withDNS := parse("interfaces:\n  ens160: {dns: [203.0.113.5]}\ndefault: ens160\n")
	link := map[string][]netip.AddrPort{"ens160": {netip.MustParseAddrPort("198.51.100.54:53")}}
	flag := []netip.Addr{netip.MustParseAddr("192.0.2.9")}
	for _, tc := range []struct {
		name            string
		cfg             *config.Config
		host, upstreams string
		flag            []netip.Addr
		link            map[string][]netip.AddrPort
		want            string // the nameserver line; "" none written; "error"
	}{
		{"--dns first", withDNS, stubHost, upstreams, flag, link, "nameserver 192.0.2.9"},
		{"the NIC's dns", withDNS, stubHost, upstreams, nil, link, "nameserver 203.0.113.5"},
		{"the link's own", plain, stubHost, upstreams, nil, link, "nameserver 198.51.100.54"},
		{"the stub's upstreams", plain, stubHost, upstreams, nil, nil, "nameserver 198.51.100.7"},
		{"none: refused", plain, stubHost, missing, nil, nil, "error"},
		{"--dns alone", plain, stubHost, missing, flag, nil, "nameserver 192.0.2.9"},
		{"no stub, the link's own", plain, plainHost, missing, nil, link, "nameserver 198.51.100.54"},
		{"no stub, nothing else", plain, plainHost, missing, nil, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := privateResolvConf(tc.cfg, tc.host, tc.upstreams, tc.flag, tc.link)
			switch {
			case tc.want == "error":
				if err == nil || !strings.Contains(err.Error(), "--dns ADDR") {
					t.Errorf("got %q, %v; want an error that names --dns ADDR", got, err)
				}
			case err != nil:
				t.Fatal(err)
			case tc.want == "":
				if got != "" {
					t.Errorf("got %q, want the host's resolv.conf kept", got)
				}
			case !strings.Contains(got, tc.want+"\n") || strings.Count(got, "\nnameserver ") != 1:
				t.Errorf("got %q, want exactly %q", got, tc.want)
			}
		})
	}
}
