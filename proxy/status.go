package proxy

import (
	"context"
	"net"
	"slices"
	"sync"
	"time"
)

// Status page figures: how often throughput is sampled, how many samples
// the chart keeps, how many finished connections the page lists.
const (
	statusInterval = time.Second
	statusSamples  = 60
	statusRecent   = 20
)

// status tracks what the status page shows: per-NIC live byte counts
// (finished connections plus what open tunnels have moved so far, read from
// the kernel's TCP_INFO so the relay stays unwrapped), throughput samples,
// and the latest finished connections.
type status struct {
	started time.Time

	mu         sync.Mutex
	live       map[*session]struct{} // relaying now
	closedUp   map[string]uint64     // bytes of finished connections, by NIC
	closedDown map[string]uint64
	last       map[string][2]uint64 // totals at the previous sample
	history    map[string][]Sample  // throughput samples, oldest first
	recent     []ConnectionInfo     // newest first
}

// Sample is one throughput sample of one NIC, in bytes per second.
type Sample struct {
	Time int64   `json:"t"` // Unix seconds
	Up   float64 `json:"up"`
	Down float64 `json:"down"`
}

// ConnectionInfo is one finished connection as the status page lists it.
type ConnectionInfo struct {
	End      time.Time `json:"end"`
	Client   string    `json:"client"`
	User     string    `json:"user,omitempty"`
	Protocol string    `json:"protocol"`
	Dest     string    `json:"dest"`
	Rule     string    `json:"rule"`
	NIC      string    `json:"nic"`
	Up       int64     `json:"bytes_up"`
	Down     int64     `json:"bytes_down"`
	Duration string    `json:"duration"`
	Result   string    `json:"result"`
}

func newStatus() *status {
	return &status{
		started:    time.Now(),
		live:       map[*session]struct{}{},
		closedUp:   map[string]uint64{},
		closedDown: map[string]uint64{},
		last:       map[string][2]uint64{},
		history:    map[string][]Sample{},
	}
}

// relaying registers a session whose tunnel is open, until the returned
// func is called.
func (st *status) relaying(ss *session) func() {
	st.mu.Lock()
	st.live[ss] = struct{}{}
	st.mu.Unlock()
	return func() {
		st.mu.Lock()
		delete(st.live, ss)
		st.mu.Unlock()
	}
}

// finished records a connection that ended.
func (st *status) finished(ss *session, result string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if ss.nic != "" {
		st.closedUp[ss.nic] += uint64(ss.up)
		st.closedDown[ss.nic] += uint64(ss.down)
	}
	st.recent = slices.Insert(st.recent, 0, ConnectionInfo{
		End: time.Now(), Client: ss.from.String(), User: ss.user, Protocol: ss.protocol,
		Dest: ss.dest, Rule: ss.rule, NIC: ss.nic, Up: ss.up, Down: ss.down,
		Duration: time.Since(ss.start).Round(time.Millisecond).String(), Result: result,
	})
	if len(st.recent) > statusRecent {
		st.recent = st.recent[:statusRecent]
	}
}

// totals returns, per NIC, bytes moved so far and open tunnels.
func (st *status) totals() (up, down map[string]uint64, active map[string]int) {
	st.mu.Lock()
	up, down, active = cloneMap(st.closedUp), cloneMap(st.closedDown), map[string]int{}
	live := make([]*session, 0, len(st.live))
	for ss := range st.live {
		live = append(live, ss)
	}
	st.mu.Unlock()
	// The kernel is asked outside the lock: a status page must not slow
	// down connections opening and closing.
	for _, ss := range live {
		active[ss.nic]++
		if u, d, ok := socketBytes(ss.client); ok {
			up[ss.nic] += u
			down[ss.nic] += d
		}
	}
	return up, down, active
}

