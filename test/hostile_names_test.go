package test

import (
	"bufio"
	"fmt"
	"net/http"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"nicproxy/test/netlab"
)

// refusing is the upstream namespace's block of local addresses with no
// listener: every connection attempt to one is answered with a reset,
// which the namespace counts (Tcp OutRsts).
var refusing = netip.MustParsePrefix("198.51.100.128/25")

// upstreamResets reads the upstream namespace's count of TCP resets sent.
func upstreamResets(t *testing.T, lab *netlab.Lab) int {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", lab.Upstream, "cat", "/proc/net/snmp").Output()
	if err != nil {
		t.Fatalf("read the upstream's /proc/net/snmp: %v", err)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		rest, ok := strings.CutPrefix(line, "Tcp: ")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if names == nil {
			names = fields
			continue
		}
		for i, name := range names {
			if name == "OutRsts" && i < len(fields) {
				n, err := strconv.Atoi(fields[i])
				if err != nil {
					t.Fatal(err)
				}
				return n
			}
		}
	}
	t.Fatalf("no Tcp OutRsts in\n%s", out)
	return 0
}

// TestHostileManyRecords: one CONNECT to a name with 4,000 A records, none
// of which accepts, makes at most upstream.MaxAttempts (25) connection
// attempts through its NIC; it used to make one per record. The answer is
// too large for UDP: the resolver asks again over TCP.
func TestHostileManyRecords(t *testing.T) {
	const records, maxAttempts = 4000, 25
	lab := netlab.New(t)
	// 128 addresses, each given 31 or 32 times: the lab's documentation
	// space has no 4,000 distinct ones, and a repeat is one more record
	// for a resolver that keeps what it is given.
	var addrs []netip.Addr
	for a := refusing.Addr(); len(addrs) < records; a = a.Next() {
		if !refusing.Contains(a) {
			a = refusing.Addr()
		}
		addrs = append(addrs, a)
	}
	lab.UseDNS(lab.StartDNSZone(netlab.Zone{
		Records:  map[string][]netip.Addr{"many.test": addrs},
		Truncate: map[string]bool{"many.test": true},
	}).Addr())
	if out, err := exec.Command("ip", "-n", lab.Upstream, "route", "add", "local", refusing.String(), "dev", "lo").CombinedOutput(); err != nil {
		t.Fatalf("route %s locally in the upstream: %v: %s", refusing, err, out)
	}
	lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", "default: ens160\n")

	before, resets := lab.Snapshot(), upstreamResets(t, lab)
	conn := dialProxy(t, lab)
	defer conn.Close()
	fmt.Fprintf(conn, "CONNECT many.test:80 HTTP/1.1\r\nHost: many.test:80\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	attempts := upstreamResets(t, lab) - resets
	t.Logf("CONNECT to a name of %d records: %s after %d attempts", records, resp.Status, attempts)
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("%s, want 502: every address refuses", resp.Status)
	}
	if attempts < 2 || attempts > maxAttempts {
		t.Errorf("%d connection attempts reached the upstream, want between 2 and %d", attempts, maxAttempts)
	}
	// Every attempt, and the lookup, left through ens160.
	checkCounters(t, before, attempts*40, netlab.Ens160, netlab.Ens33)
}
