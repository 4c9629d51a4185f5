package dnscache

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// zoneName is how the test server answers one name.
type zoneName struct {
	A, AAAA  []netip.Addr
	CNAME    string // answer with a CNAME to this name (and its records, if known)
	TTL      uint32 // of the addresses; 0 means 60
	ZeroTTL  bool   // TTL 0: not to be cached
	RCode    dnsmessage.RCode
	Delay    time.Duration // before answering
	Truncate bool          // UDP answers carry TC and no records
	Spoof    bool          // first send replies with a wrong ID and a wrong question
	Silent   bool          // never answer
	// SilentAAAA never answers AAAA; DelayAAAA is added before AAAA answers.
	SilentAAAA bool
	DelayAAAA  time.Duration
}

// testServer is a small authoritative DNS server on 127.0.0.1, UDP and TCP
// on one port, that counts what it is asked.
type testServer struct {
	addr netip.AddrPort
	udp  *net.UDPConn
	tcp  *net.TCPListener

	mu     sync.Mutex
	zone   map[string]zoneName // absolute lower-case names
	soa    *[2]uint32          // SOA TTL and MINIMUM for negative answers; nil: no SOA
	counts map[string]int      // "name TYPE" and "name TYPE tcp"
	log    []string            // "name TYPE" in arrival order
	wg     sync.WaitGroup
}

func startServer(t testing.TB, zone map[string]zoneName) *testServer {
	t.Helper()
	s := &testServer{zone: map[string]zoneName{}, counts: map[string]int{}}
	for name, z := range zone {
		s.zone[absolute(name)] = z
	}
	for try := 0; ; try++ {
		udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		s.addr = udp.LocalAddr().(*net.UDPAddr).AddrPort()
		tcp, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(s.addr))
		if err != nil {
			udp.Close()
			if try < 10 {
				continue // the TCP port was taken; pick another pair
			}
			t.Fatal(err)
		}
		s.udp, s.tcp = udp, tcp
		break
	}
	s.wg.Add(2)
	go s.serveUDP()
	go s.serveTCP()
	t.Cleanup(func() {
		s.udp.Close()
		s.tcp.Close()
		s.wg.Wait()
	})
	return s
}

// setSOA makes negative answers carry an SOA with this TTL and MINIMUM.
func (s *testServer) setSOA(ttl, minimum uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.soa = &[2]uint32{ttl, minimum}
}

// queries returns how often name was asked for qtype ("A" or "AAAA"), over
// UDP and TCP together.
func (s *testServer) queries(name, qtype string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[absolute(name)+" "+qtype]
}

func (s *testServer) tcpQueries(name, qtype string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[absolute(name)+" "+qtype+" tcp"]
}

func (s *testServer) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.log)
}

func (s *testServer) asked() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.log...)
}

func (s *testServer) serveUDP() {
	defer s.wg.Done()
	for {
		buf := make([]byte, 2048)
		n, from, err := s.udp.ReadFromUDPAddrPort(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		// Each answer in its own goroutine: a delay must not hold up others.
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for _, resp := range s.respond(buf[:n], false) {
				_, _ = s.udp.WriteToUDPAddrPort(resp, from)
			}
		}()
	}
}

func (s *testServer) serveTCP() {
	defer s.wg.Done()
	for {
		conn, err := s.tcp.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			var size [2]byte
			if _, err := io.ReadFull(conn, size[:]); err != nil {
				return
			}
			msg := make([]byte, binary.BigEndian.Uint16(size[:]))
			if _, err := io.ReadFull(conn, msg); err != nil {
				return
			}
			for _, resp := range s.respond(msg, true) {
				_, _ = conn.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(resp))), resp...))
			}
		}()
	}
}

