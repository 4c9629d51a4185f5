package netlab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// DNSServer is where StartDNS and StartDNSZone listen, on the upstream
// namespace's lo.
var DNSServer = netip.MustParseAddr("198.51.100.53")

// Zone is what the lab's DNS server knows and how it behaves.
type Zone struct {
	// Records maps a name (any case, with or without the trailing dot) to
	// its addresses in answer order: IPv4 ones answer A, IPv6 ones AAAA.
	// A name with no address of the asked type gets NODATA; a name not
	// listed, NXDOMAIN.
	Records map[string][]netip.Addr
	TTL     uint32 // of the answers; 0 means 60
	// NegTTL is the SOA's TTL and MINIMUM in NXDOMAIN and NODATA answers,
	// which a resolver caches them for; 0 means 30.
	NegTTL uint32
	// Delay is the modelled round trip before each answer. Queries are
	// answered concurrently: the delay does not add up.
	Delay time.Duration
	// Truncate lists names answered over UDP with TC set and no records,
	// which makes a resolver ask again over TCP.
	Truncate map[string]bool
	// NoSOA sends NXDOMAIN and NODATA answers without the SOA, as many
	// home and office routers and dnsmasq do for local names: a NODATA
	// AAAA answer is then NOERROR, no records, nothing else (RFC 2308
	// says such an answer must not be cached).
	NoSOA bool
	// SilentAAAA never answers an AAAA question (it is counted): a
	// resolver that waits for it waits for ever.
	SilentAAAA bool
	// Addr is where the server listens, on the upstream namespace's lo;
	// the zero value means DNSServer. Give each server of one lab its own.
	Addr netip.Addr
}

// DNS is a running lab DNS server that counts what it is asked.
type DNS struct {
	addr    netip.AddrPort
	records map[string][]netip.Addr // lower case, no trailing dot
	trunc   map[string]bool
	ttl     uint32
	negTTL  uint32
	delay   time.Duration
	noSOA   bool
	silent6 bool

	mu      sync.Mutex
	queries map[dnsKey]int
	total   int
	seen    []netip.Addr
	waiting int // queries waiting out the delay now
	peak    int // the most that ever waited at once
}

type dnsKey struct {
	name  string
	qtype dnsmessage.Type
}

// Addr is where the server listens (DNSServer:53), UDP and TCP.
func (d *DNS) Addr() netip.AddrPort { return d.addr }

// Queries returns how many queries for name (any case, with or without
// the trailing dot) and qtype arrived, over UDP and TCP together.
func (d *DNS) Queries(name string, qtype dnsmessage.Type) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.queries[dnsKey{zoneKey(name), qtype}]
}

// Total returns how many queries arrived, of any name and type.
func (d *DNS) Total() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.total
}

// Peak returns the most queries that waited out the delay at once: more
// than one shows the server does not serialise them.
func (d *DNS) Peak() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.peak
}

// Seen returns the client addresses queries came from, each once, in the
// order they were first seen: what proves which NIC a query left through.
func (d *DNS) Seen() []netip.Addr {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.seen)
}

// QueriedOnlyFrom checks that d got queries, every one from nic's address.
func QueriedOnlyFrom(t testing.TB, d *DNS, nic NIC) {
	t.Helper()
	if seen := d.Seen(); len(seen) != 1 || seen[0] != nic.Addr {
		t.Errorf("the DNS server %v saw queries from %v, want only %v", d.Addr(), seen, nic.Addr)
	}
}

func zoneKey(name string) string { return strings.ToLower(strings.TrimSuffix(name, ".")) }

// StartDNS starts the lab's DNS server knowing one address per name (A if
// it is IPv4, AAAA if IPv6) and returns its address. See StartDNSZone.
func (l *Lab) StartDNS(records map[string]netip.Addr) netip.AddrPort {
	l.t.Helper()
	zone := Zone{Records: make(map[string][]netip.Addr, len(records))}
	for name, addr := range records {
		zone.Records[name] = []netip.Addr{addr}
	}
	return l.StartDNSZone(zone).Addr()
}

