package admin

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

// Server-side time formats: the page shows times as the server writes
// them, in its zone, so every time on it reads alike whatever the
// browser's locale.
const (
	clockFormat = "15:04:05"
	stampFormat = "2006-01-02 15:04:05 MST"
)

// status tracks what the status page shows: per-NIC live byte counts
// (finished connections plus what open tunnels have moved so far, read from
// the kernel's TCP_INFO of their upstream sockets, so the relay stays
// unwrapped), throughput samples, and the latest finished connections.
type status struct {
	started time.Time

	mu         sync.Mutex
	live       map[*tunnel]struct{} // relaying now
	closedUp   map[string]uint64    // bytes of finished connections, by NIC
	closedDown map[string]uint64
	last       map[string][2]uint64 // totals at the previous sample
	history    map[string][]Sample  // throughput samples, oldest first
	recent     []ConnectionInfo     // newest first
}

// tunnel is one open tunnel the status page counts live.
type tunnel struct {
	nic      string
	upstream *net.TCPConn
}

// Sample is one throughput sample of one NIC, in bytes per second.
type Sample struct {
	Time  int64   `json:"t"`     // Unix seconds
	Clock string  `json:"clock"` // the same, as the server's clock reads it
	Up    float64 `json:"up"`
	Down  float64 `json:"down"`
}

// ConnectionInfo is one finished connection as the status page lists it.
type ConnectionInfo struct {
	End      time.Time `json:"end"`
	Clock    string    `json:"clock"` // End on the server's clock
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
	Reason   string    `json:"reason,omitempty"`
	Unit     string    `json:"unit,omitempty"`
	UID      *uint32   `json:"uid,omitempty"`
	Program  string    `json:"program,omitempty"`
}

func newStatus() *status {
	return &status{
		started:    time.Now(),
		live:       map[*tunnel]struct{}{},
		closedUp:   map[string]uint64{},
		closedDown: map[string]uint64{},
		last:       map[string][2]uint64{},
		history:    map[string][]Sample{},
	}
}

// relaying registers an open tunnel until the returned func is called.
func (st *status) relaying(nic string, upstream *net.TCPConn) func() {
	t := &tunnel{nic: nic, upstream: upstream}
	st.mu.Lock()
	st.live[t] = struct{}{}
	st.mu.Unlock()
	return func() {
		st.mu.Lock()
		delete(st.live, t)
		st.mu.Unlock()
	}
}

// finished records a connection that ended.
func (st *status) finished(f Flow) {
	now := time.Now()
	st.mu.Lock()
	defer st.mu.Unlock()
	if f.NIC != "" {
		st.closedUp[f.NIC] += uint64(f.Up)
		st.closedDown[f.NIC] += uint64(f.Down)
	}
	st.recent = slices.Insert(st.recent, 0, ConnectionInfo{
		End: now, Clock: now.Format(clockFormat), Client: f.Client.String(), User: f.User,
		Protocol: f.Protocol, Dest: f.Dest, Rule: f.Rule, NIC: f.NIC, Up: f.Up, Down: f.Down,
		Duration: now.Sub(f.Start).Round(time.Millisecond).String(), Result: f.Result, Reason: f.Reason,
		Unit: f.Unit, UID: knownUID(f.UID, f.HasUID), Program: f.Program,
	})
	if len(st.recent) > statusRecent {
		st.recent = st.recent[:statusRecent]
	}
}

// knownUID is uid for JSON, nil (left out) when unknown.
func knownUID(uid uint32, known bool) *uint32 {
	if !known {
		return nil
	}
	return &uid
}

// totals returns, per NIC, bytes moved so far and open tunnels.
func (st *status) totals() (up, down map[string]uint64, active map[string]int) {
	st.mu.Lock()
	up, down, active = cloneMap(st.closedUp), cloneMap(st.closedDown), map[string]int{}
	live := make([]*tunnel, 0, len(st.live))
	for t := range st.live {
		live = append(live, t)
	}
	st.mu.Unlock()
	// The kernel is asked outside the lock: a status page must not slow
	// down connections opening and closing.
	for _, t := range live {
		active[t.nic]++
		if sent, received, ok := socketBytes(t.upstream); ok {
			up[t.nic] += sent
			down[t.nic] += received
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
		s := Sample{Time: now.Unix(), Clock: now.Format(clockFormat),
			Up: rate(prev[0], cur[0], secs), Down: rate(prev[1], cur[1], secs)}
		st.history[nic] = append(st.history[nic], s)
		if n := len(st.history[nic]); n > statusSamples {
			st.history[nic] = st.history[nic][n-statusSamples:]
		}
	}
}

// rate is bytes per second between two totals; a total can step back a
// little when a tunnel closes between a sample and its access-log count.
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
