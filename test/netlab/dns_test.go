package netlab

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

func TestDNS(t *testing.T) {
	lab := New(t)
	v6 := netip.MustParseAddr("2001:db8::1")
	server := lab.StartDNS(map[string]netip.Addr{"web.test": Server, "Mixed.Case.Test.": Blackhole, "v6.test": v6})
	if server != netip.MustParseAddrPort("198.51.100.53:53") {
		t.Fatalf("DNS server on %v", server)
	}
	res := &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return lab.DialHostContext(ctx, network, server.String())
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	for name, want := range map[string]netip.Addr{"web.test": Server, "WEB.Test.": Server, "mixed.case.test": Blackhole} {
		addrs, err := res.LookupNetIP(ctx, "ip4", name)
		if err != nil || len(addrs) != 1 || addrs[0] != want {
			t.Errorf("A %s: %v, %v; want %v", name, addrs, err, want)
		}
	}
	if addrs, err := res.LookupNetIP(ctx, "ip6", "v6.test"); err != nil || len(addrs) != 1 || addrs[0] != v6 {
		t.Errorf("AAAA v6.test: %v, %v; want %v", addrs, err, v6)
	}
	if addrs, err := res.LookupHost(ctx, "web.test"); err != nil || !slices.Equal(addrs, []string{Server.String()}) {
		t.Errorf("LookupHost web.test (A and AAAA): %v, %v", addrs, err)
	}
	var dnsErr *net.DNSError
	if addrs, err := res.LookupNetIP(ctx, "ip4", "nope.test."); !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Errorf("A nope.test: %v, %v; want not found", addrs, err)
	}

	// UseDNS: registered first, this check runs after UseDNS's cleanup.
	dir := filepath.Join("/etc/netns", lab.Host)
	t.Cleanup(func() {
		if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left behind: %v", dir, err)
		}
	})
	lab.UseDNS(server)
	out, err := lab.Command("cat", "/etc/resolv.conf").CombinedOutput()
	if err != nil || string(out) != "nameserver 198.51.100.53\noptions attempts:1 timeout:1\n" {
		t.Errorf("resolv.conf in the host namespace: %v: %q", err, out)
	}
	// glibc's resolver (hosts: files dns here) asks the lab's server.
	out, err = lab.Command("getent", "ahostsv4", "web.test").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), Server.String()+" ") {
		t.Errorf("getent ahostsv4 web.test: %v: %q", err, out)
	}

	path := lab.ResolvConf(server)
	if b, err := os.ReadFile(path); err != nil || !strings.HasPrefix(string(b), "nameserver 198.51.100.53\n") {
		t.Errorf("ResolvConf wrote %q: %v", b, err)
	}
}

