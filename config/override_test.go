package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// overrideFile has rules naming a NIC the host lacks and a non-loopback
// listener without auth: both problems -i and -l respectively make moot.
const overrideFile = `listen:
  - {name: lan, addr: "0.0.0.0:1080"}
rules:
  - {listener: lan, via: wlan0}
default: wlan0
`

func TestInterfaceOverride(t *testing.T) {
	opts := hostOpts()
	opts.InterfaceOverride = "ens160"
	opts.ListenOverride = "127.0.0.1:1080"
	cfg := mustParse(t, overrideFile, opts)
	if len(cfg.Rules) != 0 {
		t.Errorf("rules kept: %+v", cfg.Rules)
	}
	if want := (Via{Mode: ViaPinned, NICs: []string{"ens160"}}); !reflect.DeepEqual(cfg.Default, want) || cfg.DefaultFromRoute {
		t.Errorf("Default = %+v (from route %v)", cfg.Default, cfg.DefaultFromRoute)
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("warnings about dropped rules: %v", warnings(cfg))
	}

	// A NIC declared under interfaces is a valid -i even if absent now.
	opts = hostOpts()
	opts.InterfaceOverride = "ens200"
	cfg = mustParse(t, "interfaces: {ens200: {}}\nrules:\n  - {port: 80, via: ens33}\n", opts)
	if cfg.Default.String() != "ens200" || len(cfg.Rules) != 0 {
		t.Errorf("Default = %v, rules %d", cfg.Default, len(cfg.Rules))
	}

	// -i does not excuse a broken file.
	_, err := Parse("config.yaml", []byte("rules:\n  - {port: 99999, via: ens33}\n"), opts)
	if err == nil || !strings.Contains(err.Error(), "rules[0].port: port 99999 is out of range") {
		t.Errorf("got %v", err)
	}
}

func TestListenOverride(t *testing.T) {
	opts := hostOpts()
	opts.ListenOverride = "[::1]:3128"
	cfg := mustParse(t, "listen:\n  - {name: a, addr: 127.0.0.1:1080, protocol: http}\n  - addr: 127.0.0.1:1081\nrules:\n  - {listener: a, via: ens160}\n", opts)
	want := []Listener{{Name: "[::1]:3128", Addr: netip.MustParseAddrPort("[::1]:3128"), Protocol: ProtocolMixed}}
	if !reflect.DeepEqual(cfg.Listeners, want) {
		t.Errorf("Listeners = %+v", cfg.Listeners)
	}
	wantWarn := []string{`config.yaml:5:16: rules[0].listener: listener "a" is replaced by -l [::1]:3128; this rule never matches`}
	if got := warnings(cfg); !slices.Equal(got, wantWarn) {
		t.Errorf("Warnings = %q, want %q", got, wantWarn)
	}
	if len(cfg.Rules) != 1 {
		t.Errorf("rules dropped by -l")
	}

	// -l fixes a file whose own listener would be an open proxy.
	opts = hostOpts()
	opts.ListenOverride = "127.0.0.1:1080"
	opts.InterfaceOverride = "ens33"
	mustParse(t, overrideFile, opts)

	// A non-loopback -l is fine with users or allow in the file.
	opts.ListenOverride = "0.0.0.0:1080"
	mustParse(t, "users: [{name: u, password: p}]\n", opts)
	mustParse(t, "allow: [192.168.3.0/24]\n", opts)
	_, err := Parse("config.yaml", []byte("default: ens33\n"), opts)
	if want := "-l: 0.0.0.0:1080 is not a loopback address; set users or allow so it is not an open proxy"; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}

	// Flag errors come first: they concern the whole run.
	opts = Options{Interfaces: []string{"ens33"}, ListenOverride: "nowhere", InterfaceOverride: "eth9"}
	_, err = Parse("config.yaml", []byte("log: {level: loud}\n"), opts)
	wantErr := "-i: unknown interface \"eth9\" (have: ens33)\n-l: \"nowhere\": want IP:port, such as 127.0.0.1:1080 or [::1]:1080\nconfig.yaml:1:14: log.level: unknown level \"loud\" (want one of: debug, info, warn, error)"
	if err == nil || err.Error() != wantErr {
		t.Errorf("got\n%v\nwant\n%s", err, wantErr)
	}
}

func TestEmbedded(t *testing.T) {
	cfg, err := Embedded(hostOpts())
	if err != nil {
		t.Fatal(err)
	}
	want := []Listener{{Name: "127.0.0.1:1080", Addr: netip.MustParseAddrPort("127.0.0.1:1080"), Protocol: ProtocolMixed}}
	if cfg.Source != "(embedded default)" || !reflect.DeepEqual(cfg.Listeners, want) ||
		cfg.Default.String() != "ens33" || !cfg.DefaultFromRoute || len(cfg.Rules) != 0 || cfg.Admin != nil {
		t.Errorf("got %+v", cfg)
	}

	_, err = Embedded(Options{Interfaces: []string{"ens33", "ens160"}})
	if want := "(embedded default): default: no NIC carries a default route; pin one with -i NIC, or give a config file with -c FILE"; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}

	cfg, err = Embedded(Options{Interfaces: []string{"ens33", "ens160"}, InterfaceOverride: "ens160", ListenOverride: "127.0.0.1:2080"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Default.String() != "ens160" || cfg.DefaultFromRoute || cfg.Listeners[0].Addr.Port() != 2080 {
		t.Errorf("got %+v", cfg)
	}
}

// TestExamples loads every example config, so none can rot.
func TestExamples(t *testing.T) {
	paths, err := filepath.Glob("../configs/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) < 3 {
		t.Fatalf("found %d example configs in ../configs, want at least 3", len(paths))
	}
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			cfg, err := Load(p, hostOpts())
			if err != nil {
				t.Fatalf("%v", err)
			}
			if len(cfg.Warnings) != 0 {
				t.Errorf("warnings: %q", warnings(cfg))
			}
		})
	}
	if _, err := os.Stat("../configs/two-nic.yaml"); err != nil {
		t.Error(err)
	}
}
