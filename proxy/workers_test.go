package proxy

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// workerStates counts the goroutines running workers.loop, and those of
// them parked in its select, waiting for work. A parked worker is one that
// run's non-blocking send reaches; a worker that has finished a task but
// not yet parked is not, which is why counting goroutines alone (as this
// test once did) raced with the worker's way back to its select.
func workerStates() (all, parked int) {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if !bytes.Contains(g, []byte("proxy.(*workers).loop")) {
			continue
		}
		all++
		header, _, _ := bytes.Cut(g, []byte("\n"))
		if bytes.Contains(header, []byte("[select")) {
			parked++
		}
	}
	return all, parked
}

// TestWorkersReuse: a task run after another has finished goes to the
// worker that ran the first (no new goroutine); close waits for a busy
// worker and ends idle ones; run refuses work after close.
func TestWorkersReuse(t *testing.T) {
	w := newWorkers(time.Hour)
	ran := make(chan struct{})
	for i := range 3 {
		if !w.run(func() { ran <- struct{}{} }) {
			t.Fatal("run refused work before close")
		}
		<-ran
		// Let the worker get back to waiting for work.
		eventually(t, 10*time.Second, func() bool { _, parked := workerStates(); return parked == 1 },
			func() string {
				all, parked := workerStates()
				return "no worker waits for work: " + stateString(all, parked)
			})
		if all, parked := workerStates(); all != 1 {
			t.Fatalf("after task %d: %s, want one worker", i, stateString(all, parked))
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
	// close has waited for the workers' Done; their goroutines end just after.
	eventually(t, 10*time.Second, func() bool { all, _ := workerStates(); return all == 0 },
		func() string { return "after close: " + stateString(workerStates()) + ", want none" })
}

// TestWorkersIdleEnd: an idle worker ends after its idle time.
func TestWorkersIdleEnd(t *testing.T) {
	w := newWorkers(20 * time.Millisecond)
	defer w.close()
	done := make(chan struct{})
	w.run(func() { close(done) })
	<-done
	eventually(t, 10*time.Second, func() bool { all, _ := workerStates(); return all == 0 },
		func() string { return "workers still running after their idle time: " + stateString(workerStates()) })
}

func stateString(all, parked int) string {
	return fmt.Sprintf("%d workers, %d waiting for work", all, parked)
}
