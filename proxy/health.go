package proxy

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"

	"nicproxy/config"
)

// healthTick is how often the checker looks for checks that are due.
const healthTick = 100 * time.Millisecond

// health runs the `check` of each NIC that has one: a TCP connect pinned to
// the NIC every interval. A NIC whose last check failed is put last by
// failover and balancing until a check passes again; it is still tried when
// every candidate is failing, since a failing check says the target is
// unreachable, not that the NIC is gone, and the dial stays pinned.
type health struct {
	mu    sync.Mutex
	state map[string]*nicHealth
}

type nicHealth struct {
	checked bool      // a check has completed
	err     error     // the last check's error; nil when it passed
	since   time.Time // when the NIC entered its current state
	next    time.Time // when the next check is due
	running bool
}

func newHealth() *health { return &health{state: map[string]*nicHealth{}} }

// healthy reports whether nic is not known to be failing its check.
func (h *health) healthy(nic string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	st, ok := h.state[nic]
	return !ok || !st.checked || st.err == nil
}

// checkState describes nic's check for the status page: "" when it has none.
func (h *health) checkState(nic string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	st, ok := h.state[nic]
	switch {
	case !ok:
		return ""
	case !st.checked:
		return "pending"
	case st.err != nil:
		return "failing since " + st.since.Format(time.TimeOnly) + ": " + st.err.Error()
	}
	return "passing"
}

// run starts due checks until ctx ends, then waits for those running.
func (h *health) run(ctx context.Context, s *Server) {
	var running sync.WaitGroup
	defer running.Wait()
	tick := time.NewTicker(healthTick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			cfg := s.state.Load().cfg
			for nic, opts := range h.due(now, cfg) {
				running.Add(1)
				go func() {
					defer running.Done()
					timeout := min(opts.Check.Interval, cfg.Timeouts.Dial)
					probeCtx, cancel := context.WithTimeout(ctx, timeout)
					err := s.state.Load().dialer.Probe(probeCtx, nic, opts.Check.Target)
					cancel()
					if ctx.Err() == nil {
						h.record(nic, err, opts.Check.Interval, s.log)
					}
				}()
			}
		}
	}
}

// due marks and returns the checks to start now, and forgets NICs whose
// check the configuration no longer has.
func (h *health) due(now time.Time, cfg *config.Config) map[string]config.Interface {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]config.Interface{}
	for nic := range h.state {
		if it, ok := cfg.Interfaces[nic]; !ok || it.Check == nil {
			delete(h.state, nic)
		}
	}
	for nic, it := range cfg.Interfaces {
		if it.Check == nil {
			continue
		}
		st, ok := h.state[nic]
		if !ok {
			st = &nicHealth{since: now}
			h.state[nic] = st
		}
		if !st.running && !now.Before(st.next) {
			st.running = true
			out[nic] = it
		}
	}
	return out
}

func (h *health) record(nic string, err error, interval time.Duration, log *zap.Logger) {
	h.mu.Lock()
	defer h.mu.Unlock()
	st, ok := h.state[nic]
	if !ok {
		return
	}
	now := time.Now()
	wasFailing := st.checked && st.err != nil
	switch {
	case err != nil && (!st.checked || !wasFailing):
		log.Warn("health check failing: failover and balancing skip this NIC", zap.String("nic", nic), zap.Error(err))
		st.since = now
	case err == nil && wasFailing:
		log.Info("health check passing again", zap.String("nic", nic), zap.Duration("failed_for", now.Sub(st.since).Round(time.Second)))
		st.since = now
	}
	st.checked, st.err, st.running, st.next = true, err, false, now.Add(interval)
}
