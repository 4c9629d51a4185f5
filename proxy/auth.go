package proxy

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"nicproxy/config"
)

// users checks credentials so that they cost an attacker more than a user:
//   - successful bcrypt verifications are cached by a hash of (user,
//     password), so a keep-alive client sending the same credentials on
//     every request costs one bcrypt, not one per request; failures are
//     never cached, so a repeated wrong password takes as long as a new one;
//   - an unknown name, and a wrong plain password, are checked against a
//     dummy hash of the same cost, so the time to refuse does not tell
//     which names exist (when any user has a bcrypt hash);
//   - at most half of GOMAXPROCS bcrypt checks (at least one) run at
//     once (guard.work), so guessers queue behind each other and the
//     other half of the CPUs keeps serving everyone else;
//   - an address that failed 5 times within a minute waits before each
//     further attempt (guard.throttle).
type users struct {
	byName map[string]config.User
	guard  *authGuard

	mu       sync.Mutex
	verified map[[sha256.Size]byte]struct{} // successful bcrypt checks
	limit    int                            // most entries verified may hold

	// dummyHash, when any user has a bcrypt hash, is checked for unknown
	// names; it has the cost of the first real hash.
	dummyHash []byte
}

// maxVerified bounds the bcrypt cache.
const maxVerified = 1024

// newUsers builds the user table of a configuration. prev is the table it
// replaces at a reload, or nil: its dummy hash is kept when the cost is the
// same, so a reload (which holds the server's lock) does not spend a bcrypt
// hash's time making a new one.
func newUsers(list []config.User, guard *authGuard, prev *users) *users {
	u := &users{byName: map[string]config.User{}, verified: map[[sha256.Size]byte]struct{}{}, limit: maxVerified, guard: guard}
	for _, user := range list {
		u.byName[user.Name] = user
		if user.PasswordHash != nil && u.dummyHash == nil {
			u.dummyHash = dummyHash(user.PasswordHash, prev)
		}
	}
	return u
}

// dummyHash returns a bcrypt hash of the same cost as like, to check
// unknown names against. Without it an unknown name would be refused at
// once, telling a guesser which names exist, so every failure is a bug:
// the cost of a hash the config accepted is always valid.
func dummyHash(like []byte, prev *users) []byte {
	cost, err := bcrypt.Cost(like)
	if err != nil {
		panic(fmt.Sprintf("nicproxy: a configured bcrypt hash has no cost: %v", err))
	}
	if prev != nil && prev.dummyHash != nil {
		if prevCost, err := bcrypt.Cost(prev.dummyHash); err == nil && prevCost == cost {
			return prev.dummyHash
		}
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("nicproxy: no such user"), cost)
	if err != nil {
		panic(fmt.Sprintf("nicproxy: make the dummy bcrypt hash (cost %d): %v", cost, err))
	}
	return hash
}

// required reports whether clients must authenticate.
func (u *users) required() bool { return len(u.byName) > 0 }

// valid reports whether name and password match a configured user, for a
// client at client.
func (u *users) valid(client netip.Addr, name, password string) bool {
	u.guard.throttle(client)
	ok := u.check(name, password)
	if !ok {
		u.guard.failed(client)
	}
	return ok
}

func (u *users) check(name, password string) bool {
	user, known := u.byName[name]
	if known && user.PasswordHash == nil {
		// Compare digests so the comparison time does not depend on length.
		want := sha256.Sum256([]byte(user.Password))
		got := sha256.Sum256([]byte(password))
		if subtle.ConstantTimeCompare(want[:], got[:]) == 1 {
			return true
		}
	}
	if !known || user.PasswordHash == nil {
		// Spend the time a real check costs, so response times do not
		// tell which user names exist.
		if u.dummyHash != nil {
			u.bcrypt(u.dummyHash, password)
		}
		return false
	}
	key := sha256.Sum256([]byte(name + "\x00" + password))
	u.mu.Lock()
	_, cached := u.verified[key]
	u.mu.Unlock()
	if cached {
		return true
	}
	if !u.bcrypt(user.PasswordHash, password) {
		return false
	}
	u.mu.Lock()
	if len(u.verified) >= u.limit {
		clear(u.verified)
	}
	u.verified[key] = struct{}{}
	u.mu.Unlock()
	return true
}

// bcrypt runs one bcrypt comparison within the guard's bound.
func (u *users) bcrypt(hash []byte, password string) bool {
	u.guard.work <- struct{}{}
	defer func() { <-u.guard.work }()
	return u.guard.compare(hash, []byte(password)) == nil
}

// authGuard is what outlives a reload: the bound on bcrypt work and the
// failures per client address.
type authGuard struct {
	work     chan struct{} // a slot per bcrypt check running
	onFail   func()        // counts nicproxy_auth_failures_total
	now      func() time.Time
	sleep    func(time.Duration)
	compare  func(hash, password []byte) error // bcrypt's; counted in tests
	mu       sync.Mutex
	failures map[netip.Addr]*failureRecord
}

type failureRecord struct {
	count int
	first time.Time // of the current window
}

// Throttling of failed logins: after freeFailures within failureWindow,
// each attempt from that address waits firstDelay, doubling per further
// failure up to maxDelay. maxTracked bounds the table against a spray
// from many addresses.
const (
	freeFailures  = 5
	failureWindow = time.Minute
	firstDelay    = 100 * time.Millisecond
	maxDelay      = 5 * time.Second
	maxTracked    = 65536
)

func newAuthGuard(onFail func()) *authGuard {
	return &authGuard{
		work:     make(chan struct{}, max(1, runtime.GOMAXPROCS(0)/2)),
		onFail:   onFail,
		now:      time.Now,
		sleep:    time.Sleep,
		compare:  bcrypt.CompareHashAndPassword,
		failures: map[netip.Addr]*failureRecord{},
	}
}

// delay is how long an attempt from client waits now.
func (g *authGuard) delay(client netip.Addr) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	r, ok := g.failures[client]
	if !ok || r.count < freeFailures || g.now().Sub(r.first) > failureWindow {
		return 0
	}
	d := firstDelay << min(r.count-freeFailures, 10)
	return min(d, maxDelay)
}

// throttle makes an attempt from a client that keeps failing wait. The
// wait comes before the check, so it is the same whether the guess is
// right or wrong.
func (g *authGuard) throttle(client netip.Addr) {
	if d := g.delay(client); d > 0 {
		g.sleep(d)
	}
}

// failed records a failed attempt from client.
func (g *authGuard) failed(client netip.Addr) {
	if g.onFail != nil {
		g.onFail()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	r, ok := g.failures[client]
	if !ok || now.Sub(r.first) > failureWindow {
		if !ok && len(g.failures) >= maxTracked {
			for a, old := range g.failures {
				if now.Sub(old.first) > failureWindow {
					delete(g.failures, a)
				}
			}
			if len(g.failures) >= maxTracked {
				clear(g.failures)
			}
		}
		r = &failureRecord{first: now}
		g.failures[client] = r
	}
	r.count++
}
