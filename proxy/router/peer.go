package router

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"nicproxy/bind/sockdiag"
	"nicproxy/config"
)

// Clients tells who is behind a local client's connection: the proxy
// gives a *sockdiag.Identifier (wrapped to count failures), `route
// --from-pid` none (it fills the Peer itself).
type Clients interface {
	// Client looks up the socket at client whose peer is server.
	Client(client, server netip.AddrPort) (sockdiag.Client, error)
	// Program names the executable holding c's socket.
	Program(c sockdiag.Client) (string, error)
}

// Peer is what the kernel said about the program behind one client
// connection. The connection owns it, so the kernel is asked at most once
// per connection, even for many requests on one HTTP keep-alive
// connection, and only when a rule needs it. The zero Peer has asked
// nothing.
type Peer struct {
	mu             sync.Mutex
	asked, program bool // the socket (and its program) has been looked up
	client         sockdiag.Client
	uidKnown       bool
	err            error // no socket found: no unit, cgroup, uid or program rule matches
	name           string
	nameErr        error
}

// KnownPeer is a Peer already known, for `nicproxy route --from-pid` and
// `--unit`, which ask /proc rather than the socket. An empty cgroup is
// unknown (cgroup rules then match nothing); uid < 0 is unknown.
func KnownPeer(uid int64, cgroup, unit, program string) *Peer {
	p := &Peer{asked: true, program: true, name: program, uidKnown: uid >= 0}
	if uid >= 0 {
		p.client.UID = uint32(uid)
	}
	p.client.Cgroup, p.client.Unit = cgroup, unit
	if cgroup == "" && unit == "" {
		p.client.CgroupErr = fmt.Errorf("cgroup unknown")
	}
	if program == "" {
		p.nameErr = fmt.Errorf("program unknown")
	}
	return p
}

// PeerInfo is what a Peer found, for the access log, the status page
// and `route`.
type PeerInfo struct {
	// Asked is false when no rule needed the kernel asked.
	Asked bool
	// Err is why the socket could not be found; "" when it was.
	Err string
	// UID owns the socket; -1 when unknown.
	UID int64
	// Cgroup and Unit are "" when unknown or none.
	Cgroup, Unit string
	// Program is "" when no program rule needed it, or it was not found.
	Program string
}

// Info returns what p found; nil p has asked nothing.
func (p *Peer) Info() PeerInfo {
	if p == nil {
		return PeerInfo{UID: -1}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	info := PeerInfo{Asked: p.asked, UID: -1}
	if !p.asked {
		return info
	}
	if p.err != nil {
		info.Err = p.err.Error()
		return info
	}
	if p.uidKnown {
		info.UID = int64(p.client.UID)
	}
	info.Cgroup, info.Unit, info.Program = p.client.Cgroup, p.client.Unit, p.name
	return info
}

// matchClient reports whether rule's unit, cgroup, uid and program all
// match the client, asking clients (once per connection) only now that
// every cheaper field has matched. An unknown answer matches nothing.
func (p *Peer) matchClient(rule *config.Rule, clients Clients, client, server netip.AddrPort) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.asked {
		p.asked = true
		if clients == nil {
			p.err = fmt.Errorf("no socket lookup")
		} else {
			p.client, p.err = clients.Client(client, server)
			p.uidKnown = p.err == nil
		}
	}
	if p.err != nil {
		return false
	}
	c := &p.client
	switch {
	case len(rule.UIDs) > 0 && (!p.uidKnown || !rule.MatchUID(c.UID)):
	case len(rule.Units) > 0 && (c.CgroupErr != nil || c.Unit == "" || !slices.Contains(rule.Units, c.Unit)):
	case len(rule.Cgroups) > 0 && (c.CgroupErr != nil || c.Cgroup == "" || !rule.MatchCgroup(c.Cgroup)):
	case len(rule.Programs) > 0 && !p.matchProgram(rule, clients):
	default:
		return true
	}
	return false
}

// matchProgram looks the program up once, with p.mu held.
func (p *Peer) matchProgram(rule *config.Rule, clients Clients) bool {
	if !p.program {
		p.program = true
		switch {
		case clients == nil:
			p.nameErr = fmt.Errorf("no socket lookup")
		default:
			p.name, p.nameErr = clients.Program(p.client)
		}
	}
	return p.nameErr == nil && slices.Contains(rule.Programs, p.name)
}
