package execpin

import (
	"fmt"
	"strings"
	"testing"

	"nicproxy/bind"
	"nicproxy/bind/cgroup"
	"nicproxy/config"
)

// links is a fixed set of NICs.
type links map[string]bind.Link

func (l links) Link(name string) (bind.Link, error) {
	if link, ok := l[name]; ok {
		return link, nil
	}
	return bind.Link{}, fmt.Errorf("%s: %w", name, bind.ErrNICMissing)
}

// TestPolicy: rules the kernel can evaluate become cgroup rules, the rest
// are skipped with a warning naming them, a failover list pins to its
// first NIC that is up, and a list with none up is an error.
func TestPolicy(t *testing.T) {
	nics := links{"a": {Name: "a", Index: 2, Up: true}, "b": {Name: "b", Index: 3, Up: true}, "down": {Name: "down", Index: 4}}
	cfg, err := config.Parse("config.yaml", []byte(`
rules:
  - name: by-name
    domain: [example.com]
    via: a
  - name: lan
    dst: [10.0.0.0/8]
    port: [53]
    network: udp
    via: [down, b]
  - name: nowhere
    dst: [203.0.113.0/24]
    action: reject
default: a
`), config.Options{Interfaces: []string{"a", "b", "down"}})
	if err != nil {
		t.Fatal(err)
	}
	p, warnings, err := Policy(cfg, nics)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "rule 0 by-name skipped: it matches by domain") {
		t.Errorf("warnings %q, want the domain rule's", warnings)
	}
	if len(p.Rules) != 2 {
		t.Fatalf("rules %+v, want lan and nowhere", p.Rules)
	}
	lan := p.Rules[0]
	if lan.Verdict != (cgroup.Verdict{Action: cgroup.Pin, NIC: "b", Index: 3}) || lan.Network != cgroup.UDP ||
		len(lan.Ports) != 1 || lan.Ports[0] != (cgroup.PortRange{Lo: 53, Hi: 53}) {
		t.Errorf("lan = %+v, want pinned to b (the first up), UDP, port 53", lan)
	}
	if p.Rules[1].Verdict.Action != cgroup.Reject {
		t.Errorf("nowhere = %+v, want reject", p.Rules[1])
	}
	if p.Default != (cgroup.Verdict{Action: cgroup.Pin, NIC: "a", Index: 2}) {
		t.Errorf("default %+v, want a", p.Default)
	}

	cfg.Default = config.Via{NICs: []string{"down"}}
	if _, _, err := Policy(cfg, nics); err == nil || !strings.Contains(err.Error(), "none of its NICs is present and up (down down)") {
		t.Errorf("a default with no NIC up: %v, want an error naming it", err)
	}
}

// TestExecPolicyRefusesClientRules: a rule matching by unit, cgroup, uid
// or program is an error under exec, which has one command and no other
// client to tell apart, rather than a rule silently skipped.
func TestExecPolicyRefusesClientRules(t *testing.T) {
	for _, key := range []string{"unit: [a.service]", "cgroup: [/a.slice]", "uid: [0]", "program: [curl]"} {
		cfg, err := config.Parse("c.yaml", []byte("rules:\n  - {name: r, "+key+", via: ens33}\ndefault: ens160\n"),
			config.Options{Interfaces: []string{"ens33", "ens160"}})
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = Policy(cfg, bind.SystemLinks{})
		name, _, _ := strings.Cut(key, ":")
		if err == nil || !strings.Contains(err.Error(), "rule 0 r matches by "+name+": exec pins the one command") {
			t.Errorf("%s: got %v, want an error naming the rule and the key", key, err)
		}
	}
}
