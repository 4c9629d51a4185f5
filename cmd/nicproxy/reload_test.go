package main

import (
	"slices"
	"testing"
)

// TestServeArguments: reload tells a serving nicproxy by its command line
// the way run in main.go dispatches it.
func TestServeArguments(t *testing.T) {
	tests := []struct {
		args    []string
		serves  bool
		flags   []string
		comment string
	}{
		{[]string{"/usr/bin/nicproxy"}, true, nil, "no arguments: the embedded default"},
		{[]string{"nicproxy", "run", "-c", "/etc/nicproxy/config.yaml"}, true, []string{"-c", "/etc/nicproxy/config.yaml"}, "the unit's ExecStart"},
		{[]string{"nicproxy", "-i", "ens160"}, true, []string{"-i", "ens160"}, "flags without run"},
		{[]string{"nicproxy", "check", "-c", "x.yaml"}, false, nil, "another command"},
		{[]string{"nicproxy", "hash-password"}, false, nil, "waiting for a password"},
		{[]string{"nicproxy", "--help"}, false, nil, "help"},
		{[]string{"nicproxy", "-V"}, false, nil, "version"},
	}
	for _, tt := range tests {
		flags, serves := serveArguments(tt.args)
		if serves != tt.serves || !slices.Equal(flags, tt.flags) {
			t.Errorf("%s: serveArguments(%q) = %q, %v; want %q, %v", tt.comment, tt.args, flags, serves, tt.flags, tt.serves)
		}
	}
}
