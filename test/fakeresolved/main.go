// Command fakeresolved is a stand-in for systemd-resolved's D-Bus API in
// the lab: it owns org.freedesktop.resolve1 on the bus named by
// DBUS_SYSTEM_BUS_ADDRESS and exports the Manager's GetLink and, per NIC,
// a Link object whose DNS property (a(iay)) lists the servers the state
// file names for it. Run in the lab's host namespace, it maps NIC names to
// that namespace's link indexes, as resolved does for its own.
//
// The state file has one line per NIC: "ens33 198.51.100.53 ...", or
// "@3 198.51.100.53" for the link of index 3 whatever its name (a
// resolved of another namespace, whose indexes name other NICs). On
// SIGHUP it is read again and the Link objects' DNS properties change,
// with PropertiesChanged signals, as resolved's do when a DHCP lease or
// `resolvectl dns` changes them; then it prints "updated".
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/prop"
)

const (
	busName     = "org.freedesktop.resolve1"
	managerPath = "/org/freedesktop/resolve1"
	linkIface   = "org.freedesktop.resolve1.Link"
)

// dnsEntry is one element of the Link's DNS property: family, address.
type dnsEntry struct {
	Family int32
	Addr   []byte
}

type manager struct{ paths map[int32]dbus.ObjectPath }

// GetLink is org.freedesktop.resolve1.Manager.GetLink.
func (m manager) GetLink(index int32) (dbus.ObjectPath, *dbus.Error) {
	if p, ok := m.paths[index]; ok {
		return p, nil
	}
	return "", dbus.NewError("org.freedesktop.resolve1.NoSuchLink", []any{fmt.Sprintf("link %d not known", index)})
}

func main() {
	state := flag.String("state", "", "state `FILE`: one line per NIC, its name then its servers")
	flag.Parse()
	if err := run(*state); err != nil {
		fmt.Fprintln(os.Stderr, "fakeresolved:", err)
		os.Exit(1)
	}
}

func run(state string) error {
	servers, err := readState(state)
	if err != nil {
		return err
	}
	conn, err := dbus.ConnectSystemBus()
	if err != nil {
		return err
	}
	defer conn.Close()
	m := manager{paths: map[int32]dbus.ObjectPath{}}
	props := map[string]*prop.Properties{}
	for nic, addrs := range servers {
		index, err := linkIndex(nic)
		if err != nil {
			return err
		}
		path := dbus.ObjectPath(fmt.Sprintf("%s/link/_%d", managerPath, index))
		m.paths[int32(index)] = path
		p, err := prop.Export(conn, path, prop.Map{linkIface: {
			"DNS": {Value: entries(addrs), Writable: false, Emit: prop.EmitTrue},
		}})
		if err != nil {
			return err
		}
		props[nic] = p
	}
	if err := conn.Export(m, managerPath, "org.freedesktop.resolve1.Manager"); err != nil {
		return err
	}
	reply, err := conn.RequestName(busName, dbus.NameFlagDoNotQueue)
	if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		return fmt.Errorf("request %s: %v (reply %v)", busName, err, reply)
	}
	fmt.Println("ready")
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	for {
		select {
		case <-term:
			return nil
		case <-hup:
			servers, err := readState(state)
			if err != nil {
				return err
			}
			for nic, p := range props {
				p.SetMust(linkIface, "DNS", entries(servers[nic]))
			}
			fmt.Println("updated")
		}
	}
}

// linkIndex is the index of the link a state line names.
func linkIndex(nic string) (int, error) {
	if n, ok := strings.CutPrefix(nic, "@"); ok {
		return strconv.Atoi(n)
	}
	ifi, err := net.InterfaceByName(nic)
	if err != nil {
		return 0, err
	}
	return ifi.Index, nil
}

func entries(addrs []netip.Addr) []dnsEntry {
	out := []dnsEntry{}
	for _, a := range addrs {
		family := int32(syscall.AF_INET)
		if a.Is6() {
			family = syscall.AF_INET6
		}
		out = append(out, dnsEntry{Family: family, Addr: a.AsSlice()})
	}
	return out
}

func readState(path string) (map[string][]netip.Addr, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	servers := map[string][]netip.Addr{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		servers[fields[0]] = []netip.Addr{}
		for _, s := range fields[1:] {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, err
			}
			servers[fields[0]] = append(servers[fields[0]], a)
		}
	}
	return servers, sc.Err()
}
