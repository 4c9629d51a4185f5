package netlab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// DNSServer is where StartDNS listens, on the upstream namespace's lo.
var DNSServer = netip.MustParseAddr("198.51.100.53")

// StartDNS starts an authoritative-only DNS server on DNSServer:53, UDP and
// TCP, in the upstream namespace, and stops it when the test ends. It
// answers queries for the names in records (any case, with or without the
// trailing dot): A with the address if it is IPv4, AAAA if it is IPv6, and
// an empty NOERROR for any other type. Other names get NXDOMAIN. Call it
// once per lab.
func (l *Lab) StartDNS(records map[string]netip.Addr) netip.AddrPort {
	l.t.Helper()
	zone := make(map[string]netip.Addr, len(records))
	for name, addr := range records {
		zone[strings.ToLower(strings.TrimSuffix(name, "."))] = addr.Unmap()
	}
	l.ip("-n", l.Upstream, "addr", "replace", DNSServer.String()+"/32", "dev", "lo")
	addr := netip.AddrPortFrom(DNSServer, 53)
	var pc *net.UDPConn
	var ln *net.TCPListener
	err := l.InUpstream(func() error {
		var err error
		if pc, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addr)); err != nil {
			return err
		}
		if ln, err = net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(addr)); err != nil {
			pc.Close()
			return err
		}
		return nil
	})
	if err != nil {
		l.t.Fatalf("start DNS server: %v", err)
	}
	var wg sync.WaitGroup
	var conns tracker
	wg.Add(2)
	go func() {
		defer wg.Done()
		buf := make([]byte, 64<<10)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			if resp := dnsAnswer(buf[:n], zone); resp != nil {
				_, _ = pc.WriteToUDPAddrPort(resp, from)
			}
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
				serveDNSStream(conn, zone)
			}()
		}
	}()
	l.t.Cleanup(func() {
		pc.Close()
		ln.Close()
		wg.Wait()
		conns.closeAndWait()
	})
	return addr
}

// serveDNSStream answers length-prefixed queries on a TCP connection
// (RFC 1035 section 4.2.2) until EOF, an error, or 10 s of silence.
func serveDNSStream(conn net.Conn, zone map[string]netip.Addr) {
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
		resp := dnsAnswer(msg[:n], zone)
		if resp == nil {
			return
		}
		out := binary.BigEndian.AppendUint16(nil, uint16(len(resp)))
		if _, err := conn.Write(append(out, resp...)); err != nil {
			return
		}
	}
}

// DNS constants, RFC 1035.
const (
	dnsHeaderLen = 12

	rcodeFormErr  = 1
	rcodeNXDomain = 3
	rcodeNotImp   = 4

	typeA    = 1
	typeAAAA = 28
	classIN  = 1
)

// dnsAnswer builds the response to one query message, or returns nil when
// the message deserves none (too short for a header, or itself a response).
// It reads the header and exactly one question, ignores the rest (EDNS OPT
// records and the like), and never reads past the end of query.
func dnsAnswer(query []byte, zone map[string]netip.Addr) []byte {
	if len(query) < dnsHeaderLen || query[2]&0x80 != 0 {
		return nil
	}
	reply := func(rcode byte, question []byte, answer []byte) []byte {
		resp := make([]byte, dnsHeaderLen, dnsHeaderLen+len(question)+len(answer))
		copy(resp[0:2], query[0:2])           // ID
		resp[2] = 0x80 | 0x04 | query[2]&0x01 // QR, AA, RD copied
		resp[3] = 0x80 | rcode                // RA: Go's resolver takes a non-AA, non-RA empty answer for a lame referral
		if question != nil {
			binary.BigEndian.PutUint16(resp[4:6], 1)
		}
		if answer != nil {
			binary.BigEndian.PutUint16(resp[6:8], 1)
		}
		return append(append(resp, question...), answer...)
	}
	if opcode := query[2] >> 3 & 0x0f; opcode != 0 {
		return reply(rcodeNotImp, nil, nil)
	}
	if binary.BigEndian.Uint16(query[4:6]) != 1 {
		return reply(rcodeFormErr, nil, nil)
	}
	name, end, ok := parseQName(query, dnsHeaderLen)
	if !ok || end+4 > len(query) {
		return reply(rcodeFormErr, nil, nil)
	}
	question := query[dnsHeaderLen : end+4]
	qtype := binary.BigEndian.Uint16(query[end : end+2])
	qclass := binary.BigEndian.Uint16(query[end+2 : end+4])

	addr, known := zone[name]
	if !known {
		return reply(rcodeNXDomain, question, nil)
	}
	var rdata []byte
	switch {
	case qclass != classIN:
	case qtype == typeA && addr.Is4():
		rdata = addr.AsSlice()
	case qtype == typeAAAA && addr.Is6():
		rdata = addr.AsSlice()
	}
	if rdata == nil {
		return reply(0, question, nil)
	}
	answer := []byte{0xc0, dnsHeaderLen} // a pointer to the question's name
	answer = binary.BigEndian.AppendUint16(answer, qtype)
	answer = binary.BigEndian.AppendUint16(answer, classIN)
	answer = binary.BigEndian.AppendUint32(answer, 60) // TTL
	answer = binary.BigEndian.AppendUint16(answer, uint16(len(rdata)))
	answer = append(answer, rdata...)
	return reply(0, question, answer)
}

// parseQName reads an uncompressed name at msg[off:], returning it in lower
// case without the trailing dot, and the offset just past it.
func parseQName(msg []byte, off int) (name string, end int, ok bool) {
	var b strings.Builder
	wire := 0
	for {
		if off >= len(msg) {
			return "", 0, false
		}
		n := int(msg[off])
		off++
		wire += 1 + n
		if wire > 255 {
			return "", 0, false
		}
		if n == 0 {
			return b.String(), off, true
		}
		if n&0xc0 != 0 { // compression pointer or reserved: not in a question
			return "", 0, false
		}
		if off+n > len(msg) {
			return "", 0, false
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		for _, c := range msg[off : off+n] {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			b.WriteByte(c)
		}
		off += n
	}
}

// resolvConf is a resolv.conf naming server, which must be on port 53:
// resolv.conf has no way to say another.
func (l *Lab) resolvConf(server netip.AddrPort) []byte {
	l.t.Helper()
	if server.Port() != 53 {
		l.t.Fatalf("resolv.conf cannot name %v: a nameserver is always on port 53", server)
	}
	return fmt.Appendf(nil, "nameserver %s\noptions attempts:1 timeout:1\n", server.Addr())
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
	content := l.resolvConf(server)
	etcNetns.Lock()
	defer etcNetns.Unlock()
	_, statErr := os.Stat("/etc/netns")
	createdParent := errors.Is(statErr, os.ErrNotExist)
	dir := filepath.Join("/etc/netns", l.Host)
	l.t.Cleanup(func() {
		etcNetns.Lock()
		defer etcNetns.Unlock()
		if err := os.RemoveAll(dir); err != nil {
			l.t.Errorf("remove %s: %v", dir, err)
		}
		if createdParent {
			_ = os.Remove("/etc/netns") // only if empty: another lab may use it
		}
	})
	if err := os.MkdirAll(dir, 0o755); err != nil {
		l.t.Fatalf("UseDNS: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), content, 0o644); err != nil {
		l.t.Fatalf("UseDNS: %v", err)
	}
}
