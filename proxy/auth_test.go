package proxy

import (
	"fmt"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"nicproxy/config"
)

func TestUsersValid(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("bob-pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	u := newUsers([]config.User{
		{Name: "alice", Password: "s3cret"},
		{Name: "bob", PasswordHash: hash},
	})
	tests := []struct {
		user, password string
		want           bool
	}{
		{"alice", "s3cret", true},
		{"alice", "s3cret ", false},
		{"alice", "", false},
		{"alice", "bob-pw", false},
		{"bob", "bob-pw", true},
		{"bob", "bob-pw", true}, // from the cache
		{"bob", "wrong", false},
		{"bob", "wrong", false}, // a cached failure stays a failure
		{"carol", "s3cret", false},
		{"", "", false},
	}
	for _, tt := range tests {
		if got := u.valid(tt.user, tt.password); got != tt.want {
			t.Errorf("valid(%q, %q) = %v, want %v", tt.user, tt.password, got, tt.want)
		}
	}
	if !u.required() {
		t.Error("users configured, but authentication is not required")
	}
	if newUsers(nil).required() {
		t.Error("no users, but authentication is required")
	}
}

func TestUsersCacheIsBounded(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	u := newUsers([]config.User{{Name: "bob", PasswordHash: hash}})
	u.limit = 8
	for i := range 20 {
		u.valid("bob", fmt.Sprintf("guess-%d", i))
	}
	if n := len(u.verified); n > u.limit {
		t.Errorf("cache holds %d entries, want at most %d", n, u.limit)
	}
	if !u.valid("bob", "pw") {
		t.Error("the right password fails after the cache was cleared")
	}
}

func TestSplitHostPort(t *testing.T) {
	tests := []struct {
		in   string
		host string
		port uint16
		fail bool
	}{
		{"example.com:443", "example.com", 443, false},
		{"example.com", "example.com", 80, false},
		{"[2001:db8::1]:8443", "2001:db8::1", 8443, false},
		{"[2001:db8::1]", "2001:db8::1", 80, false},
		{"example.com:0", "", 0, true},
		{"example.com:http", "", 0, true},
		{":443", "", 0, true},
	}
	for _, tt := range tests {
		host, port, err := splitHostPort(tt.in, 80)
		if (err != nil) != tt.fail || host != tt.host || port != tt.port {
			t.Errorf("splitHostPort(%q) = %q, %d, %v", tt.in, host, port, err)
		}
	}
}
