//go:build linux

package test

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"nicproxy/test/netlab"
)

// slowNamesLab is a lab whose DNS server never answers within a test,
// with nicproxy (binary) serving SOCKS5 on 127.0.0.1:1080 through ens160.
// ens160 names the server five times, so a lookup tries it five times, a
// second each (the lab resolv.conf's timeout), before it gives up: every
// lookup started holds its sockets for five seconds.
func slowNamesLab(t *testing.T, binary string) (*netlab.Lab, *netlab.Echo, *netlab.DNS, *netlab.Proc) {
	t.Helper()
	lab := netlab.New(t)
	echo := lab.StartEcho()
	dns := lab.StartDNSZone(netlab.Zone{Delay: time.Hour})
	lab.UseDNS(dns.Addr())
	server := dns.Addr().String()
	proc := lab.StartProxy(binary, "127.0.0.1:1080", fmt.Sprintf(`
interfaces: {ens160: {dns: [%[1]s, %[1]s, %[1]s, %[1]s, %[1]s]}}
default: ens160
timeouts: {dial: 30s}
`, server))
	return lab, echo, dns, proc
}

// peakDuring samples the proxy's descriptors and resident memory every few
// milliseconds while fn runs, and returns the highest of each (memory in
// KiB).
func peakDuring(t *testing.T, pid int, fn func()) (fds, rssKiB int) {
	t.Helper()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			if rss, n, err := readProcStat(pid); err == nil {
				fds, rssKiB = max(fds, n), max(rssKiB, rss)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	defer func() { close(done); wg.Wait() }()
	fn()
	return // the results are the sampler's, final once the deferred wait is over
}

// warned waits up to timeout for the proxy to log a line containing
// text, and reports whether it did.
func warned(proc *netlab.Proc, text string, timeout time.Duration) bool {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if strings.Contains(proc.Output(), text) {
			return true
		}
	}
	return false
}

// stillRelays checks that the association still relays, pinned: a
// datagram to the echo server comes back, the server saw ens160, and ens33
// sent nothing.
func stillRelays(t *testing.T, lab *netlab.Lab, udp *net.UDPConn, relay netip.AddrPort, echo *netlab.Echo) {
	t.Helper()
	before := lab.Snapshot()
	_, reply := udpExchange(t, udp, relay, netlab.Server.String(), echo.UDP.Port(), []byte("still relays"))
	seen, data := echoed(t, reply)
	if data != "still relays" {
		t.Errorf("echo %q, want the datagram sent", data)
	}
	checkPinned(t, before, flow{seen: seen, sent: len(data)}, netlab.Ens160, netlab.Ens33)
}

// TestUDPAssociationLookupBound: one association sending to 4,096 names
// that never answer holds a bounded number of lookups, so the proxy stays
// under 300 descriptors (it held two DNS sockets per name: 8,212 for
// 4,096 names), and the association still relays, pinned, meanwhile.
func TestUDPAssociationLookupBound(t *testing.T) {
	const names = 4096
	lab, echo, dns, proc := slowNamesLab(t, nicproxyBinary)
	_, relay, udp := udpAssociate(t, lab)
	udpExchange(t, udp, relay, netlab.Server.String(), echo.UDP.Port(), []byte("warm"))
	_, base := procStat(t, proc.Pid())

	var bounded bool
	peak, _ := peakDuring(t, proc.Pid(), func() {
		for i := range names {
			udpSend(t, udp, relay, fmt.Sprintf("n%d.slow.test", i), 9, "x")
			if i%32 == 31 {
				time.Sleep(time.Millisecond) // the relay's socket buffer is not the bound under test
			}
		}
		bounded = warned(proc, "too many names are being looked up", 10*time.Second)
		// The lookups that took the last slots open their sockets just
		// after: go on sampling, well within the five seconds they last.
		time.Sleep(time.Second)
	})
	t.Logf("%d names: at most %d descriptors (%d before), %d DNS queries", names, peak, base, dns.Total())
	if peak >= 300 {
		t.Errorf("nicproxy held %d descriptors for one association's %d slow names, want under 300", peak, names)
	}
	if q := dns.Total(); q == 0 || !bounded {
		t.Fatalf("%d DNS queries, bound reached %v: the test never reached the bound it is about", q, bounded)
	}
	stillRelays(t, lab, udp, relay, echo)
}

