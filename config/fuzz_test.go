package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the decoder: it must return a config or
// errors that each carry a position or a path, and never panic or hang.
func FuzzParse(f *testing.F) {
	examples, _ := filepath.Glob(filepath.Join("..", "configs", "*.yaml"))
	for _, path := range examples {
		if data, err := os.ReadFile(path); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("rules:\n  - {dst: [10.0.0.0/8], via: [ens33, ens160]}\n"))
	f.Add([]byte("listen: [{addr: \"[::1]:8080\", protocol: http}]\ndefault: system\n"))
	f.Add([]byte("a: &x {b: *x}\n"))
	opts := Options{Interfaces: []string{"ens33", "ens160"}, DefaultRouteInterface: "ens33"}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data, opts)
		if err != nil {
			if strings.TrimSpace(err.Error()) == "" {
				t.Fatal("an error with no text")
			}
			return
		}
		if len(cfg.Listeners) == 0 || cfg.Default.IsZero() {
			t.Fatalf("a config without listeners or default: %+v", cfg)
		}
	})
}