// respond returns the messages to send for one query, after the name's
// delay: spoofed ones first, when asked for.
func (s *testServer) respond(msg []byte, overTCP bool) [][]byte {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil {
		return nil
	}
	q, err := p.Question()
	if err != nil {
		return nil
	}
	name := strings.ToLower(q.Name.String())
	key := name + " " + strings.TrimPrefix(q.Type.String(), "Type")
	s.mu.Lock()
	s.counts[key]++
	if overTCP {
		s.counts[key+" tcp"]++
	}
	s.log = append(s.log, key)
	z, known := s.zone[name]
	soa := s.soa
	zone := s.zone
	s.mu.Unlock()
	isAAAA := q.Type == dnsmessage.TypeAAAA
	if z.Silent || z.SilentAAAA && isAAAA {
		return nil
	}
	time.Sleep(z.Delay)
	if isAAAA {
		time.Sleep(z.DelayAAAA)
	}

	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired}
	if !known {
		rh.RCode = dnsmessage.RCodeNameError
	} else {
		rh.RCode = z.RCode
	}
	rh.Truncated = z.Truncate && !overTCP
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	_ = b.StartQuestions()
	_ = b.Question(q)
	_ = b.StartAnswers()
	answered := false
	if known && rh.RCode == dnsmessage.RCodeSuccess && !rh.Truncated {
		owner := q.Name
		for hop := 0; z.CNAME != "" && hop < 8; hop++ {
			target := dnsmessage.MustNewName(absolute(z.CNAME))
			_ = b.CNAMEResource(dnsmessage.ResourceHeader{Name: owner, Class: dnsmessage.ClassINET, TTL: ttlOf(z)}, dnsmessage.CNAMEResource{CNAME: target})
			owner, z = target, zone[absolute(z.CNAME)]
		}
		hdr := dnsmessage.ResourceHeader{Name: owner, Class: dnsmessage.ClassINET, TTL: ttlOf(z)}
		for _, a := range z.A {
			if q.Type == dnsmessage.TypeA {
				_ = b.AResource(hdr, dnsmessage.AResource{A: a.As4()})
				answered = true
			}
		}
		for _, a := range z.AAAA {
			if q.Type == dnsmessage.TypeAAAA {
				_ = b.AAAAResource(hdr, dnsmessage.AAAAResource{AAAA: a.As16()})
				answered = true
			}
		}
	}
	_ = b.StartAuthorities()
	if !answered && soa != nil && (rh.RCode == dnsmessage.RCodeSuccess || rh.RCode == dnsmessage.RCodeNameError) {
		_ = b.SOAResource(dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName("test."), Class: dnsmessage.ClassINET, TTL: soa[0]},
			dnsmessage.SOAResource{NS: dnsmessage.MustNewName("ns.test."), MBox: dnsmessage.MustNewName("admin.test."),
				Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, MinTTL: soa[1]})
	}
	resp, err := b.Finish()
	if err != nil {
		panic(err)
	}
	if !z.Spoof {
		return [][]byte{resp}
	}
	// A poisoned answer with a wrong ID, then one with the right ID for
	// another question: both must be ignored.
	wrongID := poison(rh, h.ID^0xffff, q, q.Name)
	other := q
	other.Name = dnsmessage.MustNewName("x" + name)
	wrongQuestion := poison(rh, h.ID, other, q.Name)
	return [][]byte{wrongID, wrongQuestion, resp}
}

// poisonAddr is what spoofed replies claim.
var poisonAddr4, poisonAddr6 = netip.MustParseAddr("192.0.2.66"), netip.MustParseAddr("2001:db8::66")

func poison(rh dnsmessage.Header, id uint16, q dnsmessage.Question, owner dnsmessage.Name) []byte {
	rh.ID, rh.RCode, rh.Truncated = id, dnsmessage.RCodeSuccess, false
	b := dnsmessage.NewBuilder(nil, rh)
	_ = b.StartQuestions()
	_ = b.Question(q)
	_ = b.StartAnswers()
	hdr := dnsmessage.ResourceHeader{Name: owner, Class: dnsmessage.ClassINET, TTL: 3600}
	if q.Type == dnsmessage.TypeAAAA {
		_ = b.AAAAResource(hdr, dnsmessage.AAAAResource{AAAA: poisonAddr6.As16()})
	} else {
		_ = b.AResource(hdr, dnsmessage.AResource{A: poisonAddr4.As4()})
	}
	msg, err := b.Finish()
	if err != nil {
		panic(err)
	}
	return msg
}

func ttlOf(z zoneName) uint32 {
	if z.ZeroTTL {
		return 0
	}
	if z.TTL == 0 {
		return 60
	}
	return z.TTL
}
