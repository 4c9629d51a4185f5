// Package linkdns finds each NIC's own DNS servers where the host keeps
// them per link: systemd-resolved (`resolvectl dns ens160`), read through
// its D-Bus API (org.freedesktop.resolve1: Manager.GetLink, then the Link
// object's DNS property), which NetworkManager and systemd-networkd feed
// from DHCP leases and their own settings.
//
// A Watcher keeps every NIC's servers in memory and follows changes (the
// Link objects' PropertiesChanged signals, and a re-read every interval
// for a resolved that sends none), so a lookup reads a map.
package linkdns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/godbus/dbus/v5"
	"go.uber.org/zap"
)

// The names of systemd-resolved's D-Bus API (org.freedesktop.resolve1(5)).
const (
	busName       = "org.freedesktop.resolve1"
	managerPath   = "/org/freedesktop/resolve1"
	getLink       = "org.freedesktop.resolve1.Manager.GetLink"
	linkInterface = "org.freedesktop.resolve1.Link"
)

// Origin names where a Watcher's servers come from, for check and doctor.
const Origin = "systemd-resolved (D-Bus org.freedesktop.resolve1, the link's DNS)"

// DefaultInterval is how often a Watcher re-reads every link's servers
// besides following signals.
const DefaultInterval = 5 * time.Second

// ErrOtherNamespace is wrapped by the error of a source whose
// systemd-resolved runs in another network namespace: its links (by index)
// are not this process's NICs, and their servers may be unreachable here.
var ErrOtherNamespace = errors.New("systemd-resolved runs in another network namespace")

// Watcher holds each NIC's per-link servers. It is safe for concurrent use.
type Watcher struct {
	log      *zap.Logger
	interval time.Duration
	servers  atomic.Pointer[map[string][]netip.AddrPort]
}

// NewWatcher returns a Watcher that knows no servers until Run reads them.
func NewWatcher(log *zap.Logger) *Watcher {
	return &Watcher{log: log, interval: DefaultInterval}
}

// Servers returns nic's own DNS servers, nil when none are known (no
// per-link source, or the link has none): the caller then does what it
// did before. The slice is shared; do not change it.
func (w *Watcher) Servers(nic string) []netip.AddrPort {
	if m := w.servers.Load(); m != nil {
		return (*m)[nic]
	}
	return nil
}

// Run reads every NIC's servers, then follows changes until ctx ends. When
// the bus or systemd-resolved is not there (yet), it tries again every
// interval; the servers last read stay in force meanwhile, except that an
// answer "resolved is gone" clears them. It returns ctx's error.
func (w *Watcher) Run(ctx context.Context) error {
	defer w.servers.Store(nil)
	var lastErr string
	for {
		err := w.follow(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if msg := err.Error(); msg != lastErr {
			// Once per distinct reason, not every five seconds. A host
			// without a bus or resolved is common and says so only in
			// debug; a resolved that is not this namespace's is worth
			// knowing.
			level := zap.DebugLevel
			if errors.Is(err, ErrOtherNamespace) {
				level = zap.InfoLevel
			}
			w.log.Log(level, "per-link DNS servers unavailable; NICs use their dns setting or the system's nameservers", zap.Error(err))
			lastErr = msg
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(w.interval):
		}
	}
}

// follow connects, reads, and re-reads on every signal and interval until
// ctx ends or the connection fails.
func (w *Watcher) follow(ctx context.Context) error {
	conn, err := dbus.ConnectSystemBus(dbus.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("system bus: %w", err)
	}
	defer conn.Close()
	signals := make(chan *dbus.Signal, 16)
	conn.Signal(signals)
	defer conn.RemoveSignal(signals)
	if err := conn.AddMatchSignalContext(ctx,
		dbus.WithMatchInterface("org.freedesktop.DBus.Properties"),
		dbus.WithMatchMember("PropertiesChanged"),
		dbus.WithMatchPathNamespace(managerPath)); err != nil {
		return fmt.Errorf("system bus: subscribe: %w", err)
	}
	tick := time.NewTicker(w.interval)
	defer tick.Stop()
	for {
		servers, err := read(ctx, conn)
		if err != nil {
			if errors.Is(err, ErrOtherNamespace) || isNoService(err) {
				w.servers.Store(nil)
			}
			return err
		}
		if old := w.servers.Load(); old == nil || !equal(*old, servers) {
			w.log.Debug("per-link DNS servers", zap.Any("servers", servers))
		}
		w.servers.Store(&servers)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case _, ok := <-signals:
			if !ok {
				return errors.New("system bus: connection closed")
			}
		case <-tick.C:
		}
	}
}

