package main

import (
	"strings"
	"testing"

	"nicproxy/bind"
	"nicproxy/config"
)

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
		_, _, err = execPolicy(cfg, bind.SystemLinks{})
		name, _, _ := strings.Cut(key, ":")
		if err == nil || !strings.Contains(err.Error(), "rule 0 r matches by "+name+": exec pins the one command") {
			t.Errorf("%s: got %v, want an error naming the rule and the key", key, err)
		}
	}
}

// TestCheckShowsClientFields: check's summary spells a rule's unit,
// cgroup, uid and program as the file does.
func TestCheckShowsClientFields(t *testing.T) {
	cfg, err := config.Parse("c.yaml", []byte("rules:\n  - {unit: [a.service, b.scope], cgroup: [/x.slice], uid: [0, 1001], program: [curl], via: ens33}\ndefault: ens33\n"),
		config.Options{Interfaces: []string{"ens33"}})
	if err != nil {
		t.Fatal(err)
	}
	want := "unit a.service, b.scope; cgroup /x.slice; uid 0, 1001; program curl"
	if got := ruleFields(&cfg.Rules[0]); got != want {
		t.Errorf("ruleFields = %q, want %q", got, want)
	}
}
