package proxy

import (
	"testing"
	"time"
)

// TestGate: slots up to the limit, then waiting until one is released,
// the listener closes, or the wait runs out; a kept-alive connection's
// handshake takes and gives back its own slot.
func TestGate(t *testing.T) {
	limit := 2
	g := newGate(func() int { return limit })
	stop := make(chan struct{})
	for i := range 2 {
		if !g.acquire(stop, 0) {
			t.Fatalf("slot %d was not free", i)
		}
	}
	if g.acquire(stop, 20*time.Millisecond) {
		t.Fatal("a third slot was granted over the limit")
	}
	got := make(chan bool)
	go func() { got <- g.acquire(stop, 0) }()
	g.release()
	if !<-got {
		t.Fatal("a released slot was not handed to the waiter")
	}
	go func() { got <- g.acquire(stop, 0) }()
	close(stop)
	if <-got {
		t.Fatal("a waiter got a slot after its listener closed")
	}
	limit = 3 // a reload raised the limit
	go func() { got <- g.acquire(make(chan struct{}), 0) }()
	g.wake()
	if !<-got {
		t.Fatal("a raised limit did not let the waiter in")
	}

	h := &handshake{g: g, on: true}
	h.end()
	h.end() // idempotent
	if g.n != 2 {
		t.Fatalf("%d slots taken after end, want 2", g.n)
	}
	if !h.restart(nil, time.Second) || g.n != 3 {
		t.Fatalf("restart: %d slots taken, want 3", g.n)
	}
	h.finish()
	if h.restart(nil, time.Second) || g.n != 2 {
		t.Fatalf("a finished connection took a slot again (%d taken)", g.n)
	}
}
