package test

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkHostileAuth measures the times TestHostileAuth proves only as
// behaviour, each beside its baseline from the same run, on the binary
// users run (no race detector):
//
//   - a bcrypt user's and a plain-password user's refusal time, as a ratio
//     to an unknown user's (goal: within 0.9x..1.1x, so the time does not
//     tell which names exist); lower quartiles of 12 rounds, each kind
//     taking each place in the order equally often;
//   - a cached login's p50 while 50 clients guess a bcrypt password, as a
//     ratio to its p50 with nobody guessing, and in ms (goal: under 50 ms);
//   - the 8th failure in a row from one address against the 1st (the
//     back-off waits 400 ms before the 8th: goal at least +300 ms), and a
//     login from another address meanwhile, as a ratio to the 1st failure
//     (goal: not slowed, at most 1x).
//
// Run it with
//
//	go test -run '^$' -bench HostileAuth -benchtime 1x ./test/
func BenchmarkHostileAuth(b *testing.B) {
	h := startHostileBinary(b, plainBinary(b), authUsers())

	b.Run("refusal-times", func(b *testing.B) {
		for b.Loop() {
			var unknown, known, plain []time.Duration
			for i := range 12 {
				kinds := []struct {
					user string
					into *[]time.Duration
					net  int
				}{{"mallory", &unknown, 1}, {"bob", &known, 2}, {"carol", &plain, 3}}
				for j := range kinds {
					c := kinds[(i+j)%len(kinds)]
					// Each attempt from its own address: the back-off stays out.
					d, ok := h.socksLoginFrom(b, fmt.Sprintf("127.0.%d.%d", c.net, i+1), c.user, "wrong")
					if ok {
						b.Fatalf("%s logged in with a wrong password", c.user)
					}
					*c.into = append(*c.into, d)
				}
			}
			u := quantile(unknown, 0.25)
			b.ReportMetric(float64(quantile(known, 0.25))/float64(u), "bcrypt/unknown")
			b.ReportMetric(float64(quantile(plain, 0.25))/float64(u), "plain/unknown")
		}
	})

	b.Run("login-while-guessing", func(b *testing.B) {
		for b.Loop() {
			logins := func(net int) time.Duration {
				var took []time.Duration
				for i := range 20 {
					d, ok := h.socksLoginFrom(b, fmt.Sprintf("127.0.%d.%d", net, i+1), "alice", "alice-pw")
					if !ok {
						b.Fatal("alice could not log in")
					}
					took = append(took, d)
				}
				return median(took)
			}
			quiet := logins(5)
			stop := h.guessers(50)
			time.Sleep(300 * time.Millisecond) // the guessers are at it
			busy := logins(7)
			stop()
			b.ReportMetric(float64(busy)/float64(quiet), "guessing/quiet-p50")
			b.ReportMetric(float64(busy)/float64(time.Millisecond), "guessing-p50-ms")
		}
	})

	b.Run("back-off", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			var took []time.Duration
			src := fmt.Sprintf("127.0.6.%d", i+1)
			for range 8 {
				d, _ := h.socksLoginFrom(b, src, "carol", "wrong")
				took = append(took, d)
			}
			other, ok := h.socksLoginFrom(b, fmt.Sprintf("127.0.8.%d", i+1), "carol", "carol-pw")
			if !ok {
				b.Fatal("carol could not log in from another address")
			}
			b.ReportMetric(float64(took[7]-took[0])/float64(time.Millisecond), "8th-minus-1st-ms")
			b.ReportMetric(float64(other)/float64(took[0]), "other-address/1st")
		}
	})
}
