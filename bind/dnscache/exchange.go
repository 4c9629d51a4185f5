package dnscache

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// udpPayload is the EDNS(0) UDP size advertised: the DNS flag day 2020
// value, which avoids IP fragmentation on any common path. Larger answers
// come back truncated and are asked again over TCP.
const udpPayload = 1232

// maxCNAMEHops bounds a CNAME chain inside one answer.
const maxCNAMEHops = 16

// outcome is how a server answered one question.
type outcome int

const (
	found    outcome = iota // addresses of the asked type
	nxdomain                // the name does not exist
	nodata                  // the name exists, without records of the type
)

// answer is what one server said to one question. ttl is the lifetime of
// the answer: for found, the smallest TTL of the records used (the CNAME
// chain and the addresses); for nxdomain and nodata, min(SOA TTL, SOA
// MINIMUM) when the server sent an SOA, and hasTTL false otherwise (RFC
// 2308: a negative answer without an SOA is not cached).
type answer struct {
	outcome outcome
	addrs   []netip.Addr
	ttl     uint32
	hasTTL  bool
}

// Reasons a server's reply is not an answer; the next server is asked.
var (
	errServFail = errors.New("server misbehaving")
	errLame     = errors.New("lame referral")
	errRefused  = errors.New("query refused")
	errInvalid  = errors.New("invalid DNS response")
)

// exchange asks server question q, over UDP first (TCP with useTCP), and
// again over TCP when the UDP answer is truncated. ctx bounds the whole
// exchange.
func (r *Resolver) exchange(ctx context.Context, server netip.AddrPort, q dnsmessage.Question, useTCP bool) (answer, error) {
	network := "udp"
	if useTCP {
		network = "tcp"
	}
	for {
		id := uint16(rand.Uint32())
		msg, err := buildQuery(id, q)
		if err != nil {
			return answer{}, err
		}
		resp, err := r.roundTrip(ctx, network, server, id, q, msg)
		if err != nil {
			return answer{}, err
		}
		var p dnsmessage.Parser
		h, err := p.Start(resp)
		if err != nil {
			return answer{}, errInvalid
		}
		if h.Truncated && network == "udp" {
			network = "tcp"
			continue
		}
		if err := p.SkipAllQuestions(); err != nil {
			return answer{}, errInvalid
		}
		return parseAnswer(&p, h, q)
	}
}

// buildQuery is a recursive query for q with an EDNS(0) OPT record.
func buildQuery(id uint16, q dnsmessage.Question) ([]byte, error) {
	b := dnsmessage.NewBuilder(make([]byte, 0, 64), dnsmessage.Header{ID: id, RecursionDesired: true})
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	if err := b.StartAdditionals(); err != nil {
		return nil, err
	}
	var opt dnsmessage.ResourceHeader
	if err := opt.SetEDNS0(udpPayload, dnsmessage.RCodeSuccess, false); err != nil {
		return nil, err
	}
	if err := b.OPTResource(opt, dnsmessage.OPTResource{}); err != nil {
		return nil, err
	}
	return b.Finish()
}

// roundTrip sends msg to server and returns the first reply that answers
// it: over UDP, replies with another ID or question (spoofed, or late
// answers to an earlier query) are dropped and the wait goes on, as in
// Go's resolver; over TCP, the stream is the server's, so a mismatch is an
// error.
func (r *Resolver) roundTrip(ctx context.Context, network string, server netip.AddrPort, id uint16, q dnsmessage.Question, msg []byte) ([]byte, error) {
	conn, err := r.cfg.Dial(ctx, network, server.String())
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	// A cancelled ctx (the last waiter gave up) unblocks the read at once.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	resp, err := readReply(conn, network, id, q, msg)
	if err != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return resp, err
}

func readReply(conn net.Conn, network string, id uint16, q dnsmessage.Question, msg []byte) ([]byte, error) {
	if network == "tcp" {
		framed := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(msg)), uint16(len(msg)))
		if _, err := conn.Write(append(framed, msg...)); err != nil {
			return nil, err
		}
		var size [2]byte
		if _, err := io.ReadFull(conn, size[:]); err != nil {
			return nil, err
		}
		resp := make([]byte, binary.BigEndian.Uint16(size[:]))
		if _, err := io.ReadFull(conn, resp); err != nil {
			return nil, err
		}
		if !answers(resp, id, q) {
			return nil, errInvalid
		}
		return resp, nil
	}
	if _, err := conn.Write(msg); err != nil {
		return nil, err
	}
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return nil, err
		}
		if answers(buf[:n], id, q) {
			return buf[:n], nil
		}
	}
}

// answers reports whether resp is a response to the query id for q.
func answers(resp []byte, id uint16, q dnsmessage.Question) bool {
	var p dnsmessage.Parser
	h, err := p.Start(resp)
	if err != nil || h.ID != id || !h.Response {
		return false
	}
	got, err := p.Question()
	return err == nil && got.Type == q.Type && got.Class == q.Class && equalName(got.Name, q.Name)
}

