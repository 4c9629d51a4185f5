package test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"nicproxy/test/netlab"
)

// BenchmarkExecDownload compares a 1 GiB download by curl under
// `nicproxy exec -i ens160` (pinned in the kernel, nothing relayed) with
// the same curl pinned by SO_BINDTODEVICE itself (--interface ens160) and
// with curl through nicproxy's SOCKS5 relay, in the same run. Every case is
// the same client, so the ratios of their MB/s are the cost of the path:
//
//	go test -run '^$' -bench ExecDownload -benchtime 3x ./test/
func BenchmarkExecDownload(b *testing.B) {
	const size = 1 << 30
	lab := netlab.New(b)
	web := lab.StartWeb()
	lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", "", "-i", "ens160", "-l", "127.0.0.1:1080")
	url := fmt.Sprintf("http://%s/zeros?n=%d", web.HTTP, size)
	curl := []string{"curl", "-sS", "--max-time", "120", "-o", "/dev/null", "-w", "%{size_download}"}

	cases := []struct {
		name string
		argv []string
	}{
		{"direct-bindtodevice", append(curl, "--interface", "ens160", url)},
		{"exec", append([]string{nicproxyBinary, "exec", "-i", "ens160", "--"}, append(curl, url)...)},
		{"socks5-relay", append(curl, "--socks5", "127.0.0.1:1080", url)},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				before := lab.Snapshot()
				out, err := lab.Command(c.argv[0], c.argv[1:]...).Output() // no *_proxy: curl goes where the case says
				if err != nil {
					b.Fatalf("%s: %v: %s", strings.Join(c.argv, " "), err, out)
				}
				if n, _ := strconv.Atoi(string(out)); n != size {
					b.Fatalf("downloaded %s bytes, want %d", out, size)
				}
				// The download's ACKs prove the path: all on ens160.
				if tx := before.TxSince("ens33"); tx != 0 {
					b.Fatalf("ens33 sent %d bytes", tx)
				}
				if rx := before.RxSince("ens160"); rx < size {
					b.Fatalf("ens160 received %d bytes, want at least %d", rx, size)
				}
			}
		})
	}
}
