package netlab

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// liveInGroup lists the processes of group pgid that are not zombies.
func liveInGroup(t *testing.T, pgid int) []int {
	t.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	var live []int
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces and parens.
		_, rest, ok := bytesCutLast(b, ')')
		var state string
		var ppid, pgrp, pid int
		if !ok {
			continue
		}
		if _, err := fmt.Sscan(string(rest), &state, &ppid, &pgrp); err != nil {
			continue
		}
		fmt.Sscan(string(b), &pid)
		if pgrp == pgid && state != "Z" {
			live = append(live, pid)
		}
	}
	return live
}

func bytesCutLast(b []byte, sep byte) (before, after []byte, found bool) {
	if i := bytes.LastIndexByte(b, sep); i >= 0 {
		return b[:i], b[i+1:], true
	}
	return b, nil, false
}

// hostClient is an HTTP client whose sockets are made in the host
// namespace; web.test dials the Server address, so https://web.test/ checks the
// certificate's DNS name.
func hostClient(lab *Lab, web *Web) *http.Client {
	return &http.Client{
		Timeout: 20 * time.Second,
		Transport: &http.Transport{
			Proxy: nil,
			DialContext: func(ctx context.Context, network, address string) (net.Conn, error) {
				if host, port, err := net.SplitHostPort(address); err == nil && host == "web.test" {
					address = net.JoinHostPort(Server.String(), port)
				}
				return lab.DialHostContext(ctx, network, address)
			},
			TLSClientConfig: &tls.Config{RootCAs: web.CertPool},
		},
	}
}

func get(t *testing.T, c *http.Client, url string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, body)
	}
	return resp, body
}

func TestWeb(t *testing.T) {
	lab := New(t)
	web := lab.StartWeb()
	client := hostClient(lab, web)
	before := lab.Snapshot()
	bases := map[string]string{
		"http":        "http://" + web.HTTP.String(),
		"https":       "https://" + web.HTTPS.String(),
		"https named": fmt.Sprintf("https://web.test:%d", web.HTTPS.Port()),
	}
	for name, base := range bases {
		t.Run(name, func(t *testing.T) {
			t.Run("whoami", func(t *testing.T) {
				_, body := get(t, client, base+"/whoami")
				seen, err := netip.ParseAddrPort(strings.TrimSuffix(string(body), "\n"))
				if err != nil || !strings.HasSuffix(string(body), "\n") {
					t.Fatalf("body %q: want IP:PORT\\n", body)
				}
				if seen.Addr() != Ens33.Addr {
					t.Errorf("server saw %v, want ens33's %v (the unpinned route)", seen, Ens33.Addr)
				}
			})
			t.Run("bytes", func(t *testing.T) {
				const n = 1 << 20
				resp, body := get(t, client, fmt.Sprintf("%s/bytes?n=%d", base, n))
				if resp.ContentLength != n {
					t.Errorf("Content-Length %d, want %d", resp.ContentLength, n)
				}
				want := sha256.New()
				if _, err := io.Copy(want, ExpectedBytes(n)); err != nil {
					t.Fatal(err)
				}
				if got := sha256.Sum256(body); !bytes.Equal(got[:], want.Sum(nil)) || len(body) != n {
					t.Errorf("got %d bytes with sha256 %x, want %d with %x", len(body), got, n, want.Sum(nil))
				}
			})
			t.Run("headers", func(t *testing.T) {
				_, body := get(t, client, base+"/headers", "X-Netlab-Test", "two words", "X-Netlab-Test", "again")
				lines := strings.Split(strings.TrimSuffix(string(body), "\n"), "\n")
				for _, want := range []string{"X-Netlab-Test: two words", "X-Netlab-Test: again", "Host: "} {
					if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, want) }) {
						t.Errorf("no line %q in:\n%s", want, body)
					}
				}
				if !slices.IsSorted(lines) {
					t.Errorf("lines not sorted:\n%s", body)
				}
			})
			t.Run("echo chunked", func(t *testing.T) {
				payload := bytes.Repeat([]byte("echo me, chunked. "), 20000) // ~360 KiB
				// A reader of unknown length makes the client send chunks.
				req, _ := http.NewRequest(http.MethodPost, base+"/echo", io.MultiReader(bytes.NewReader(payload)))
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				got, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, payload) {
					t.Errorf("echoed %d bytes, want %d byte-exact", len(got), len(payload))
				}
				if seen, err := netip.ParseAddrPort(resp.Header.Get("X-Seen")); err != nil || seen.Addr() != Ens33.Addr {
					t.Errorf("X-Seen %q, want ens33's %v", resp.Header.Get("X-Seen"), Ens33.Addr)
				}
			})
			t.Run("ws without upgrade", func(t *testing.T) {
				resp, err := client.Get(base + "/ws")
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusUpgradeRequired {
					t.Errorf("status %s, want 426", resp.Status)
				}
			})
		})
	}
	for _, secure := range []bool{false, true} {
		t.Run(fmt.Sprintf("ws tls=%v", secure), func(t *testing.T) {
			testUpgrade(t, lab, web, secure)
		})
	}
	t.Run("curl", func(t *testing.T) {
		out, errOut, err := lab.Curl("--cacert", web.CAFile, "https://"+web.HTTPS.String()+"/whoami")
		if err != nil {
			t.Fatalf("curl: %v: %s", err, errOut)
		}
		if seen := netip.MustParseAddrPort(strings.TrimSpace(out)); seen.Addr() != Ens33.Addr {
			t.Errorf("server saw %v, want %v", seen, Ens33.Addr)
		}
		out, errOut, err = lab.Curl("-H", "Transfer-Encoding: chunked", "--data-binary", "@-", "http://"+web.HTTP.String()+"/headers")
		if err != nil {
			t.Fatalf("curl: %v: %s", err, errOut)
		}
		if !strings.Contains(out, "Transfer-Encoding: chunked\n") {
			t.Errorf("/headers does not list the chunked encoding:\n%s", out)
		}
	})
	if tx := before.TxSince(Ens160.Name); tx != 0 {
		t.Errorf("ens160 sent %d bytes, want 0: all of this went the unpinned way", tx)
	}
}

