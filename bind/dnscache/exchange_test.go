package dnscache

import (
	"net/netip"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// FuzzAnswer feeds arbitrary replies to the code that reads a server's
// answer: whatever arrives, it must not panic, and what it accepts must be
// consistent (addresses only in a positive answer, of the asked family).
func FuzzAnswer(f *testing.F) {
	q := dnsmessage.Question{Name: dnsmessage.MustNewName("web.test."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}
	rh := dnsmessage.Header{Response: true, Authoritative: true}
	f.Add(poison(rh, 1, q, q.Name))
	q6 := q
	q6.Type = dnsmessage.TypeAAAA
	f.Add(poison(rh, 2, q6, q.Name))
	srv := &testServer{zone: map[string]zoneName{"web.test.": {CNAME: "cdn.test"}, "cdn.test.": {A: []netip.Addr{addr1, addr2}}}, counts: map[string]int{}}
	srv.soa = &[2]uint32{60, 30}
	for _, name := range []string{"web.test.", "nope.test."} {
		msg, err := buildQuery(3, dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
		if err != nil {
			f.Fatal(err)
		}
		for _, resp := range srv.respond(msg, true) {
			f.Add(resp)
		}
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		var p dnsmessage.Parser
		h, err := p.Start(msg)
		if err != nil {
			return
		}
		got, err := p.Question()
		if err != nil || p.SkipAllQuestions() != nil {
			return
		}
		_ = answers(msg, h.ID, got)
		ans, err := parseAnswer(&p, h, got)
		if err != nil {
			return
		}
		if ans.outcome != found && len(ans.addrs) > 0 || ans.outcome == found && len(ans.addrs) == 0 {
			t.Fatalf("outcome %v with addresses %v", ans.outcome, ans.addrs)
		}
		for _, a := range ans.addrs {
			if a.Is4() != (got.Type == dnsmessage.TypeA) {
				t.Fatalf("%v in an answer to %v", a, got.Type)
			}
		}
	})
}
