package probe

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// FuzzDNSReply: whatever a server sends back, the DNS check classifies it
// without panicking: an unpackable reply is an error, a reply about another
// question is never an answer, and a verdict of correct has exactly the
// expected addresses.
func FuzzDNSReply(f *testing.F) {
	seed := func(name string, qtype uint16, rrs ...string) {
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		m.Response = true
		for _, s := range rrs {
			if rr, err := dns.NewRR(s); err == nil {
				m.Answer = append(m.Answer, rr)
			}
		}
		if b, err := m.Pack(); err == nil {
			f.Add(b)
		}
	}
	seed("app.sbbh.cloud.", dns.TypeA, "app.sbbh.cloud. 300 IN A 10.11.80.80")
	seed("app.sbbh.cloud.", dns.TypeA, "app.sbbh.cloud. 300 IN CNAME gw.sbbh.cloud.", "gw.sbbh.cloud. 300 IN A 10.11.80.81")
	seed("app.sbbh.cloud.", dns.TypeA, "app.sbbh.cloud. 300 IN CNAME app.sbbh.cloud.")
	seed("ok.bad.test.", dns.TypeA, "ok.bad.test. 300 IN A 10.11.80.80")
	seed("app.sbbh.cloud.", dns.TypeAAAA, "app.sbbh.cloud. 300 IN AAAA fd00::80")
	f.Add([]byte{})

	want := []netip.Addr{netip.MustParseAddr("10.11.80.80")}
	query := dns.Question{Name: "app.sbbh.cloud.", Qtype: dns.TypeA, Qclass: dns.ClassINET}
	f.Fuzz(func(t *testing.T, wire []byte) {
		reply := new(dns.Msg)
		if err := reply.Unpack(wire); err != nil {
			return // the library refuses it: exchange returns that error
		}
		answers := [2]dnsAnswer{{qtype: dns.TypeA, reply: reply}, {qtype: dns.TypeAAAA, reply: reply}}
		if err := checkQuestion(query, reply); err != nil {
			answers = [2]dnsAnswer{{qtype: dns.TypeA, err: err}, {qtype: dns.TypeAAAA, err: err}}
		}
		r := judge(answers, want)
		if r.Verdict == "" {
			t.Fatal("no verdict")
		}
		if r.Success != (r.Verdict == DNSCorrect) {
			t.Fatalf("success %v with verdict %s", r.Success, r.Verdict)
		}
		if r.Verdict == DNSCorrect && (len(r.Addresses) != 1 || r.Addresses[0] != want[0]) {
			t.Fatalf("verdict correct with addresses %v, want %v", r.Addresses, want)
		}
		if checkQuestion(query, reply) != nil && r.Verdict == DNSCorrect {
			t.Fatal("a reply about another question judged correct")
		}
	})
}
