package config

import (
	"os"
	"testing"
	"time"
)

// TestParseAnchorsAndMerge: YAML's own ways to avoid repetition work, and
// merged keys are checked like written ones.
func TestParseAnchorsAndMerge(t *testing.T) {
	cfg := mustParse(t, `interfaces:
  ens33: &opts
    dns: [192.168.3.1]
    check: {target: "192.168.3.1:53", interval: 2s}
  ens160:
    <<: *opts
    mark: 7
rules:
  - {dst: &lan [192.168.3.0/24], via: ens33}
  - {src: *lan, via: ens160}
`, hostOpts())
	e160 := cfg.Interfaces["ens160"]
	if e160.Mark != 7 || len(e160.DNS) != 1 || e160.Check == nil || e160.Check.Interval != 2*time.Second {
		t.Errorf("ens160 = %+v", e160)
	}
	if cfg.Rules[1].Src.String() != "192.168.3.0/24" {
		t.Errorf("rule 1 src = %v", cfg.Rules[1].Src)
	}
	_, err := Parse("config.yaml", []byte("interfaces:\n  ens33:\n    <<: {dnss: [1.1.1.1]}\n"), hostOpts())
	if want := "config.yaml:3:10: interfaces.ens33.dnss: unknown field (want one of: source, mark, dns, check)"; err == nil || err.Error() != want {
		t.Errorf("merged unknown key: got %v, want %s", err, want)
	}
	_, err = Parse("config.yaml", []byte("default: ens33\nx: *nope\n"), hostOpts())
	if want := "config.yaml:2:4: yaml: unknown anchor 'nope' referenced"; err == nil || err.Error() != want {
		t.Errorf("unknown anchor: got %v, want %s", err, want)
	}
}

func TestLoad(t *testing.T) {
	path := t.TempDir() + "/c.yaml"
	if _, err := Load(path, hostOpts()); err == nil {
		t.Error("Load of a missing file succeeded")
	}
	if err := os.WriteFile(path, []byte("default: bogus\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path, hostOpts())
	if want := path + `:1:10: default: unknown interface "bogus" (have: ens33, ens160)`; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}
