package admin

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"nicproxy/config"
)

// fakeSource is a proxy of two NICs, one of them absent.
type fakeSource struct{ cfg *config.Config }

func (f fakeSource) Config() *config.Config { return f.cfg }
func (f fakeSource) Active() int64          { return 3 }
func (f fakeSource) IsLocal(netip.Addr) bool {
	return false
}
func (f fakeSource) NIC(name string) NICState {
	if name == "wwan0" {
		return NICState{State: StateAbsent}
	}
	return NICState{State: StateUp, Check: "passing"}
}

func TestReport(t *testing.T) {
	cfg := &config.Config{
		Source:     "test.yaml",
		Default:    config.Via{Mode: config.ViaPinned, NICs: []string{"eth0"}},
		Interfaces: map[string]config.Interface{"wwan0": {}},
	}
	a := New(fakeSource{cfg})
	start := time.Now()
	for _, f := range []Flow{
		{Start: start, NIC: "eth0", Up: 100, Down: 4000, Result: "ok"},
		{Start: start, NIC: Unpinned, Up: 10, Down: 2000, Result: "ok"},
		{Start: start, NIC: "eth0", Result: "refused", Reason: "connection refused", Dest: "198.51.100.10:1"},
	} {
		a.Finished(f)
	}
	now := time.Unix(1_800_000_000, 0)
	a.status.sample(now, append(cfg.NICs(), Unpinned))
	r := a.Report(now)

	if len(r.NICs) != 2 || r.NICs[0].Name != "eth0" || r.NICs[1].Name != "wwan0" {
		t.Fatalf("NICs: %+v", r.NICs)
	}
	if eth0 := r.NICs[0]; eth0.State != StateUp || !eth0.Up || eth0.BytesUp != 100 || eth0.BytesDown != 4000 {
		t.Errorf("eth0: %+v", eth0)
	}
	if wwan0 := r.NICs[1]; wwan0.State != StateAbsent || wwan0.Up {
		t.Errorf("wwan0 is absent, not %+v", wwan0)
	}
	if u := r.Unpinned; u.Name != Unpinned || u.BytesUp != 10 || u.BytesDown != 2000 {
		t.Errorf("unpinned: %+v", u)
	}
	// One scale for every chart: the highest sample of any card.
	if r.Scale != 4000 {
		t.Errorf("scale = %v, want eth0's 4000 B/s", r.Scale)
	}
	if r.Window.End != now.Unix() || r.Window.Seconds != statusSamples-1 || r.Window.To != now.Format(clockFormat) {
		t.Errorf("window: %+v", r.Window)
	}
	if !strings.HasSuffix(r.Now, now.Format(" MST")) {
		t.Errorf("now %q does not name the server's zone", r.Now)
	}
	if len(r.Recent) != 3 || r.Recent[0].Reason != "connection refused" || r.Recent[0].NIC != "eth0" || r.Recent[0].Clock == "" {
		t.Errorf("recent: %+v", r.Recent)
	}
	if r.Active != 3 {
		t.Errorf("active = %d", r.Active)
	}
}
