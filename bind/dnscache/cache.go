package dnscache

import (
	"container/list"
	"net/netip"
	"time"
)

// family indexes the two address families a name is asked for.
type family int

const (
	ipv4 family = iota // A
	ipv6               // AAAA
)

// known is one family's cached answer: addresses, or none (NXDOMAIN or
// NODATA), until expires.
type known struct {
	outcome outcome
	addrs   []netip.Addr
	expires time.Time // zero: nothing cached for this family
}

// entry holds what is cached for one name, both families side by side, so
// the cache's bound counts names, as the config promises.
type entry struct {
	name string
	fams [2]known
}

// lru is a cache of at most max names, the least recently used evicted
// first. It is not safe for concurrent use; the Resolver's mutex guards it.
type lru struct {
	max   int
	order *list.List // of *entry, most recently used first
	index map[string]*list.Element
}

func newLRU(maxNames int) lru {
	return lru{max: maxNames, order: list.New(), index: map[string]*list.Element{}}
}

// get returns the fresh answer for name's family. An expired one is
// dropped, never served: the caller asks again.
func (c *lru) get(name string, fam family, now time.Time) (known, bool) {
	el, ok := c.index[name]
	if !ok {
		return known{}, false
	}
	e := el.Value.(*entry)
	k := e.fams[fam]
	if k.expires.IsZero() {
		return known{}, false
	}
	if !now.Before(k.expires) {
		e.fams[fam] = known{}
		if e.fams[0].expires.IsZero() && e.fams[1].expires.IsZero() {
			c.order.Remove(el)
			delete(c.index, name)
		}
		return known{}, false
	}
	c.order.MoveToFront(el)
	return k, true
}

// put stores name's family, evicting the least recently used names beyond
// the bound.
func (c *lru) put(name string, fam family, k known) {
	if c.max <= 0 {
		return
	}
	el, ok := c.index[name]
	if ok {
		c.order.MoveToFront(el)
	} else {
		el = c.order.PushFront(&entry{name: name})
		c.index[name] = el
	}
	el.Value.(*entry).fams[fam] = k
	for c.order.Len() > c.max {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.index, oldest.Value.(*entry).name)
	}
}

func (c *lru) len() int { return c.order.Len() }
