package main

import "testing"

func TestParseDest(t *testing.T) {
	tests := []struct {
		in       string
		host     string
		port     uint16
		wantFail bool
	}{
		{"example.com:443", "example.com", 443, false},
		{"example.com", "example.com", 0, false},
		{"192.0.2.1:80", "192.0.2.1", 80, false},
		{"192.0.2.1", "192.0.2.1", 0, false},
		{"2001:db8::1", "2001:db8::1", 0, false},
		{"[2001:db8::1]:443", "2001:db8::1", 443, false},
		{"[2001:db8::1]", "2001:db8::1", 0, false},
		{"example.com:0", "", 0, true},
		{"example.com:70000", "", 0, true},
		{"example.com:https", "", 0, true},
		{"a:b:c", "", 0, true},
		{"", "", 0, true},
	}
	for _, tt := range tests {
		host, port, err := parseDest(tt.in)
		if (err != nil) != tt.wantFail {
			t.Errorf("parseDest(%q) error = %v, want failure %v", tt.in, err, tt.wantFail)
			continue
		}
		if host != tt.host || port != tt.port {
			t.Errorf("parseDest(%q) = %q, %d; want %q, %d", tt.in, host, port, tt.host, tt.port)
		}
	}
}
