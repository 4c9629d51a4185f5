package test

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"nicproxy/test/netlab"
)

// Hostile clients (issue 8): each test attacks the built binary as an
// attacker would, then checks that a normal client is still served, pinned,
// and that the proxy's goroutines and descriptors are back to where they
// were before the attack.

// hostileLab is a serving lab with one nicproxy process under attack and
// its admin endpoint, which reports its goroutines.
type hostileLab struct {
	*servingLab
	proc  *netlab.Proc
	admin string // http://127.0.0.1:9090
}

// startHostile starts nicproxy with yaml, which must have a mixed listener
// on 127.0.0.1:1080 and admin on 127.0.0.1:9090.
func startHostile(t *testing.T, yaml string) *hostileLab {
	return startHostileBinary(t, nicproxyBinary, yaml)
}

func startHostileBinary(t testing.TB, binary, yaml string) *hostileLab {
	t.Helper()
	l := netlab.New(t)
	lab := &servingLab{Lab: l, web: l.StartWeb(), echo: l.StartEcho()}
	// Names that lead back to the proxy host, for the loop tests.
	l.UseDNS(l.StartDNS(map[string]netip.Addr{
		"web.test":  netlab.Server,
		"self.test": netlab.Ens33.Addr,
		"lo.test":   netip.MustParseAddr("127.0.0.1"),
	}))
	h := &hostileLab{servingLab: lab, admin: "http://127.0.0.1:9090"}
	h.proc = lab.StartProxy(binary, "127.0.0.1:1080", yaml)
	if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", h.proc.Pid())); !strings.HasSuffix(exe, "nicproxy") {
		t.Fatalf("pid %d is %s, not nicproxy", h.proc.Pid(), exe)
	}
	return h
}

// fds counts the proxy's open descriptors.
func (h *hostileLab) fds(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", h.proc.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// memory reads a /proc/PID/status field in bytes (VmRSS: now; VmHWM: the
// peak since start).
func (h *hostileLab) memory(t *testing.T, field string) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", h.proc.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, h.proc.Pid())
	return 0
}

// goroutines reads go_goroutines from the admin endpoint.
func (h *hostileLab) goroutines(t *testing.T) int {
	t.Helper()
	out, stderr, err := h.Curl("--fail", h.admin+"/metrics")
	if err != nil {
		t.Fatalf("metrics: %v: %s", err, stderr)
	}
	return int(metric(t, out, "go_goroutines"))
}

// usage is what an attack must give back.
type usage struct{ fds, goroutines int }

func (h *hostileLab) usage(t *testing.T) usage {
	t.Helper()
	return usage{h.fds(t), h.goroutines(t)}
}

// backToBaseline waits until descriptors and goroutines are within a small
// margin of base (a pooled keep-alive connection, the metrics scrape's own
// goroutine), failing after 20 s.
func (h *hostileLab) backToBaseline(t *testing.T, base usage) {
	t.Helper()
	var now usage
	eventually(t, 20*time.Second, func() bool {
		now = h.usage(t)
		return now.fds <= base.fds+4 && now.goroutines <= base.goroutines+8
	}, func() string {
		return fmt.Sprintf("descriptors %d and goroutines %d, baseline %d and %d", now.fds, now.goroutines, base.fds, base.goroutines)
	})
}

// normalClient checks that an ordinary pinned request is served.
func (h *hostileLab) normalClient(t *testing.T, proxy string) {
	t.Helper()
	before := h.Snapshot()
	f := h.curlUpload(t, nil, h.url("http", "web.test", "/echo"), "--proxy", proxy)
	checkPinned(t, before, f, netlab.Ens160, netlab.Ens33)
}

// startMeasured starts the attack lab for a test that measures memory:
// on the binary users run (the race detector's shadow memory would
// multiply every buffer), pinned to ens160, with one normal client served
// so pools and runtime settle. It returns the descriptors and goroutines
// and the RSS to compare with after the attack.
func startMeasured(t *testing.T) (*hostileLab, usage, int64) {
	t.Helper()
	h := startHostileBinary(t, plainBinary(t), `
admin: {addr: "127.0.0.1:9090"}
default: ens160
`)
	h.normalClient(t, "http://127.0.0.1:1080")
	return h, h.usage(t), h.memory(t, "VmRSS")
}

// plainBinary builds nicproxy without the race detector, once per run.
func plainBinary(t testing.TB) string {
	t.Helper()
	plain.once.Do(func() {
		dir := filepath.Join(filepath.Dir(nicproxyBinary), "plain")
		path := filepath.Join(dir, "nicproxy")
		out, err := exec.Command("go", "build", "-o", path, "nicproxy/cmd/nicproxy").CombinedOutput()
		if err != nil {
			plain.err = fmt.Errorf("build nicproxy without -race: %v\n%s", err, out)
		}
		plain.path = path
	})
	if plain.err != nil {
		t.Fatal(plain.err)
	}
	return plain.path
}

// plain is the binary plainBinary builds; the build is shared by tests.
var plain struct {
	once sync.Once
	path string
	err  error
}

// TestHostileHeaderFlood: 2,000 clients each start an HTTP request whose
// header line never ends (1 MiB of it). Before limits.max_header_bytes and
// limits.max_handshakes, each held about 2.5 MiB until it gave up; now the
// proxy's peak RSS may rise by less than 300 MiB, each gets 431 (or waits
// in the backlog), and a normal client is served meanwhile.
func TestHostileHeaderFlood(t *testing.T) {
	const clients = 2000
	h, base, rssBefore := startMeasured(t)

	line := make([]byte, 16<<10)
	for i := range line {
		line[i] = 'a'
	}
	type result struct {
		status string
		err    error
	}
	results := make(chan result, clients)
	conns := make([]net.Conn, 0, clients)
	for range clients {
		conn, err := h.DialHost("tcp", "127.0.0.1:1080")
		if err != nil {
			t.Fatalf("attacker %d: %v", len(conns), err)
		}
		conns = append(conns, conn)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for _, conn := range conns {
		go func() {
			_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
			fmt.Fprintf(conn, "GET http://web.test/ HTTP/1.1\r\nHost: web.test\r\nX-Flood: ")
			for written := 0; written < 1<<20; written += len(line) {
				if _, err := conn.Write(line); err != nil {
					break // the proxy answered and closed
				}
			}
			status, err := bufio.NewReader(conn).ReadString('\n')
			results <- result{strings.TrimSpace(status), err}
		}()
	}
	// A normal client is served while the flood is on.
	h.normalClient(t, "http://127.0.0.1:1080")

	statuses := map[string]int{}
	for range clients {
		r := <-results
		switch {
		case errors.Is(r.err, syscall.ECONNRESET):
			statuses["reset"]++
		case r.err != nil:
			statuses["error: "+r.err.Error()]++
		default:
			statuses[r.status]++
		}
	}
	peak := h.memory(t, "VmHWM")
	t.Logf("RSS %d MiB before, peak %d MiB during %d endless headers; answers: %v", rssBefore>>20, peak>>20, clients, statuses)
	if rise := peak - rssBefore; rise > 300<<20 {
		t.Errorf("peak RSS rose by %d MiB, want under 300 MiB", rise>>20)
	}
	if n := statuses["HTTP/1.1 431 Request Header Fields Too Large"]; n < clients*9/10 {
		t.Errorf("%d of %d attackers got 431, want nearly all: %v", n, clients, statuses)
	}
	for _, c := range conns {
		c.Close()
	}
	h.backToBaseline(t, base)
	h.normalClient(t, "socks5h://127.0.0.1:1080")
}
