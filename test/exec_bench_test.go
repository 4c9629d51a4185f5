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
// the same client, so the ratios of their MB/s are the cost of the path.
// MB/s is the whole command's (exec's set-up included, about 50 ms of
// loading programs and making a cgroup); curl-MB/s is the transfer's own,
// as curl measured it, the figure for "nothing is relayed":
//
//	go test -run '^$' -bench ExecDownload -benchtime 3x ./test/
func BenchmarkExecDownload(b *testing.B) {
	const size = 1 << 30
	lab := netlab.New(b)
	web := lab.StartWeb()
	lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", "", "-i", "ens160", "-l", "127.0.0.1:1080")
	url := fmt.Sprintf("http://%s/zeros?n=%d", web.HTTP, size)
	curl := []string{"curl", "-sS", "--max-time", "120", "-o", "/dev/null", "-w", "%{size_download} %{speed_download}"}

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
			var speeds float64
			for b.Loop() {
				before := lab.Snapshot()
				out, err := lab.Command(c.argv[0], c.argv[1:]...).Output() // no *_proxy: curl goes where the case says
				if err != nil {
					b.Fatalf("%s: %v: %s", strings.Join(c.argv, " "), err, out)
				}
				got, speed, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
				if n, _ := strconv.Atoi(got); n != size {
					b.Fatalf("downloaded %s bytes, want %d", got, size)
				}
				bytesPerSecond, err := strconv.ParseFloat(speed, 64)
				if err != nil {
					b.Fatalf("curl's speed %q: %v", speed, err)
				}
				speeds += bytesPerSecond
				// The download's ACKs prove the path: all on ens160.
				if tx := before.TxSince("ens33"); tx != 0 {
					b.Fatalf("ens33 sent %d bytes", tx)
				}
				if rx := before.RxSince("ens160"); rx < size {
					b.Fatalf("ens160 received %d bytes, want at least %d", rx, size)
				}
			}
			b.ReportMetric(speeds/float64(b.N)/1e6, "curl-MB/s")
		})
	}
}
