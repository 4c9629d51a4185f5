package proxy

import (
	"bytes"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
	}, newAuthGuard(nil), nil)
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
		{"bob", "wrong", false}, // failures are not cached, and stay failures
		{"carol", "s3cret", false},
		{"", "", false},
	}
	for _, tt := range tests {
		if got := u.valid(netip.Addr{}, tt.user, tt.password); got != tt.want {
			t.Errorf("valid(%q, %q) = %v, want %v", tt.user, tt.password, got, tt.want)
		}
	}
	if !u.required() {
		t.Error("users configured, but authentication is not required")
	}
	if len(u.verified) != 1 {
		t.Errorf("the cache holds %d entries, want only bob's one success", len(u.verified))
	}
	if newUsers(nil, newAuthGuard(nil), nil).required() {
		t.Error("no users, but authentication is required")
	}
}

func TestUsersCacheIsBounded(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	u := newUsers([]config.User{{Name: "bob", PasswordHash: hash}}, newAuthGuard(nil), nil)
	u.limit = 8
	for i := range 20 {
		u.byName[fmt.Sprint("user-", i)] = config.User{Name: fmt.Sprint("user-", i), PasswordHash: hash}
		u.valid(netip.Addr{}, fmt.Sprint("user-", i), "pw")
	}
	if n := len(u.verified); n > u.limit {
		t.Errorf("cache holds %d entries, want at most %d", n, u.limit)
	}
	if !u.valid(netip.Addr{}, "bob", "pw") {
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

// TestAuthThrottle: five free failures per address and minute, then a
// delay that doubles up to 5 s, before the check, for that address only.
func TestAuthThrottle(t *testing.T) {
	var failures atomic.Int64
	g := newAuthGuard(func() { failures.Add(1) })
	clock := time.Unix(0, 0)
	var slept []time.Duration
	g.now = func() time.Time { return clock }
	g.sleep = func(d time.Duration) { slept = append(slept, d) }
	u := newUsers([]config.User{{Name: "alice", Password: "a"}}, g, nil)
	attacker, other := netip.MustParseAddr("192.0.2.9"), netip.MustParseAddr("192.0.2.10")
	for range 12 {
		u.valid(attacker, "alice", "guess")
	}
	want := []time.Duration{100, 200, 400, 800, 1600, 3200, 5000}
	for i := range want {
		want[i] *= time.Millisecond
	}
	if fmt.Sprint(slept) != fmt.Sprint(want) {
		t.Errorf("delays %v, want %v", slept, want)
	}
	if failures.Load() != 12 {
		t.Errorf("%d failures counted, want 12", failures.Load())
	}
	slept = nil
	if !u.valid(other, "alice", "a") || len(slept) != 0 {
		t.Errorf("another address waited %v", slept)
	}
	clock = clock.Add(61 * time.Second)
	if !u.valid(attacker, "alice", "a") || len(slept) != 0 {
		t.Errorf("a minute later the address still waited %v", slept)
	}
}

// TestAuthBcryptBound: no more bcrypt checks run at once than the guard
// has slots.
func TestAuthBcryptBound(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	g := newAuthGuard(nil)
	g.work = make(chan struct{}, 2)
	u := newUsers([]config.User{{Name: "bob", PasswordHash: hash}}, g, nil)
	var running, peak atomic.Int64
	stop := make(chan struct{})
	var watch sync.WaitGroup
	watch.Add(1)
	go func() {
		defer watch.Done()
		for {
			select {
			case <-stop:
				return
			default:
				n := int64(len(g.work))
				running.Store(n)
				if n > peak.Load() {
					peak.Store(n)
				}
			}
		}
	}()
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u.valid(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), "bob", "wrong")
		}()
	}
	wg.Wait()
	close(stop)
	watch.Wait()
	if peak.Load() > 2 || peak.Load() == 0 {
		t.Errorf("peak %d bcrypt checks at once, want 1 or 2", peak.Load())
	}
}

// TestDummyHashKeptAcrossReloads: a reload keeps the dummy hash when the
// cost is the same (no bcrypt under the server's lock) and makes a new one
// when it changed; an unknown user is checked against it either way.
func TestDummyHashKeptAcrossReloads(t *testing.T) {
	cost4, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	cost5, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost+1)
	first := newUsers([]config.User{{Name: "bob", PasswordHash: cost4}}, newAuthGuard(nil), nil)
	same := newUsers([]config.User{{Name: "carol", PasswordHash: cost4}}, newAuthGuard(nil), first)
	if !bytes.Equal(same.dummyHash, first.dummyHash) {
		t.Error("a reload with the same cost made a new dummy hash")
	}
	other := newUsers([]config.User{{Name: "bob", PasswordHash: cost5}}, newAuthGuard(nil), first)
	if c, err := bcrypt.Cost(other.dummyHash); err != nil || c != bcrypt.MinCost+1 {
		t.Errorf("after a cost change the dummy hash has cost %d (%v), want %d", c, err, bcrypt.MinCost+1)
	}
	if newUsers([]config.User{{Name: "alice", Password: "a"}}, newAuthGuard(nil), first).dummyHash != nil {
		t.Error("a table without bcrypt users kept a dummy hash it does not need")
	}
}

// TestRefusalsCostOneBcrypt proves without a clock what makes refusals
// take the same time: an unknown user, a bcrypt user's wrong password and
// a plain-password user's wrong password each run exactly one bcrypt
// comparison against a hash of the same cost; the dummy hash is really
// checked, not skipped. (The times themselves are in the benchmark
// BenchmarkHostileAuth in test/.)
func TestRefusalsCostOneBcrypt(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("bob-pw"), bcrypt.MinCost+1)
	g := newAuthGuard(nil)
	type comparison struct {
		cost     int
		password string
	}
	var compared []comparison
	g.compare = func(hash, password []byte) error {
		cost, err := bcrypt.Cost(hash)
		if err != nil {
			t.Errorf("compared against %q, not a bcrypt hash: %v", hash, err)
		}
		compared = append(compared, comparison{cost, string(password)})
		return bcrypt.CompareHashAndPassword(hash, password)
	}
	u := newUsers([]config.User{{Name: "bob", PasswordHash: hash}, {Name: "carol", Password: "carol-pw"}}, g, nil)
	for _, tt := range []struct{ user, password string }{
		{"mallory", "guess-1"}, // unknown: the dummy hash
		{"bob", "guess-2"},     // bcrypt user, wrong password: bob's hash
		{"carol", "guess-3"},   // plain user, wrong password: the dummy hash
	} {
		compared = nil
		if u.valid(netip.Addr{}, tt.user, tt.password) {
			t.Fatalf("%s logged in with %q", tt.user, tt.password)
		}
		want := []comparison{{bcrypt.MinCost + 1, tt.password}}
		if fmt.Sprint(compared) != fmt.Sprint(want) {
			t.Errorf("refusing %s ran bcrypt comparisons %v, want %v", tt.user, compared, want)
		}
	}
}