func cloneMap(m map[string]uint64) map[string]uint64 {
	out := make(map[string]uint64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// sample appends one throughput sample per NIC; run runs it every
// statusInterval until ctx ends.
func (st *status) sample(now time.Time, nics []string) {
	up, down, _ := st.totals()
	st.mu.Lock()
	defer st.mu.Unlock()
	secs := statusInterval.Seconds()
	for _, nic := range nics {
		prev := st.last[nic] // zero before the first sample: counting starts with the server
		cur := [2]uint64{up[nic], down[nic]}
		st.last[nic] = cur
		s := Sample{Time: now.Unix(), Up: rate(prev[0], cur[0], secs), Down: rate(prev[1], cur[1], secs)}
		st.history[nic] = append(st.history[nic], s)
		if n := len(st.history[nic]); n > statusSamples {
			st.history[nic] = st.history[nic][n-statusSamples:]
		}
	}
}

// rate is bytes per second between two totals; a total can step back a
// little when a tunnel closes (its handshake bytes leave the live count).
func rate(prev, cur uint64, secs float64) float64 {
	if cur <= prev {
		return 0
	}
	return float64(cur-prev) / secs
}

func (st *status) run(ctx context.Context, nics func() []string) {
	tick := time.NewTicker(statusInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			st.sample(now, nics())
		}
	}
}

// StatusReport is what /api/status returns and the status page shows.
type StatusReport struct {
	Config  string           `json:"config"`
	Started time.Time        `json:"started"`
	Uptime  string           `json:"uptime"`
	Active  int64            `json:"active_connections"`
	NICs    []NICStatus      `json:"nics"`
	Recent  []ConnectionInfo `json:"recent"`
}

// NICStatus is one NIC on the status page.
type NICStatus struct {
	Name       string   `json:"name"`
	Up         bool     `json:"up"`
	Check      string   `json:"check,omitempty"` // the health check: passing, failing since …, pending
	Addresses  []string `json:"addresses"`
	Active     int      `json:"active"`
	BytesUp    uint64   `json:"bytes_up"`
	BytesDown  uint64   `json:"bytes_down"`
	Throughput []Sample `json:"throughput"`
	// DNS is the NIC's name cache, once it has looked anything up.
	DNS *DNSCacheStatus `json:"dns,omitempty"`
}

// report builds the status report for the configuration now in force.
func (s *Server) report() StatusReport {
	st := s.state.Load()
	up, down, active := s.status.totals()
	r := StatusReport{
		Config:  st.cfg.Source,
		Started: s.status.started,
		Uptime:  time.Since(s.status.started).Round(time.Second).String(),
		Active:  s.active.Load(),
		NICs:    []NICStatus{},
	}
	s.status.mu.Lock()
	history := make(map[string][]Sample, len(s.status.history))
	for nic, h := range s.status.history {
		history[nic] = slices.Clone(h)
	}
	r.Recent = slices.Clone(s.status.recent)
	s.status.mu.Unlock()
	for _, nic := range st.cfg.NICs() {
		r.NICs = append(r.NICs, NICStatus{
			Name: nic, Up: st.dialer.Available(nic), Check: s.health.checkState(nic), Addresses: nicAddresses(nic),
			Active: active[nic], BytesUp: up[nic], BytesDown: down[nic],
			Throughput: history[nic], DNS: dnsCacheStatus(st, nic),
		})
	}
	return r
}

// DNSCacheStatus is one NIC's name cache on the status page.
type DNSCacheStatus struct {
	Hits    uint64  `json:"hits"`
	Misses  uint64  `json:"misses"`
	Queries uint64  `json:"queries"`
	Entries int     `json:"entries"`
	HitRate float64 `json:"hit_rate"` // hits over hits plus misses; 0 before any lookup
}

func dnsCacheStatus(st *state, nic string) *DNSCacheStatus {
	stats, ok := st.dialer.DNSStats(nic)
	if !ok {
		return nil
	}
	c := &DNSCacheStatus{Hits: stats.Hits, Misses: stats.Misses, Queries: stats.Queries, Entries: stats.Entries}
	if lookups := stats.Hits + stats.Misses; lookups > 0 {
		c.HitRate = float64(stats.Hits) / float64(lookups)
	}
	return c
}

func nicAddresses(name string) []string {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, a.String())
	}
	return out
}