// TestUDPAssociationByteBudget: an association flooding datagrams of 60 KB
// to names that never answer holds at most its byte budget for them: the
// proxy's peak resident memory grows by less than 1 MiB and a margin (it
// grew by what the client sent, 16 datagrams a name).
func TestUDPAssociationByteBudget(t *testing.T) {
	const (
		names    = 256
		perName  = 16
		size     = 60000
		budget   = 1 << 20
		marginKB = 16 << 10
	)
	lab, echo, dns, proc := slowNamesLab(t, plainBinary(t))
	_, relay, udp := udpAssociate(t, lab)
	udpExchange(t, udp, relay, netlab.Server.String(), echo.UDP.Port(), []byte("warm"))
	base, _ := procStat(t, proc.Pid())
	payload := strings.Repeat("b", size)

	var bounded bool
	_, peak := peakDuring(t, proc.Pid(), func() {
		for i := range names {
			for j := range perName {
				udpSend(t, udp, relay, fmt.Sprintf("n%d.slow.test", i), 9, payload)
				if j%2 == 1 {
					time.Sleep(100 * time.Microsecond) // the relay's socket buffer is not the bound under test
				}
			}
		}
		bounded = warned(proc, "the association holds its budget of queued bytes", 10*time.Second)
	})
	growth := peak - base
	t.Logf("%d names × %d datagrams of %d bytes: resident memory %d KiB at most, %d KiB before (+%d KiB); %d DNS queries",
		names, perName, size, peak, base, growth, dns.Total())
	if growth >= budget>>10+marginKB {
		t.Errorf("resident memory grew by %d KiB, want under the %d KiB budget and a %d KiB margin", growth, budget>>10, marginKB)
	}
	if q := dns.Total(); q == 0 || !bounded {
		t.Fatalf("%d DNS queries, budget reached %v: the flood never reached the bound it is about", q, bounded)
	}
	stillRelays(t, lab, udp, relay, echo)
}

// TestUDPLookupBoundOverAllAssociations: associations together look up at
// most 1,024 names at once. 24 associations each send to 64 names that
// never answer (each within its own bound of 64); every lookup in flight
// holds a socket per question (A and AAAA), so the proxy's descriptors
// grow by at most 2,048 and a small slack, where all 1,536 lookups held
// 3,072.
func TestUDPLookupBoundOverAllAssociations(t *testing.T) {
	const (
		associations = 24
		perAssoc     = 64
		total        = 1024
		slack        = 32
	)
	lab, echo, _, proc := slowNamesLab(t, nicproxyBinary)
	type assoc struct {
		relay netip.AddrPort
		udp   *net.UDPConn
	}
	var as []assoc
	for range associations {
		_, relay, udp := udpAssociate(t, lab)
		udpExchange(t, udp, relay, netlab.Server.String(), echo.UDP.Port(), []byte("warm"))
		as = append(as, assoc{relay, udp})
	}
	_, base := procStat(t, proc.Pid())
	var bounded bool
	peak, _ := peakDuring(t, proc.Pid(), func() {
		for a, x := range as {
			for i := range perAssoc {
				udpSend(t, x.udp, x.relay, fmt.Sprintf("n%d.a%d.slow.test", i, a), 9, "x")
			}
		}
		// Each association stays within its own 64: only the bound over
		// all of them refuses a name.
		bounded = warned(proc, "too many names are being looked up", 10*time.Second)
		// The lookups that took the last slots open their sockets just
		// after: go on sampling, well within the five seconds they last.
		time.Sleep(time.Second)
	})
	t.Logf("%d associations × %d names: at most %d descriptors (%d before)", associations, perAssoc, peak, base)
	if grown := peak - base; grown > 2*total+slack {
		t.Errorf("descriptors grew by %d, want at most %d (two per lookup, %d lookups) and %d", grown, 2*total+slack, total, slack)
	}
	if !bounded {
		t.Error("no name was refused: the lookups never reached the bound over all associations")
	}
}
