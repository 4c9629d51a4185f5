package proxy

import (
	"crypto/sha256"
	"crypto/subtle"
	"sync"

	"golang.org/x/crypto/bcrypt"

	"nicproxy/config"
)

// users checks credentials in constant time. bcrypt results are cached by a
// hash of (user, password), so a keep-alive HTTP client sending the same
// Proxy-Authorization on every request costs one bcrypt, not one per request.
type users struct {
	byName map[string]config.User

	mu       sync.Mutex
	verified map[[sha256.Size]byte]bool // cache of bcrypt results
	limit    int                        // most entries verified may hold

	// dummyHash, when any user has a bcrypt hash, is checked for unknown
	// names; it has the cost of the first real hash.
	dummyHash []byte
}

// maxVerified bounds the bcrypt cache; a client guessing passwords must not
// grow it without limit.
const maxVerified = 1024

func newUsers(list []config.User) *users {
	u := &users{byName: map[string]config.User{}, verified: map[[sha256.Size]byte]bool{}, limit: maxVerified}
	for _, user := range list {
		u.byName[user.Name] = user
		if user.PasswordHash != nil && u.dummyHash == nil {
			cost, err := bcrypt.Cost(user.PasswordHash)
			if err != nil {
				cost = bcrypt.DefaultCost
			}
			u.dummyHash, _ = bcrypt.GenerateFromPassword([]byte("nicproxy: no such user"), cost)
		}
	}
	return u
}

// required reports whether clients must authenticate.
func (u *users) required() bool { return len(u.byName) > 0 }

// valid reports whether name and password match a configured user.
func (u *users) valid(name, password string) bool {
	user, ok := u.byName[name]
	if !ok {
		// Spend the time a real check costs, so response times do not
		// tell which user names exist.
		if u.dummyHash != nil {
			_ = bcrypt.CompareHashAndPassword(u.dummyHash, []byte(password))
		}
		return false
	}
	if user.PasswordHash == nil {
		// Compare digests so the comparison time does not depend on length.
		want := sha256.Sum256([]byte(user.Password))
		got := sha256.Sum256([]byte(password))
		return subtle.ConstantTimeCompare(want[:], got[:]) == 1
	}
	key := sha256.Sum256([]byte(name + "\x00" + password))
	u.mu.Lock()
	ok, cached := u.verified[key]
	u.mu.Unlock()
	if cached {
		return ok
	}
	ok = bcrypt.CompareHashAndPassword(user.PasswordHash, []byte(password)) == nil
	u.mu.Lock()
	if len(u.verified) >= u.limit {
		clear(u.verified)
	}
	u.verified[key] = ok
	u.mu.Unlock()
	return ok
}
