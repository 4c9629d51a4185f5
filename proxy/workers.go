package proxy

import (
	"sync"
	"time"
)

// workers runs client handshakes on goroutines that outlive one
// connection. A goroutine starts with a 2 KiB stack, and a handshake
// (SOCKS5 parsing, routing, a pinned dial, the access log) grows it
// several times over, copying it each time: at thousands of connections a
// second, a profile shows about an eighth of the CPU in stack growth. A
// worker that served one handshake keeps its grown stack for the next.
// Tunnels are not run here: they are handed to the relay's own fresh
// goroutines, whose small stacks are what an idle tunnel should cost.
//
// Idle workers wait for work for idleTime, then end; close ends them all
// and waits for them.
type workers struct {
	idleTime time.Duration
	work     chan func() // unbuffered: a send succeeds only into an idle worker
	stop     chan struct{}

	mu      sync.Mutex
	closed  bool
	running sync.WaitGroup
}

func newWorkers(idleTime time.Duration) *workers {
	return &workers{idleTime: idleTime, work: make(chan func()), stop: make(chan struct{})}
}

// run runs task on an idle worker, or on a new one when none is waiting.
// It reports false, without running task, once close has been called.
func (w *workers) run(task func()) bool {
	select {
	case w.work <- task:
		return true
	default:
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return false
	}
	w.running.Add(1)
	go w.loop(task)
	return true
}

func (w *workers) loop(task func()) {
	defer w.running.Done()
	idle := time.NewTimer(w.idleTime)
	defer idle.Stop()
	for task != nil {
		task()
		idle.Reset(w.idleTime)
		select {
		case task = <-w.work:
		case <-idle.C:
			task = nil
		case <-w.stop:
			task = nil
		}
	}
}

// close stops taking work, lets idle workers end, and waits for every
// worker, busy ones included, to finish.
func (w *workers) close() {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.stop)
	}
	w.mu.Unlock()
	w.running.Wait()
}