// Read returns every NIC's per-link servers once, for check and doctor.
func Read(ctx context.Context) (map[string][]netip.AddrPort, error) {
	conn, err := dbus.ConnectSystemBus(dbus.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("system bus: %w", err)
	}
	defer conn.Close()
	return read(ctx, conn)
}

// read asks systemd-resolved for each of this namespace's NICs' servers.
func read(ctx context.Context, conn *dbus.Conn) (map[string][]netip.AddrPort, error) {
	if err := sameNamespace(ctx, conn); err != nil {
		return nil, err
	}
	ifis, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	servers := map[string][]netip.AddrPort{}
	manager := conn.Object(busName, managerPath)
	for _, ifi := range ifis {
		if ifi.Flags&net.FlagLoopback != 0 {
			continue
		}
		var path dbus.ObjectPath
		if err := manager.CallWithContext(ctx, getLink, 0, int32(ifi.Index)).Store(&path); err != nil {
			if isNoService(err) {
				return nil, fmt.Errorf("%s: %w", busName, err)
			}
			continue // resolved does not know the link (yet)
		}
		v, err := conn.Object(busName, path).GetProperty(linkInterface + ".DNS")
		if err != nil {
			continue
		}
		var entries []struct {
			Family int32
			Addr   []byte
		}
		if err := dbus.Store([]any{v.Value()}, &entries); err != nil {
			return nil, fmt.Errorf("%s %s: DNS property: %w", busName, path, err)
		}
		for _, e := range entries {
			addr, ok := netip.AddrFromSlice(e.Addr)
			// A link-local server would need its zone, which names this
			// very link: left out, as the resolv.conf upstreams leave it.
			if !ok || addr.IsLoopback() || addr.IsLinkLocalUnicast() || addr.IsUnspecified() {
				continue
			}
			if ap := netip.AddrPortFrom(addr.Unmap(), 53); !slices.Contains(servers[ifi.Name], ap) {
				servers[ifi.Name] = append(servers[ifi.Name], ap)
			}
		}
	}
	return servers, nil
}

// sameNamespace refuses a resolved in another network namespace (nicproxy
// run with `ip netns exec`, in a container sharing the host's bus): link
// indexes there name other NICs.
func sameNamespace(ctx context.Context, conn *dbus.Conn) error {
	var pid uint32
	err := conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetConnectionUnixProcessID", 0, busName).Store(&pid)
	if err != nil {
		return fmt.Errorf("%s: %w", busName, err)
	}
	theirs, err := os.Stat(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		return fmt.Errorf("%s (pid %d): network namespace: %w", busName, pid, err)
	}
	ours, err := os.Stat("/proc/self/ns/net")
	if err != nil {
		return fmt.Errorf("own network namespace: %w", err)
	}
	if !os.SameFile(theirs, ours) {
		return fmt.Errorf("%w (pid %d)", ErrOtherNamespace, pid)
	}
	return nil
}

// isNoService reports the bus's answer that nobody owns the name.
func isNoService(err error) bool {
	var dbusErr dbus.Error
	return errors.As(err, &dbusErr) && (dbusErr.Name == "org.freedesktop.DBus.Error.NameHasNoOwner" ||
		dbusErr.Name == "org.freedesktop.DBus.Error.ServiceUnknown")
}

func equal(a, b map[string][]netip.AddrPort) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}
