package dnscache

import (
	"bufio"
	"net/netip"
	"os"
	"slices"
	"strings"
)

// hostsFile maps an absolute, lower-case name to its addresses in file
// order, as /etc/hosts lists them.
type hostsFile map[string][]netip.Addr

// parseHosts reads a hosts(5) file; a missing or unreadable one is empty.
func parseHosts(path string) hostsFile {
	hosts := hostsFile{}
	f, err := os.Open(path)
	if err != nil {
		return hosts
	}
	defer f.Close()
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		line := scanner.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		addr, err := netip.ParseAddr(fields[0])
		if err != nil {
			continue
		}
		addr = addr.Unmap()
		for _, name := range fields[1:] {
			key := absolute(name)
			if !slices.Contains(hosts[key], addr) {
				hosts[key] = append(hosts[key], addr)
			}
		}
	}
	return hosts
}
