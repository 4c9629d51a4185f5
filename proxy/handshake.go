package proxy

import (
	"sync"
	"time"
)

// gate counts clients in their handshake: accepted, but whose request has
// not been read yet. Such a client has proven nothing (not even a user
// name), yet holds buffers; limits.max_handshakes bounds how many do at
// once. When the gate is full, the accept loop waits and new clients stay
// in the kernel's listen backlog, as HAProxy does at maxconn, instead of
// being read into memory or refused.
type gate struct {
	limit func() int // read on every check, so a reload applies at once

	mu      sync.Mutex
	n       int
	changed chan struct{} // closed and replaced whenever n goes down
}

func newGate(limit func() int) *gate {
	return &gate{limit: limit, changed: make(chan struct{})}
}

// acquire takes a slot, waiting while the gate is full until stop is
// closed or, when wait > 0, wait has passed. It reports whether it got one.
func (g *gate) acquire(stop <-chan struct{}, wait time.Duration) bool {
	var timeout <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	for {
		g.mu.Lock()
		if g.n < g.limit() {
			g.n++
			g.mu.Unlock()
			return true
		}
		changed := g.changed
		g.mu.Unlock()
		select {
		case <-changed:
		case <-stop:
			return false
		case <-timeout:
			return false
		}
	}
}

// release gives a slot back and wakes the waiters.
func (g *gate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n--
	close(g.changed)
	g.changed = make(chan struct{})
}

// wake makes waiters check the limit again, after a reload changed it.
func (g *gate) wake() {
	g.mu.Lock()
	defer g.mu.Unlock()
	close(g.changed)
	g.changed = make(chan struct{})
}

// handshake is one connection's hold on a gate slot. A connection's first
// handshake takes its slot in the accept loop; an HTTP keep-alive
// connection takes one again for each further request it starts, so a
// client cannot hold header buffers past the limit by opening with one
// short request.
type handshake struct {
	g    *gate
	mu   sync.Mutex
	on   bool // holds a slot
	done bool // the connection is gone: take no slot again
}

// end releases the slot if this connection holds one; safe to call more
// than once.
func (h *handshake) end() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.on {
		h.on = false
		h.g.release()
	}
}

// finish is end for good, when the connection closes.
func (h *handshake) finish() {
	h.mu.Lock()
	h.done = true
	h.mu.Unlock()
	h.end()
}

// restart takes a slot again for a new request on a kept-alive
// connection, waiting at most wait. It reports false when no slot came:
// the caller drops the connection.
func (h *handshake) restart(stop <-chan struct{}, wait time.Duration) bool {
	h.mu.Lock()
	on, done := h.on, h.done
	h.mu.Unlock()
	if on || done {
		return on
	}
	if !h.g.acquire(stop, wait) {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.on || h.done {
		h.g.release() // raced with another restart, or the conn closed meanwhile
		return h.on
	}
	h.on = true
	return true
}