func testUpgrade(t *testing.T, lab *Lab, web *Web, secure bool) {
	addr := web.HTTP
	if secure {
		addr = web.HTTPS
	}
	conn, err := lab.DialHost("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	type closeWriter interface {
		net.Conn
		CloseWrite() error
	}
	c := closeWriter(conn.(*net.TCPConn))
	if secure {
		c = tls.Client(conn, &tls.Config{RootCAs: web.CertPool, ServerName: "web.test"})
	}
	// The raw bytes ride right behind the request, as a client in a hurry
	// might send them.
	req := "GET /ws HTTP/1.1\r\nHost: web.test\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nearly bytes;"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != "websocket" ||
		!strings.EqualFold(resp.Header.Get("Connection"), "upgrade") {
		t.Fatalf("response %s %v, want 101 with Upgrade: websocket, Connection: Upgrade", resp.Status, resp.Header)
	}
	// The example of RFC 6455 section 1.3.
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Errorf("Sec-WebSocket-Accept %q", got)
	}
	if seen := MustSeen(t, r); seen.Addr() != Ens33.Addr {
		t.Errorf("server saw %v, want %v", seen, Ens33.Addr)
	}
	if _, err := io.WriteString(c, " then more"); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if string(rest) != "early bytes; then more" {
		t.Errorf("echo %q", rest)
	}
}

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

	// Ten queries at once take one delay, not ten.
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
	if elapsed := time.Since(start); elapsed < delay || elapsed > n*delay/2 {
		t.Errorf("%d concurrent queries took %v with a %v delay: serialised, or no delay", n, elapsed, delay)
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

func TestProxyArgv(t *testing.T) {
	for _, tc := range []struct {
		config string
		extra  []string
		want   []string
	}{
		{"/tmp/c.yaml", nil, []string{"ip", "netns", "exec", "nsH", "/bin/nicproxy", "run", "-c", "/tmp/c.yaml"}},
		{"/tmp/c.yaml", []string{"--log-level", "debug"}, []string{"ip", "netns", "exec", "nsH", "/bin/nicproxy", "run", "-c", "/tmp/c.yaml", "--log-level", "debug"}},
		{"", []string{"serve", "--listen", "127.0.0.1:1080"}, []string{"ip", "netns", "exec", "nsH", "/bin/nicproxy", "serve", "--listen", "127.0.0.1:1080"}},
	} {
		if got := proxyArgv("nsH", "/bin/nicproxy", tc.config, tc.extra); !slices.Equal(got, tc.want) {
			t.Errorf("proxyArgv(%q, %q) = %q, want %q", tc.config, tc.extra, got, tc.want)
		}
	}
}

func TestWithoutProxyEnv(t *testing.T) {
	got := withoutProxyEnv([]string{"PATH=/bin", "http_proxy=x", "HTTPS_PROXY=y", "ALL_PROXY=z", "no_proxy=*", "PROXY=keep", "A=b_proxy"})
	if want := []string{"PATH=/bin", "PROXY=keep", "A=b_proxy"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestStartProcess(t *testing.T) {
	lab := New(t)
	in := func(argv ...string) []string { return append([]string{"ip", "netns", "exec", lab.Host}, argv...) }

	t.Run("ready, then SIGTERM", func(t *testing.T) {
		p := lab.startProcess(in("python3", "-m", "http.server", "--bind", "127.0.0.1", "18080"), "127.0.0.1:18080")
		out, errOut, err := lab.Curl("-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:18080/")
		if err != nil || out != "200" {
			t.Fatalf("curl in the host namespace: %q %v: %s", out, err, errOut)
		}
		// The server lives in the host namespace, not the test's.
		if conn, err := net.DialTimeout("tcp", "127.0.0.1:18080", time.Second); err == nil {
			conn.Close()
			t.Log("note: something also listens on 127.0.0.1:18080 outside the lab")
		}
		if err := p.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		code, err := p.Wait(5 * time.Second)
		if code != -1 || err == nil || !strings.Contains(err.Error(), "terminated") {
			t.Errorf("Wait = %d, %v; want -1 and death by SIGTERM", code, err)
		}
		if !strings.Contains(p.Output(), "GET / HTTP/1.1") {
			t.Errorf("output lacks the request log:\n%s", p.Output())
		}
		if err := p.Signal(syscall.SIGTERM); err != nil {
			t.Errorf("signal after exit: %v", err)
		}
	})

	t.Run("exit before ready", func(t *testing.T) {
		p, err := lab.launch(in("sh", "-c", "echo boom; echo bang >&2; exit 3"), "127.0.0.1:18081")
		if err == nil || !strings.Contains(err.Error(), "exited before") {
			t.Fatalf("launch: %v, want exited before ready", err)
		}
		if code, err := p.Wait(time.Second); code != 3 || err != nil {
			t.Errorf("Wait = %d, %v; want 3, nil", code, err)
		}
		if out := p.Output(); out != "boom\nbang\n" {
			t.Errorf("output %q", out)
		}
	})

	t.Run("still running", func(t *testing.T) {
		p := lab.startProcess(in("sleep", "30"), "")
		if code, err := p.Wait(50 * time.Millisecond); code != -1 || err == nil {
			t.Errorf("Wait = %d, %v; want a timeout", code, err)
		}
	})

	t.Run("SIGTERM ignored, group killed", func(t *testing.T) {
		defer func(d time.Duration) { termTimeout = d }(termTimeout)
		termTimeout = 300 * time.Millisecond
		p := lab.startProcess(in("sh", "-c", `trap "" TERM; sleep 30 & echo started; wait`), "")
		for !strings.Contains(p.Output(), "started") {
			time.Sleep(10 * time.Millisecond)
		}
		start := time.Now()
		p.stop(lab)
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("stop took %v", d)
		}
		if code, err := p.Wait(0); code != -1 || err == nil || !strings.Contains(err.Error(), "killed") {
			t.Errorf("Wait = %d, %v; want death by SIGKILL", code, err)
		}
		// The sleep in the background went with its group (zombies aside:
		// a container's init may not reap orphans).
		if live := liveInGroup(t, p.Pid()); len(live) > 0 {
			t.Errorf("process group %d still has live members %v", p.Pid(), live)
		}
	})
}