func equalName(a, b dnsmessage.Name) bool {
	return strings.EqualFold(a.String(), b.String())
}

// record is one answer record of interest.
type record struct {
	name   string // lower case, absolute
	typ    dnsmessage.Type
	addr   netip.Addr // A, AAAA
	target string     // CNAME, lower case, absolute
	ttl    uint32
}

// parseAnswer reads the answer and authority sections after the questions.
func parseAnswer(p *dnsmessage.Parser, h dnsmessage.Header, q dnsmessage.Question) (answer, error) {
	switch h.RCode {
	case dnsmessage.RCodeSuccess, dnsmessage.RCodeNameError:
	case dnsmessage.RCodeServerFailure:
		return answer{}, errServFail
	case dnsmessage.RCodeRefused:
		return answer{}, errRefused
	default:
		return answer{}, fmt.Errorf("%w (%v)", errServFail, h.RCode)
	}
	records, err := answerRecords(p)
	if err != nil {
		return answer{}, err
	}
	soaTTL, hasSOA, err := negativeTTL(p)
	if err != nil {
		return answer{}, err
	}
	if h.RCode == dnsmessage.RCodeNameError {
		return answer{outcome: nxdomain, ttl: soaTTL, hasTTL: hasSOA}, nil
	}

	name, ttl := strings.ToLower(q.Name.String()), ^uint32(0)
	for hop := 0; ; hop++ {
		var addrs []netip.Addr
		addrTTL := ttl
		for _, rr := range records {
			if rr.name == name && rr.typ == q.Type {
				addrs = append(addrs, rr.addr)
				addrTTL = min(addrTTL, rr.ttl)
			}
		}
		if len(addrs) > 0 {
			return answer{outcome: found, addrs: addrs, ttl: addrTTL, hasTTL: true}, nil
		}
		next := ""
		for _, rr := range records {
			if rr.name == name && rr.typ == dnsmessage.TypeCNAME {
				next, ttl = rr.target, min(ttl, rr.ttl)
				break
			}
		}
		if next == "" || hop == maxCNAMEHops {
			break
		}
		name = next
	}
	// A server that neither answers, nor recurses, nor is authoritative
	// sent a referral we cannot follow; another server may do better.
	if len(records) == 0 && !hasSOA && !h.Authoritative && !h.RecursionAvailable {
		return answer{}, errLame
	}
	return answer{outcome: nodata, ttl: soaTTL, hasTTL: hasSOA}, nil
}

func answerRecords(p *dnsmessage.Parser) ([]record, error) {
	var records []record
	for {
		rh, err := p.AnswerHeader()
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			return records, nil
		}
		if err != nil {
			return nil, errInvalid
		}
		rr := record{name: strings.ToLower(rh.Name.String()), typ: rh.Type, ttl: rh.TTL}
		switch {
		case rh.Class != dnsmessage.ClassINET:
			err = p.SkipAnswer()
		case rh.Type == dnsmessage.TypeA:
			var a dnsmessage.AResource
			if a, err = p.AResource(); err == nil {
				rr.addr = netip.AddrFrom4(a.A)
				records = append(records, rr)
			}
		case rh.Type == dnsmessage.TypeAAAA:
			var a dnsmessage.AAAAResource
			if a, err = p.AAAAResource(); err == nil {
				rr.addr = netip.AddrFrom16(a.AAAA)
				records = append(records, rr)
			}
		case rh.Type == dnsmessage.TypeCNAME:
			var c dnsmessage.CNAMEResource
			if c, err = p.CNAMEResource(); err == nil {
				rr.target = strings.ToLower(c.CNAME.String())
				records = append(records, rr)
			}
		default:
			err = p.SkipAnswer()
		}
		if err != nil {
			return nil, errInvalid
		}
	}
}

// negativeTTL finds the SOA of the authority section: RFC 2308 section 5
// keeps a negative answer for the smaller of its TTL and its MINIMUM.
func negativeTTL(p *dnsmessage.Parser) (ttl uint32, ok bool, err error) {
	for {
		rh, err := p.AuthorityHeader()
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			return ttl, ok, nil
		}
		if err != nil {
			return 0, false, errInvalid
		}
		if rh.Type != dnsmessage.TypeSOA || ok {
			if err := p.SkipAuthority(); err != nil {
				return 0, false, errInvalid
			}
			continue
		}
		soa, err := p.SOAResource()
		if err != nil {
			return 0, false, errInvalid
		}
		ttl, ok = min(rh.TTL, soa.MinTTL), true
	}
}

// isTimeout reports whether err is a network timeout (the server did not
// answer in time), as opposed to a refusal or a bad answer.
func isTimeout(err error) bool {
	var netErr net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &netErr) && netErr.Timeout())
}
