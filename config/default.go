package config

import _ "embed"

// defaultYAML is the configuration served when no file is given. It is a
// file rather than Go values so that it goes through exactly the decoding
// and checks a user's file does. A string, so it cannot be modified.
//
//go:embed default.yaml
var defaultYAML string

// EmbeddedName is the Source of the embedded default configuration, and
// the file part of its error messages.
const EmbeddedName = "(embedded default)"

// Embedded returns the built-in configuration: one mixed listener on
// 127.0.0.1:1080, everything pinned to opts.DefaultRouteInterface (or to
// the -i NIC). Without either it fails, naming the -i flag as the fix.
func Embedded(opts Options) (*Config, error) {
	return parse(EmbeddedName, []byte(defaultYAML), opts, true)
}