// StartDNSZone starts an authoritative-only DNS server for z on
// z.Addr (DNSServer by default) port 53, UDP and TCP, in the upstream
// namespace, and stops it when the test ends. Call it once per address.
func (l *Lab) StartDNSZone(z Zone) *DNS {
	l.t.Helper()
	d := newDNS(z)
	l.ip("-n", l.Upstream, "addr", "replace", d.addr.Addr().String()+"/32", "dev", "lo")
	var pc *net.UDPConn
	var ln *net.TCPListener
	err := l.InUpstream(func() error {
		var err error
		if pc, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(d.addr)); err != nil {
			return err
		}
		if ln, err = net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(d.addr)); err != nil {
			pc.Close()
			return err
		}
		return nil
	})
	if err != nil {
		l.t.Fatalf("start DNS server: %v", err)
	}
	// stop ends pending delays at shutdown.
	stop, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var conns tracker
	wg.Add(2)
	go func() {
		defer wg.Done()
		for {
			buf := make([]byte, 64<<10)
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			if !conns.enter() {
				return
			}
			go func() {
				defer conns.leave()
				if resp := d.respond(stop, buf[:n], from.Addr(), false); resp != nil {
					_, _ = pc.WriteToUDPAddrPort(resp, from)
				}
			}()
		}
	}()
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			if !conns.enter() {
				conn.Close()
				return
			}
			if !conns.hijacked(conn) {
				conns.leave()
				conn.Close()
				return
			}
			go func() {
				defer conns.leave()
				defer conns.released(conn)
				defer conn.Close()
				d.serveStream(stop, conn)
			}()
		}
	}()
	l.t.Cleanup(func() {
		cancel()
		pc.Close()
		ln.Close()
		wg.Wait()
		conns.closeAndWait()
	})
	return d
}

// newDNS is the server's state for z, before it listens.
func newDNS(z Zone) *DNS {
	d := &DNS{
		addr:    netip.AddrPortFrom(DNSServer, 53),
		records: make(map[string][]netip.Addr, len(z.Records)),
		trunc:   make(map[string]bool, len(z.Truncate)),
		ttl:     z.TTL,
		negTTL:  z.NegTTL,
		delay:   z.Delay,
		noSOA:   z.NoSOA,
		silent6: z.SilentAAAA,
		queries: map[dnsKey]int{},
	}
	if z.Addr.IsValid() {
		d.addr = netip.AddrPortFrom(z.Addr, 53)
	}
	if d.ttl == 0 {
		d.ttl = 60
	}
	if d.negTTL == 0 {
		d.negTTL = 30
	}
	for name, addrs := range z.Records {
		key := zoneKey(name)
		for _, a := range addrs {
			d.records[key] = append(d.records[key], a.Unmap())
		}
	}
	for name, on := range z.Truncate {
		d.trunc[zoneKey(name)] = on
	}
	return d
}

// serveStream answers length-prefixed queries on a TCP connection (RFC
// 1035 section 4.2.2) until EOF, an error, or 10 s of silence.
func (d *DNS) serveStream(stop context.Context, conn *net.TCPConn) {
	client := conn.RemoteAddr().(*net.TCPAddr).AddrPort().Addr()
	var size [2]byte
	msg := make([]byte, 65535)
	for {
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(conn, size[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(size[:]))
		if _, err := io.ReadFull(conn, msg[:n]); err != nil {
			return
		}
		resp := d.respond(stop, msg[:n], client, true)
		if resp == nil {
			return
		}
		out := binary.BigEndian.AppendUint16(nil, uint16(len(resp)))
		if _, err := conn.Write(append(out, resp...)); err != nil {
			return
		}
	}
}

// respond counts a query from client and returns its answer after the
// zone's delay, or nil when it deserves none (not a query, or shutdown).
func (d *DNS) respond(stop context.Context, query []byte, client netip.Addr, overTCP bool) []byte {
	var p dnsmessage.Parser
	if h, err := p.Start(query); err == nil && !h.Response {
		if q, err := p.Question(); err == nil {
			d.count(q, client.Unmap())
		}
	}
	resp := d.answer(query, overTCP)
	if d.silent6 && isAAAAQuery(query) {
		return nil
	}
	if resp == nil || d.delay <= 0 {
		return resp
	}
	d.mu.Lock()
	d.waiting++
	d.peak = max(d.peak, d.waiting)
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.waiting--
		d.mu.Unlock()
	}()
	t := time.NewTimer(d.delay)
	defer t.Stop()
	select {
	case <-t.C:
		return resp
	case <-stop.Done():
		return nil
	}
}

