// Package socks4 parses SOCKS4 and SOCKS4a requests and writes their replies.
// It does not dial: the proxy decides what to do with a request.
package socks4

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
)

// Protocol constants from the SOCKS4 and SOCKS4a specifications.
const (
	// Version is the first byte of every SOCKS4 request.
	Version = 0x04
	// CmdConnect asks for a TCP connection to the destination.
	CmdConnect = 0x01
	// CmdBind asks the proxy to accept one inbound connection; nicproxy
	// rejects it, but ReadRequest still parses it so the caller can reply.
	CmdBind = 0x02

	// ReplyGranted is the reply code for an accepted request.
	ReplyGranted = 0x5A
	// ReplyRejected is the reply code for a rejected or failed request.
	ReplyRejected = 0x5B

	// MaxFieldLen bounds the user id and the SOCKS4a host name, so a client
	// cannot make the proxy read without end while it looks for a NUL.
	MaxFieldLen = 255

	// MaxRequestLen is the most bytes ReadRequest ever reads: the 8-byte
	// header plus two NUL-terminated fields of at most MaxFieldLen bytes.
	MaxRequestLen = 8 + 2*(MaxFieldLen+1)
)

// Errors returned by ReadRequest, for errors.Is.
var (
	// ErrVersion means the first byte was not 0x04.
	ErrVersion = errors.New("socks4: unsupported version")
	// ErrUserIDTooLong means no NUL within MaxFieldLen bytes of user id.
	ErrUserIDTooLong = errors.New("socks4: user id longer than 255 bytes")
	// ErrHostTooLong means no NUL within MaxFieldLen bytes of host name.
	ErrHostTooLong = errors.New("socks4: host longer than 255 bytes")
	// ErrBadHost means a SOCKS4a host name that cannot be a host name.
	ErrBadHost = errors.New("socks4: invalid host")
)

// Request is one parsed SOCKS4 or SOCKS4a request.
type Request struct {
	// Command is CmdConnect, CmdBind, or whatever the client sent:
	// ReadRequest does not judge it, so the caller can reply rejected.
	Command byte
	// Port is the destination port.
	Port uint16
	// IP is the destination address of a SOCKS4 request; it is the zero
	// netip.Addr for a SOCKS4a request, which names Host instead.
	IP netip.Addr
	// Host is the destination name of a SOCKS4a request, "" for SOCKS4.
	Host string
	// UserID is the client's user id field, often empty.
	UserID string
}

// ReadRequest reads one request, version byte included, from r.
//
// It reads exactly the bytes of the request and never more, because what
// follows belongs to the tunnel: after the reply the caller hands the raw
// connection to the relay. The header is read with one io.ReadFull and the
// NUL-terminated fields a byte at a time (a handshake is tiny), or through
// ReadByte when r is an io.ByteReader. So pass the *net.TCPConn itself, not a
// bufio.Reader around it, unless the caller relays the reader's buffered
// bytes too.
//
// Commands other than CONNECT are returned, not refused, so the caller can
// send ReplyRejected; the returned error is for requests that are malformed.
func ReadRequest(r io.Reader) (*Request, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("socks4: read request: %w", err)
	}
	if hdr[0] != Version {
		return nil, fmt.Errorf("%w 0x%02x", ErrVersion, hdr[0])
	}
	req := &Request{
		Command: hdr[1],
		Port:    uint16(hdr[2])<<8 | uint16(hdr[3]),
	}
	ip := netip.AddrFrom4([4]byte(hdr[4:8]))

	br := byteReader(r)
	user, err := readField(br, "user id", ErrUserIDTooLong)
	if err != nil {
		return nil, err
	}
	req.UserID = user

	// SOCKS4a: a client that cannot resolve sends 0.0.0.x with x != 0 (an
	// address no one would dial) and the name after the user id.
	if !is4a(ip) {
		req.IP = ip
		return req, nil
	}
	host, err := readField(br, "host", ErrHostTooLong)
	if err != nil {
		return nil, err
	}
	if err := checkHost(host); err != nil {
		return nil, err
	}
	req.Host = host
	return req, nil
}

// is4a reports whether ip is the SOCKS4a marker 0.0.0.x, x != 0.
func is4a(ip netip.Addr) bool {
	b := ip.As4()
	return b[0] == 0 && b[1] == 0 && b[2] == 0 && b[3] != 0
}

// readField reads a NUL-terminated field of at most MaxFieldLen bytes. It
// stops at the NUL, or at the first byte past the limit.
func readField(br io.ByteReader, name string, tooLong error) (string, error) {
	var buf [MaxFieldLen]byte
	for n := 0; ; n++ {
		c, err := br.ReadByte()
		if err != nil {
			if err == io.EOF {
				// EOF inside a request is a truncated request.
				err = io.ErrUnexpectedEOF
			}
			return "", fmt.Errorf("socks4: read %s: %w", name, err)
		}
		if c == 0 {
			return string(buf[:n]), nil
		}
		if n == MaxFieldLen {
			return "", tooLong
		}
		buf[n] = c
	}
}

// checkHost accepts printable ASCII without spaces: enough for host names,
// IDNA "xn--" names and address literals, and it keeps control characters
// and spaces out of logs and resolvers. Whether the name exists is the
// resolver's business.
func checkHost(host string) error {
	if host == "" {
		return fmt.Errorf("%w: empty", ErrBadHost)
	}
	for i := 0; i < len(host); i++ {
		if c := host[i]; c <= ' ' || c >= 0x7f {
			return fmt.Errorf("%w: byte 0x%02x at offset %d", ErrBadHost, c, i)
		}
	}
	return nil
}

// byteReader returns r's own ReadByte when it has one, else reads one byte
// per Read call: never more than asked, so nothing is over-read.
func byteReader(r io.Reader) io.ByteReader {
	if br, ok := r.(io.ByteReader); ok {
		return br
	}
	return &oneByteReader{r: r}
}

// oneByteReader adapts an io.Reader to io.ByteReader without buffering.
type oneByteReader struct {
	r   io.Reader
	buf [1]byte
}

func (o *oneByteReader) ReadByte() (byte, error) {
	if _, err := io.ReadFull(o.r, o.buf[:]); err != nil {
		return 0, err
	}
	return o.buf[0], nil
}

// WriteReply writes the 8-byte reply: a zero version byte, ReplyGranted or
// ReplyRejected, then six zero bytes. Port and address are only meaningful
// for BIND, which nicproxy does not grant; clients ignore them for CONNECT.
func WriteReply(w io.Writer, granted bool) error {
	reply := [8]byte{0x00, ReplyRejected}
	if granted {
		reply[1] = ReplyGranted
	}
	if _, err := w.Write(reply[:]); err != nil {
		return fmt.Errorf("socks4: write reply: %w", err)
	}
	return nil
}