// TestDNSZone checks what the richer server adds, on the wire: several
// addresses in order, SOA in negative answers, truncation, the counters,
// and a delay that does not serialise queries.
func TestDNSZone(t *testing.T) {
	lab := New(t)
	v6 := netip.MustParseAddr("2001:db8::1")
	const delay = 200 * time.Millisecond
	dns := lab.StartDNSZone(Zone{
		Records:  map[string][]netip.Addr{"two.test": {Blackhole, Server, v6}, "big.test": {Server, Blackhole}},
		TTL:      5,
		NegTTL:   7,
		Delay:    delay,
		Truncate: map[string]bool{"big.test": true},
	})
	for _, tc := range []struct {
		network, name string
		qtype         dnsmessage.Type
		rcode         dnsmessage.RCode
		truncated     bool
		answers       []netip.Addr
	}{
		{"udp", "two.test", dnsmessage.TypeA, dnsmessage.RCodeSuccess, false, []netip.Addr{Blackhole, Server}},
		{"udp", "Two.Test.", dnsmessage.TypeAAAA, dnsmessage.RCodeSuccess, false, []netip.Addr{v6}},
		{"udp", "big.test", dnsmessage.TypeAAAA, dnsmessage.RCodeSuccess, false, nil}, // NODATA: nothing to truncate
		{"udp", "nope.test", dnsmessage.TypeA, dnsmessage.RCodeNameError, false, nil},
		{"udp", "big.test", dnsmessage.TypeA, dnsmessage.RCodeSuccess, true, nil},
		{"tcp", "big.test", dnsmessage.TypeA, dnsmessage.RCodeSuccess, false, []netip.Addr{Server, Blackhole}},
		{"tcp", "nope.test", dnsmessage.TypeAAAA, dnsmessage.RCodeNameError, false, nil},
	} {
		resp := exchange(t, lab, tc.network, dns.Addr(), query(0x1234, tc.name, tc.qtype))
		got := parseResponse(t, resp)
		if got.rcode != tc.rcode || got.truncated != tc.truncated || !slices.Equal(got.addrs, tc.answers) {
			t.Errorf("%s %s %v: %+v; want rcode %v, truncated %v, %v", tc.network, tc.name, tc.qtype, got, tc.rcode, tc.truncated, tc.answers)
		}
		if len(got.addrs) > 0 && got.ttl != 5 {
			t.Errorf("%s %s %v: TTL %d, want 5", tc.network, tc.name, tc.qtype, got.ttl)
		}
		if len(tc.answers) == 0 && !tc.truncated && (got.soaTTL != 7 || got.soaMin != 7) {
			t.Errorf("%s %s %v: SOA TTL %d, MINIMUM %d; want 7 and 7", tc.network, tc.name, tc.qtype, got.soaTTL, got.soaMin)
		}
	}
	if n := dns.Queries("BIG.test.", dnsmessage.TypeA); n != 2 {
		t.Errorf("big.test A asked %d times, want 2", n)
	}
	if n := dns.Total(); n != 7 {
		t.Errorf("total %d, want 7", n)
	}
	// Unpinned, the kernel sends the queries out ens33 (metric 100).
	if seen := dns.Seen(); !slices.Equal(seen, []netip.Addr{Ens33.Addr}) {
		t.Errorf("seen %v, want %v", seen, Ens33.Addr)
	}

	// Ten queries at once wait out their delays together, not in turn.
	const n = 10
	start := time.Now()
	errs := make(chan error, n)
	for i := range n {
		go func() {
			resp := exchange(t, lab, "udp", dns.Addr(), query(0x1234, fmt.Sprintf("q%d.test", i), dnsmessage.TypeA))
			if parseResponse(t, resp).rcode != dnsmessage.RCodeNameError {
				errs <- fmt.Errorf("q%d.test: not NXDOMAIN", i)
				return
			}
			errs <- nil
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	// No answer before its delay: a lower bound a busy machine only helps.
	if elapsed := time.Since(start); elapsed < delay {
		t.Errorf("%d concurrent queries took %v with a %v delay: no delay", n, elapsed, delay)
	}
	if peak := dns.Peak(); peak < 2 {
		t.Errorf("at most %d of %d concurrent queries waited at once: serialised", peak, n)
	}
}

// query is a DNS query for one name, with an EDNS OPT record as Go's
// resolver sends.
func query(id uint16, name string, qtype dnsmessage.Type) []byte {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	_ = b.StartQuestions()
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	_ = b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: qtype, Class: dnsmessage.ClassINET})
	_ = b.StartAdditionals()
	var opt dnsmessage.ResourceHeader
	_ = opt.SetEDNS0(1232, dnsmessage.RCodeSuccess, false)
	_ = b.OPTResource(opt, dnsmessage.OPTResource{})
	msg, err := b.Finish()
	if err != nil {
		panic(err)
	}
	return msg
}

