package socks4

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
)

// encode is the inverse of ReadRequest, for building inputs and checking
// round trips.
func encode(r *Request) []byte {
	b := []byte{Version, r.Command, byte(r.Port >> 8), byte(r.Port)}
	if r.Host != "" {
		b = append(b, 0, 0, 0, 1)
	} else {
		ip := r.IP.As4()
		b = append(b, ip[:]...)
	}
	b = append(b, r.UserID...)
	b = append(b, 0)
	if r.Host != "" {
		b = append(b, r.Host...)
		b = append(b, 0)
	}
	return b
}

// concat joins byte slices and strings into one input.
func concat(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch p := p.(type) {
		case string:
			b = append(b, p...)
		case []byte:
			b = append(b, p...)
		}
	}
	return b
}

func TestReadRequest(t *testing.T) {
	long := strings.Repeat("a", 256)
	max := strings.Repeat("a", 255)
	hdr4 := []byte{4, 1, 0x01, 0xbb, 192, 0, 2, 10}  // CONNECT 192.0.2.10:443
	hdr4a := []byte{4, 1, 0x00, 0x50, 0, 0, 0, 0x2a} // CONNECT <host>:80
	tests := []struct {
		name    string
		in      []byte
		want    *Request
		wantErr error // matched with errors.Is when want is nil
	}{
		{"socks4", concat(hdr4, "alice\x00"),
			&Request{Command: 1, Port: 443, IP: netip.MustParseAddr("192.0.2.10"), UserID: "alice"}, nil},
		{"socks4 empty user", concat(hdr4, "\x00"),
			&Request{Command: 1, Port: 443, IP: netip.MustParseAddr("192.0.2.10")}, nil},
		{"socks4 user of 255 bytes", concat(hdr4, max, "\x00"),
			&Request{Command: 1, Port: 443, IP: netip.MustParseAddr("192.0.2.10"), UserID: max}, nil},
		{"socks4a", concat(hdr4a, "bob\x00example.com\x00"),
			&Request{Command: 1, Port: 80, Host: "example.com", UserID: "bob"}, nil},
		{"socks4a host of 255 bytes", concat(hdr4a, "\x00", max, "\x00"),
			&Request{Command: 1, Port: 80, Host: max}, nil},
		{"bind is returned for the caller to reject", concat([]byte{4, 2, 0, 21, 198, 51, 100, 7}, "\x00"),
			&Request{Command: CmdBind, Port: 21, IP: netip.MustParseAddr("198.51.100.7")}, nil},
		{"unknown command is returned too", concat([]byte{4, 9, 0, 21, 198, 51, 100, 7}, "\x00"),
			&Request{Command: 9, Port: 21, IP: netip.MustParseAddr("198.51.100.7")}, nil},
		{"0.0.0.0 is plain socks4", concat([]byte{4, 1, 0, 80, 0, 0, 0, 0}, "\x00"),
			&Request{Command: 1, Port: 80, IP: netip.MustParseAddr("0.0.0.0")}, nil},

		{"bad version", concat([]byte{5, 1, 0, 80, 127, 0, 0, 1}, "\x00"), nil, ErrVersion},
		{"user id too long", concat(hdr4, long, "\x00"), nil, ErrUserIDTooLong},
		{"user id without NUL", concat(hdr4, long), nil, ErrUserIDTooLong},
		{"host too long", concat(hdr4a, "\x00", long, "\x00"), nil, ErrHostTooLong},
		{"socks4a empty host", concat(hdr4a, "\x00\x00"), nil, ErrBadHost},
		{"socks4a host with space", concat(hdr4a, "\x00exa mple.com\x00"), nil, ErrBadHost},
		{"socks4a host with control byte", concat(hdr4a, "\x00exa\x01mple.com\x00"), nil, ErrBadHost},
		{"empty input", nil, nil, io.EOF},
		{"short header", []byte{4, 1, 0}, nil, io.ErrUnexpectedEOF},
		{"user id missing NUL", concat(hdr4, "alice"), nil, io.ErrUnexpectedEOF},
		{"host missing NUL", concat(hdr4a, "\x00example.com"), nil, io.ErrUnexpectedEOF},
		{"socks4a without host", concat(hdr4a, "\x00"), nil, io.ErrUnexpectedEOF},
	}
	const tail = "tunnel bytes"
	for _, tt := range tests {
		// Both ways of reading: through ReadByte, and one Read per byte.
		for _, viaByteReader := range []bool{true, false} {
			name := tt.name + "/Reader"
			if viaByteReader {
				name = tt.name + "/ByteReader"
			}
			t.Run(name, func(t *testing.T) {
				data := tt.in
				if tt.want != nil {
					// The bytes after a request belong to the tunnel and
					// must still be there afterwards.
					data = concat(tt.in, tail)
				}
				in := bytes.NewReader(data)
				var r io.Reader = in
				if !viaByteReader {
					r = struct{ io.Reader }{in}
				}
				got, err := ReadRequest(r)
				if tt.want == nil {
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf("ReadRequest() error = %v, want %v", err, tt.wantErr)
					}
					if !strings.HasPrefix(err.Error(), "socks4: ") {
						t.Errorf("error %q does not say where it comes from", err)
					}
					return
				}
				if err != nil {
					t.Fatalf("ReadRequest() error = %v", err)
				}
				if *got != *tt.want {
					t.Errorf("ReadRequest() = %+v, want %+v", *got, *tt.want)
				}
				if rest, _ := io.ReadAll(in); string(rest) != tail {
					t.Errorf("left %q unread, want %q", rest, tail)
				}
			})
		}
	}
}

