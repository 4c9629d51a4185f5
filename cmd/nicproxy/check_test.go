package main

import (
	"testing"

	"nicproxy/config"
)

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
