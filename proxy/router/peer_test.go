package router

import (
	"context"
	"net/netip"
	"testing"

	"nicproxy/bind/sockdiag"
	"nicproxy/config"
)

// fakeClients answers every lookup with one client and counts the asks.
type fakeClients struct {
	client            sockdiag.Client
	err               error
	program           string
	clients, programs int
}

func (f *fakeClients) Client(_, _ netip.AddrPort) (sockdiag.Client, error) {
	f.clients++
	return f.client, f.err
}

func (f *fakeClients) Program(sockdiag.Client) (string, error) {
	f.programs++
	return f.program, nil
}

const clientRulesYAML = `
rules:
  - {name: web, port: [80], unit: [web.service], via: ens33}
  - {name: updates, unit: [apt.service], via: ens33}
  - {name: backup, cgroup: [/system.slice/restic.service], via: ens33}
  - {name: builds, uid: [1001], via: ens160}
  - {name: browser, program: [firefox], via: ens160}
default: ens33
`

func clientRouter(t *testing.T, clients Clients) *Router {
	t.Helper()
	cfg, err := config.Parse("rules.yaml", []byte(clientRulesYAML), config.Options{Interfaces: []string{"ens33", "ens160"}})
	if err != nil {
		t.Fatal(err)
	}
	return New(cfg, nil, clients)
}

// TestRouteByClient: each client key matches what the kernel said, the
// kernel is asked once per connection (Peer) and only when a rule with
// client keys is reached with its other fields matched, the program only
// when a program rule is reached, and a socket not found matches none.
func TestRouteByClient(t *testing.T) {
	req := func(port uint16, p *Peer) Request {
		return Request{Host: "203.0.113.7", Port: port, Network: config.NetworkTCP, Peer: p,
			Client: netip.MustParseAddrPort("127.0.0.1:40000"), Server: netip.MustParseAddrPort("127.0.0.1:1080")}
	}
	tests := []struct {
		name     string
		client   sockdiag.Client
		err      error
		program  string
		want     string
		programs int
	}{
		{"unit", sockdiag.Client{UID: 0, Cgroup: "/system.slice/apt.service", Unit: "apt.service"}, nil, "", "updates", 0},
		{"cgroup below the rule's", sockdiag.Client{UID: 0, Cgroup: "/system.slice/restic.service/x", Unit: "restic.service"}, nil, "", "backup", 0},
		{"uid", sockdiag.Client{UID: 1001, Cgroup: "/user.slice", Unit: ""}, nil, "", "builds", 0},
		{"program", sockdiag.Client{UID: 1000, Cgroup: "/user.slice/app.scope", Unit: "app.scope"}, nil, "firefox", "browser", 1},
		{"other program", sockdiag.Client{UID: 1000, Cgroup: "/user.slice/app.scope", Unit: "app.scope"}, nil, "curl", "default", 1},
		{"cgroup unknown: uid still matches", sockdiag.Client{UID: 1001, CgroupErr: &sockdiag.Error{Reason: sockdiag.NoCgroup2}}, nil, "", "builds", 0},
		{"socket not found", sockdiag.Client{}, &sockdiag.Error{Reason: sockdiag.Closed}, "firefox", "default", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeClients{client: tt.client, err: tt.err, program: tt.program}
			r := clientRouter(t, f)
			p := &Peer{}
			// Port 443: the "web" rule's port fails first, in memory.
			for range 3 { // three requests on one connection
				if d := r.Route(context.Background(), req(443, p)); d.RuleName != tt.want || d.Peer != p {
					t.Fatalf("routed to %s (peer %p), want %s (peer %p)", d.RuleName, d.Peer, tt.want, p)
				}
			}
			if f.clients != 1 || f.programs != tt.programs {
				t.Errorf("asked the kernel %d times and for the program %d times; want 1 and %d", f.clients, f.programs, tt.programs)
			}
			info := p.Info()
			if tt.err != nil && (info.Err == "" || info.UID != -1) {
				t.Errorf("not found: info %+v, want the error and no uid", info)
			}
			if tt.err == nil && (info.UID != int64(tt.client.UID) || info.Unit != tt.client.Unit) {
				t.Errorf("info %+v, want uid %d unit %q", info, tt.client.UID, tt.client.Unit)
			}
		})
	}
	t.Run("no peer kept: no ask, no match", func(t *testing.T) {
		f := &fakeClients{client: sockdiag.Client{Unit: "apt.service"}}
		if d := clientRouter(t, f).Route(context.Background(), req(443, nil)); d.RuleName != "default" || f.clients != 0 || d.Peer != nil {
			t.Errorf("routed to %s after %d asks, peer %v", d.RuleName, f.clients, d.Peer)
		}
	})
	t.Run("known peer (route --unit)", func(t *testing.T) {
		d := clientRouter(t, nil).Route(context.Background(), req(443, KnownPeer(-1, "", "apt.service", "")))
		if d.RuleName != "updates" {
			t.Errorf("routed to %s, want updates", d.RuleName)
		}
	})
}

// TestRouteWithoutClientRulesAsksNothing: a config with no client keys
// never asks, though the connection keeps a Peer.
func TestRouteWithoutClientRulesAsksNothing(t *testing.T) {
	f := &fakeClients{}
	r := newRouter(t, &fakeResolver{})
	r.clients = f
	p := &Peer{}
	d := r.Route(context.Background(), Request{Host: "203.0.113.7", Port: 9, Network: config.NetworkTCP, Peer: p})
	if f.clients != 0 || d.Peer != nil || p.Info().Asked {
		t.Errorf("asked %d times, decision peer %v", f.clients, d.Peer)
	}
}