// isAAAAQuery reports whether msg is a query whose question is AAAA.
func isAAAAQuery(msg []byte) bool {
	var p dnsmessage.Parser
	if h, err := p.Start(msg); err != nil || h.Response {
		return false
	}
	q, err := p.Question()
	return err == nil && q.Type == dnsmessage.TypeAAAA
}

func (d *DNS) count(q dnsmessage.Question, client netip.Addr) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.queries[dnsKey{zoneKey(q.Name.String()), q.Type}]++
	d.total++
	if !slices.Contains(d.seen, client) {
		d.seen = append(d.seen, client)
	}
}

// answer builds the response to one query message, or returns nil when the
// message deserves none (too short for a header, or itself a response). It
// answers exactly one question and ignores the rest of the message (EDNS
// OPT records and the like).
func (d *DNS) answer(query []byte, overTCP bool) []byte {
	var p dnsmessage.Parser
	qh, err := p.Start(query)
	if err != nil || qh.Response {
		return nil
	}
	// RA too: Go's resolver takes a non-AA, non-RA empty answer for a lame referral.
	h := dnsmessage.Header{ID: qh.ID, Response: true, OpCode: qh.OpCode, Authoritative: true,
		RecursionDesired: qh.RecursionDesired, RecursionAvailable: true}
	fail := func(rcode dnsmessage.RCode) []byte {
		h.RCode = rcode
		b := dnsmessage.NewBuilder(nil, h)
		return mustFinish(&b)
	}
	if qh.OpCode != 0 {
		return fail(dnsmessage.RCodeNotImplemented)
	}
	questions, err := p.AllQuestions()
	if err != nil || len(questions) != 1 {
		return fail(dnsmessage.RCodeFormatError)
	}
	q := questions[0]
	name := zoneKey(q.Name.String())
	addrs, known := d.records[name]
	if !known {
		h.RCode = dnsmessage.RCodeNameError
	}
	var answers []netip.Addr
	for _, a := range addrs {
		if q.Class == dnsmessage.ClassINET && (q.Type == dnsmessage.TypeA && a.Is4() || q.Type == dnsmessage.TypeAAAA && a.Is6()) {
			answers = append(answers, a)
		}
	}
	h.Truncated = d.trunc[name] && !overTCP && len(answers) > 0
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), h)
	b.EnableCompression()
	_ = b.StartQuestions()
	if err := b.Question(q); err != nil {
		return fail(dnsmessage.RCodeFormatError) // a name that parses but cannot be packed again
	}
	_ = b.StartAnswers()
	if h.Truncated {
		return mustFinish(&b)
	}
	for _, a := range answers {
		rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: d.ttl}
		if a.Is4() {
			_ = b.AResource(rh, dnsmessage.AResource{A: a.As4()})
		} else {
			_ = b.AAAAResource(rh, dnsmessage.AAAAResource{AAAA: a.As16()})
		}
	}
	if len(answers) == 0 && !d.noSOA {
		// NXDOMAIN and NODATA carry the zone's SOA, whose MINIMUM says
		// how long a resolver may remember them (RFC 2308).
		_ = b.StartAuthorities()
		apex := dnsmessage.MustNewName(name[strings.LastIndexByte(name, '.')+1:] + ".")
		_ = b.SOAResource(dnsmessage.ResourceHeader{Name: apex, Class: dnsmessage.ClassINET, TTL: d.negTTL},
			dnsmessage.SOAResource{NS: dnsmessage.MustNewName("ns.lab."), MBox: dnsmessage.MustNewName("hostmaster.lab."),
				Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, MinTTL: d.negTTL})
	}
	return mustFinish(&b)
}

