package admin

import (
	"net"
	"slices"
	"time"
)

// Report is what /api/status returns and the status page shows.
type Report struct {
	Config  string    `json:"config"`
	Started time.Time `json:"started"`
	// Now is the server's time as its clock reads it, with its zone: the
	// page shows every time in this format, not the browser's.
	Now    string `json:"now"`
	Uptime string `json:"uptime"`
	Active int64  `json:"active_connections"`
	// NICs are the configured NICs, in configuration order.
	NICs []NICStatus `json:"nics"`
	// Unpinned is traffic no NIC carries pinned: loopback destinations
	// and via: system, which the routing table sends where it will.
	Unpinned NICStatus `json:"unpinned"`
	// Scale is the highest throughput (bytes/s) any chart shows, so
	// every chart is drawn on one scale and the NICs compare at a glance.
	Scale float64 `json:"scale"`
	// Window is the time every chart spans, the same for all.
	Window Window           `json:"window"`
	Recent []ConnectionInfo `json:"recent"`
}

// Window is the span of the throughput charts: statusSamples seconds up
// to the latest sample.
type Window struct {
	End     int64  `json:"end"`     // Unix seconds of the latest sample
	Seconds int    `json:"seconds"` // how long the window is
	From    string `json:"from"`    // its start, on the server's clock
	To      string `json:"to"`      // its end, on the server's clock
}

// NICStatus is one NIC (or the unpinned traffic) on the status page.
type NICStatus struct {
	Name string `json:"name"`
	// State is up, down or absent, as `nicproxy check` names it; ""
	// for the unpinned card.
	State      string   `json:"state"`
	Up         bool     `json:"up"`              // State is up
	Check      string   `json:"check,omitempty"` // the health check: passing, failing since …, pending
	Addresses  []string `json:"addresses"`
	Active     int      `json:"active"`
	BytesUp    uint64   `json:"bytes_up"`
	BytesDown  uint64   `json:"bytes_down"`
	Throughput []Sample `json:"throughput"`
	// DNS is the NIC's name cache, once it has looked anything up.
	DNS *DNSCache `json:"dns,omitempty"`
}

// Report builds the status report for the configuration now in force.
func (a *Admin) Report(now time.Time) Report {
	cfg := a.src.Config()
	up, down, active := a.status.totals()
	st := a.status
	r := Report{
		Config:  cfg.Source,
		Started: st.started,
		Now:     now.Format(stampFormat),
		Uptime:  now.Sub(st.started).Round(time.Second).String(),
		Active:  a.src.Active(),
		NICs:    []NICStatus{},
	}
	st.mu.Lock()
	history := make(map[string][]Sample, len(st.history))
	for nic, h := range st.history {
		history[nic] = slices.Clone(h)
	}
	r.Recent = slices.Clone(st.recent)
	st.mu.Unlock()
	for _, nic := range cfg.NICs() {
		state := a.src.NIC(nic)
		r.NICs = append(r.NICs, NICStatus{
			Name: nic, State: state.State, Up: state.State == StateUp, Check: state.Check,
			Addresses: nicAddresses(nic), Active: active[nic], BytesUp: up[nic], BytesDown: down[nic],
			Throughput: history[nic], DNS: state.DNS,
		})
	}
	r.Unpinned = NICStatus{
		Name: Unpinned, Addresses: []string{}, Active: active[Unpinned],
		BytesUp: up[Unpinned], BytesDown: down[Unpinned], Throughput: history[Unpinned],
	}
	end := now.Unix()
	for _, n := range append(slices.Clone(r.NICs), r.Unpinned) {
		for _, s := range n.Throughput {
			r.Scale = max(r.Scale, s.Up, s.Down)
			end = s.Time
		}
	}
	span := time.Duration(statusSamples-1) * statusInterval
	to := time.Unix(end, 0)
	r.Window = Window{End: end, Seconds: int(span.Seconds()), From: to.Add(-span).Format(clockFormat), To: to.Format(clockFormat)}
	return r
}

func nicAddresses(name string) []string {
	out := []string{}
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return out
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return out
	}
	for _, a := range addrs {
		out = append(out, a.String())
	}
	return out
}
