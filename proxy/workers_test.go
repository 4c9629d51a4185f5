package proxy

import (
	"runtime"
	"testing"
	"time"
)

// TestWorkersReuse: a task run after another has finished goes to the
// worker that ran the first (no new goroutine); close waits for a busy
// worker and ends idle ones; run refuses work after close.
func TestWorkersReuse(t *testing.T) {
	base := runtime.NumGoroutine()
	w := newWorkers(time.Minute)
	ran := make(chan struct{})
	for i := range 3 {
		if !w.run(func() { ran <- struct{}{} }) {
			t.Fatal("run refused work before close")
		}
		<-ran
		// Let the worker get back to waiting for work.
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() != base+1 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if n := runtime.NumGoroutine() - base; n != 1 {
			t.Fatalf("after task %d: %d worker goroutines, want 1", i, n)
		}
	}
	release := make(chan struct{})
	w.run(func() { <-release })
	closed := make(chan struct{})
	go func() { w.close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("close returned while a task was running")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	<-closed
	if w.run(func() { t.Error("a task ran after close") }) {
		t.Error("run took work after close")
	}
}

// TestWorkersIdleEnd: an idle worker ends after its idle time.
func TestWorkersIdleEnd(t *testing.T) {
	base := runtime.NumGoroutine()
	w := newWorkers(20 * time.Millisecond)
	defer w.close()
	done := make(chan struct{})
	w.run(func() { close(done) })
	<-done
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := runtime.NumGoroutine() - base; n != 0 {
		t.Errorf("%d workers still running after their idle time", n)
	}
}