func TestUserIDTooLongMessage(t *testing.T) {
	in := concat([]byte{4, 1, 0, 80, 127, 0, 0, 1}, strings.Repeat("u", 300), "\x00")
	_, err := ReadRequest(bytes.NewReader(in))
	if err == nil || err.Error() != "socks4: user id longer than 255 bytes" {
		t.Errorf("error = %v", err)
	}
}

func TestWriteReply(t *testing.T) {
	for _, tt := range []struct {
		granted bool
		want    []byte
	}{
		{true, []byte{0, 0x5A, 0, 0, 0, 0, 0, 0}},
		{false, []byte{0, 0x5B, 0, 0, 0, 0, 0, 0}},
	} {
		var b bytes.Buffer
		if err := WriteReply(&b, tt.granted); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b.Bytes(), tt.want) {
			t.Errorf("WriteReply(%v) = % x, want % x", tt.granted, b.Bytes(), tt.want)
		}
	}
}

// countingReader counts the bytes handed out; it is deliberately not an
// io.ByteReader so that ReadRequest's unbuffered path is the one measured.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func FuzzReadRequest(f *testing.F) {
	f.Add(encode(&Request{Command: 1, Port: 443, IP: netip.MustParseAddr("192.0.2.1"), UserID: "u"}))
	f.Add(encode(&Request{Command: 1, Port: 80, Host: "example.com"}))
	f.Fuzz(func(t *testing.T, data []byte) {
		cr := &countingReader{r: bytes.NewReader(data)}
		req, err := ReadRequest(cr)
		if cr.n > MaxRequestLen {
			t.Fatalf("read %d bytes, limit %d", cr.n, MaxRequestLen)
		}
		if err != nil {
			return
		}
		enc := encode(req)
		if len(enc) != cr.n {
			t.Fatalf("consumed %d bytes, but the request encodes to %d", cr.n, len(enc))
		}
		again, err := ReadRequest(bytes.NewReader(enc))
		if err != nil {
			t.Fatalf("re-parse of %+v: %v", *req, err)
		}
		if *again != *req {
			t.Fatalf("round trip: %+v, then %+v", *req, *again)
		}
	})
}