// mustFinish finishes a response; the builder is only ever given valid
// names and records, so an error is a bug here.
func mustFinish(b *dnsmessage.Builder) []byte {
	msg, err := b.Finish()
	if err != nil {
		panic(fmt.Sprintf("netlab: build DNS response: %v", err))
	}
	return msg
}

// resolvConf is a resolv.conf naming server, which must be on port 53:
// resolv.conf has no way to say another.
func (l *Lab) resolvConf(server netip.AddrPort) []byte {
	return l.resolvConfWith(server, "attempts:1 timeout:1")
}

// resolvConfWith is resolvConf with its own options line.
func (l *Lab) resolvConfWith(server netip.AddrPort, options string) []byte {
	l.t.Helper()
	if server.Port() != 53 {
		l.t.Fatalf("resolv.conf cannot name %v: a nameserver is always on port 53", server)
	}
	return fmt.Appendf(nil, "nameserver %s\noptions %s\n", server.Addr(), options)
}

// ResolvConf writes a resolv.conf naming server (on port 53, as StartDNS's
// is) to a temporary file and returns its path.
func (l *Lab) ResolvConf(server netip.AddrPort) string {
	l.t.Helper()
	path := filepath.Join(l.t.TempDir(), "resolv.conf")
	if err := os.WriteFile(path, l.resolvConf(server), 0o644); err != nil {
		l.t.Fatalf("write %s: %v", path, err)
	}
	return path
}

// etcNetns guards /etc/netns, which labs in one test binary share.
var etcNetns sync.Mutex

// UseDNS makes server (on port 53, as StartDNS's is) the only nameserver of
// every process Command and StartProxy start: `ip netns exec NS` bind-mounts
// each file of /etc/netns/NS/ over its namesake in /etc, so UseDNS writes
// /etc/netns/<l.Host>/resolv.conf and removes that directory when the test
// ends. It does not change what the test process itself (and so InHost)
// reads; there, dial the server directly (see TestDNS).
func (l *Lab) UseDNS(server netip.AddrPort) {
	l.t.Helper()
	l.useResolvConf(l.resolvConf(server))
}

// UseDNSWith is UseDNS with resolv.conf's options line set to options
// ("timeout:30 attempts:1"), for tests of how long a question may take.
func (l *Lab) UseDNSWith(server netip.AddrPort, options string) {
	l.t.Helper()
	l.useResolvConf(l.resolvConfWith(server, options))
}

func (l *Lab) useResolvConf(content []byte) {
	l.t.Helper()
	etcNetns.Lock()
	defer etcNetns.Unlock()
	dir := filepath.Join("/etc/netns", l.Host)
	// /etc/netns itself stays, even when a lab made it: labs of other
	// test binaries (go test runs packages side by side) create their
	// directories in it at any moment, and removing it "when empty" could
	// pull it from under one between its MkdirAll's two steps.
	l.t.Cleanup(func() {
		etcNetns.Lock()
		defer etcNetns.Unlock()
		if err := os.RemoveAll(dir); err != nil {
			l.t.Errorf("remove %s: %v", dir, err)
		}
	})
	if err := os.MkdirAll(dir, 0o755); err != nil {
		l.t.Fatalf("UseDNS: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), content, 0o644); err != nil {
		l.t.Fatalf("UseDNS: %v", err)
	}
}
