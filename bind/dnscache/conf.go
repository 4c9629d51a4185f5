package dnscache

import (
	"bufio"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults of resolv(5), as glibc and Go's resolver use them.
const (
	defaultNdots    = 1
	defaultTimeout  = 5 * time.Second
	defaultAttempts = 2
	// Limits glibc applies to the options; a larger value is clamped.
	maxNdots    = 15
	maxTimeout  = 30 * time.Second
	maxAttempts = 5
)

// resolvConf is what the resolver takes from a resolv.conf file.
type resolvConf struct {
	servers  []netip.Addr // in file order, port 53 implied
	search   []string     // absolute ("example.com."), lower case
	ndots    int
	timeout  time.Duration
	attempts int
	rotate   bool
	useTCP   bool // options use-vc / tcp
}

// parseResolvConf reads path; a missing or unreadable file yields the
// defaults with no nameservers, as for Go and glibc (which then ask
// localhost, a loopback stub the caller replaces or refuses).
func parseResolvConf(path string) *resolvConf {
	conf := &resolvConf{ndots: defaultNdots, timeout: defaultTimeout, attempts: defaultAttempts}
	f, err := os.Open(path)
	if err != nil {
		return conf
	}
	defer f.Close()
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		line := scanner.Text()
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		switch fields[0] {
		case "nameserver":
			if len(fields) < 2 {
				continue
			}
			if addr, err := netip.ParseAddr(fields[1]); err == nil {
				conf.servers = append(conf.servers, addr.Unmap())
			}
		case "domain":
			// resolv(5): the last of domain and search wins.
			if len(fields) > 1 {
				conf.search = []string{absolute(fields[1])}
			}
		case "search":
			conf.search = conf.search[:0:0]
			for _, d := range fields[1:] {
				if d = absolute(d); d != "." {
					conf.search = append(conf.search, d)
				}
			}
		case "options":
			for _, opt := range fields[1:] {
				conf.option(opt)
			}
		}
	}
	return conf
}

// option applies one `options` word; unknown ones are ignored, as by glibc.
func (c *resolvConf) option(opt string) {
	name, value, _ := strings.Cut(opt, ":")
	n, err := strconv.Atoi(value)
	switch name {
	case "ndots":
		if err == nil {
			c.ndots = min(max(n, 0), maxNdots)
		}
	case "timeout":
		if err == nil {
			c.timeout = min(time.Duration(max(n, 1))*time.Second, maxTimeout)
		}
	case "attempts":
		if err == nil {
			c.attempts = min(max(n, 1), maxAttempts)
		}
	case "rotate":
		c.rotate = true
	case "use-vc", "usevc", "tcp":
		c.useTCP = true
	}
}

// absolute lower-cases a domain and gives it its trailing dot.
func absolute(name string) string {
	name = strings.ToLower(name)
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	return name
}

// nameList returns the names to try for name, in order, per resolv(5): a
// name with a trailing dot is only itself; one with at least ndots dots is
// tried as is first, then with each search domain; a shorter one the other
// way round.
func (c *resolvConf) nameList(name string) []string {
	if strings.HasSuffix(name, ".") {
		return []string{name}
	}
	asIs := name + "."
	names := make([]string, 0, 1+len(c.search))
	dotted := strings.Count(name, ".") >= c.ndots
	if dotted {
		names = append(names, asIs)
	}
	for _, suffix := range c.search {
		if len(name)+1+len(suffix) <= 254 {
			names = append(names, name+"."+suffix)
		}
	}
	if !dotted {
		names = append(names, asIs)
	}
	return names
}

// Nameservers reads the non-loopback nameservers of a resolv.conf file
// (the servers systemd-resolved forwards to, behind its loopback stub), on
// port 53; a missing or unreadable file has none. Link-local servers, whose
// zone names some other interface, are left out too.
func Nameservers(path string) []netip.AddrPort {
	var servers []netip.AddrPort
	for _, addr := range parseResolvConf(path).servers {
		if addr.IsLoopback() || addr.Zone() != "" {
			continue
		}
		servers = append(servers, netip.AddrPortFrom(addr, 53))
	}
	return servers
}

// confCheckInterval is how often the files are checked for changes at
// most, as Go's resolver does: a stat per lookup would cost more than the
// cache saves.
const confCheckInterval = 5 * time.Second

// watchedFile re-parses a file when its modification time or size changes,
// checking at most every interval.
type watchedFile[T any] struct {
	path     string
	parse    func(path string) T
	interval time.Duration

	mu      sync.Mutex
	checked time.Time // when the file was last stat-ed
	modTime time.Time
	size    int64
	value   T
	loaded  bool
}

// get returns the parsed file, re-reading it first when it may have changed.
func (w *watchedFile[T]) get(now time.Time) T {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.loaded && now.Sub(w.checked) < w.interval {
		return w.value
	}
	w.checked = now
	var modTime time.Time
	var size int64 = -1
	if fi, err := os.Stat(w.path); err == nil {
		modTime, size = fi.ModTime(), fi.Size()
	}
	if w.loaded && modTime.Equal(w.modTime) && size == w.size {
		return w.value
	}
	w.modTime, w.size = modTime, size
	w.value = w.parse(w.path)
	w.loaded = true
	return w.value
}