// exchange sends msg and returns the response; it may be called from any
// goroutine (it reports failures with t.Error and returns nil).
func exchange(t *testing.T, lab *Lab, network string, server netip.AddrPort, msg []byte) []byte {
	t.Helper()
	conn, err := lab.DialHost(network, server.String())
	if err != nil {
		t.Error(err)
		return nil
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if network == "tcp" {
		msg = append(binary.BigEndian.AppendUint16(nil, uint16(len(msg))), msg...)
	}
	if _, err := conn.Write(msg); err != nil {
		t.Error(err)
		return nil
	}
	var resp []byte
	if network == "tcp" {
		var size [2]byte
		if _, err := io.ReadFull(conn, size[:]); err != nil {
			t.Error(err)
			return nil
		}
		resp = make([]byte, binary.BigEndian.Uint16(size[:]))
		_, err = io.ReadFull(conn, resp)
	} else {
		resp = make([]byte, 1232)
		var n int
		n, err = conn.Read(resp)
		resp = resp[:n]
	}
	if err != nil {
		t.Error(err)
		return nil
	}
	return resp
}

// response is what a test needs from a DNS response.
type response struct {
	id             uint16
	rcode          dnsmessage.RCode
	truncated      bool
	authoritative  bool
	questions      []dnsmessage.Question
	addrs          []netip.Addr
	ttl            uint32
	soaTTL, soaMin uint32
}

func parseResponse(t *testing.T, msg []byte) response {
	t.Helper()
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil || !h.Response {
		t.Errorf("not a response: %x (%v)", msg, err)
		return response{rcode: 0xffff} // no rcode: matches no expectation
	}
	r := response{id: h.ID, rcode: h.RCode, truncated: h.Truncated, authoritative: h.Authoritative}
	if r.questions, err = p.AllQuestions(); err != nil {
		t.Errorf("questions: %v", err)
	}
	answers, err := p.AllAnswers()
	if err != nil {
		t.Errorf("answers: %v", err)
	}
	for _, rr := range answers {
		r.ttl = rr.Header.TTL
		switch body := rr.Body.(type) {
		case *dnsmessage.AResource:
			r.addrs = append(r.addrs, netip.AddrFrom4(body.A))
		case *dnsmessage.AAAAResource:
			r.addrs = append(r.addrs, netip.AddrFrom16(body.AAAA))
		}
	}
	authorities, err := p.AllAuthorities()
	if err != nil {
		t.Errorf("authorities: %v", err)
	}
	for _, rr := range authorities {
		if soa, ok := rr.Body.(*dnsmessage.SOAResource); ok {
			r.soaTTL, r.soaMin = rr.Header.TTL, soa.MinTTL
		}
	}
	return r
}

func TestDNSAnswer(t *testing.T) {
	d := newDNS(Zone{Records: map[string][]netip.Addr{"web.test": {Server}}, Truncate: map[string]bool{"web.test": true}})
	ok := query(7, "Web.Test", dnsmessage.TypeA)
	got := parseResponse(t, d.answer(ok, true))
	if got.id != 7 || got.rcode != dnsmessage.RCodeSuccess || !got.authoritative || got.truncated ||
		!slices.Equal(got.addrs, []netip.Addr{Server}) || got.ttl != 60 ||
		len(got.questions) != 1 || got.questions[0].Name.String() != "Web.Test." {
		t.Fatalf("answer over TCP: %+v", got)
	}
	if got := parseResponse(t, d.answer(ok, false)); !got.truncated || len(got.addrs) != 0 {
		t.Fatalf("answer over UDP to a truncated name: %+v", got)
	}

	rcode := func(msg []byte) int {
		resp := d.answer(msg, true)
		if resp == nil {
			return -1
		}
		return int(parseResponse(t, resp).rcode)
	}
	noOPT := query(7, "web.test", dnsmessage.TypeA)
	noOPT = noOPT[:len(noOPT)-11]
	noOPT[11] = 0 // ARCOUNT
	qend := len(noOPT)
	long := slices.Clone(ok[:12])
	for range 5 {
		long = append(append(long, 63), bytes.Repeat([]byte{'a'}, 63)...) // 320 bytes of name
	}
	long = append(long, 0, 0, 1, 0, 1)
	twoQuestions := slices.Concat(noOPT, noOPT[12:])
	twoQuestions[5] = 2
	noQuestion := slices.Clone(ok[:12])
	noQuestion[5], noQuestion[11] = 0, 0
	isResponse := slices.Clone(ok)
	isResponse[2] |= 0x80
	notQuery := slices.Clone(ok)
	notQuery[2] |= 2 << 3
	for name, tc := range map[string]struct {
		msg  []byte
		want int
	}{
		"short header":           {ok[:11], -1},
		"a response":             {isResponse, -1},
		"no question":            {noQuestion, int(dnsmessage.RCodeFormatError)},
		"header only":            {ok[:12], int(dnsmessage.RCodeFormatError)},
		"name over 255 bytes":    {long, int(dnsmessage.RCodeFormatError)},
		"two questions":          {twoQuestions, int(dnsmessage.RCodeFormatError)},
		"opcode STATUS":          {notQuery, int(dnsmessage.RCodeNotImplemented)},
		"question cut in type":   {noOPT[:qend-3], int(dnsmessage.RCodeFormatError)},
		"question without class": {noOPT[:qend-2], int(dnsmessage.RCodeFormatError)},
		"no OPT record":          {noOPT, 0},
		"unknown name":           {query(8, "nope.test", dnsmessage.TypeA), int(dnsmessage.RCodeNameError)},
	} {
		if got := rcode(tc.msg); got != tc.want {
			t.Errorf("%s: rcode %d, want %d", name, got, tc.want)
		}
	}
	// Every prefix of a valid query is handled without a panic.
	for i := range ok {
		_ = d.answer(ok[:i], false)
	}
}

// TestDNSAnswerWithoutSOA: with NoSOA a NODATA answer is NOERROR, no
// records and no authority section at all, NXDOMAIN likewise; the default
// server sends its SOA in both.
func TestDNSAnswerWithoutSOA(t *testing.T) {
	for _, noSOA := range []bool{false, true} {
		d := newDNS(Zone{Records: map[string][]netip.Addr{"v4.test": {Server}}, NoSOA: noSOA})
		for _, q := range []struct {
			name  string
			rcode dnsmessage.RCode
		}{{"v4.test", dnsmessage.RCodeSuccess}, {"nope.test", dnsmessage.RCodeNameError}} {
			got := parseResponse(t, d.answer(query(9, q.name, dnsmessage.TypeAAAA), false))
			if got.rcode != q.rcode || len(got.addrs) != 0 || (got.soaMin != 0) == noSOA {
				t.Errorf("NoSOA %v, AAAA %s: %+v, want rcode %v, no records, SOA %v", noSOA, q.name, got, q.rcode, !noSOA)
			}
		}
	}
	if !isAAAAQuery(query(1, "v4.test", dnsmessage.TypeAAAA)) || isAAAAQuery(query(1, "v4.test", dnsmessage.TypeA)) {
		t.Error("isAAAAQuery tells AAAA from A wrongly")
	}
}

func FuzzDNSAnswer(f *testing.F) {
	f.Add(query(1, "web.test", dnsmessage.TypeA), false)
	f.Add(query(2, "nope.test", dnsmessage.TypeAAAA), true)
	f.Add(query(3, "web.test", dnsmessage.TypeA), false)
	d := newDNS(Zone{Records: map[string][]netip.Addr{"web.test": {Server, netip.MustParseAddr("2001:db8::1")}}, Truncate: map[string]bool{"web.test": true}})
	f.Fuzz(func(t *testing.T, msg []byte, overTCP bool) {
		resp := d.answer(msg, overTCP)
		if resp == nil {
			return
		}
		var p dnsmessage.Parser
		h, err := p.Start(resp)
		if err != nil || !h.Response || len(msg) < 2 || h.ID != binary.BigEndian.Uint16(msg) {
			t.Fatalf("bad response %x to %x: %v", resp, msg, err)
		}
		if _, err := p.AllQuestions(); err != nil {
			t.Fatalf("response %x does not parse: %v", resp, err)
		}
	})
}
