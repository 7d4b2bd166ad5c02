package probe

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// serveUDP runs a miekg/dns server with handler on a loopback UDP port until
// the test ends.
func serveUDP(t *testing.T, handler dns.HandlerFunc) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: handler}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

// A reply must be about the question asked: issue 14 found a server that
// answered a query for wrongq.bad.test with the question ok.bad.test and an A
// record for it judged correct.
func TestDNSReplyQuestionMustMatch(t *testing.T) {
	want := netip.MustParseAddr("127.0.0.9")
	tests := []struct {
		name    string
		rewrite func(dns.Question) []dns.Question
		want    DNSVerdict
	}{
		{"same question", func(q dns.Question) []dns.Question { return []dns.Question{q} }, DNSCorrect},
		{"same name in other case (0x20)", func(q dns.Question) []dns.Question {
			q.Name = strings.ToUpper(q.Name)
			return []dns.Question{q}
		}, DNSCorrect},
		{"another name", func(q dns.Question) []dns.Question {
			q.Name = "ok.bad.test."
			return []dns.Question{q}
		}, DNSError},
		{"another type", func(q dns.Question) []dns.Question {
			q.Qtype = dns.TypeMX
			return []dns.Question{q}
		}, DNSError},
		{"another class", func(q dns.Question) []dns.Question {
			q.Qclass = dns.ClassCHAOS
			return []dns.Question{q}
		}, DNSError},
		{"no question", func(dns.Question) []dns.Question { return nil }, DNSError},
		{"two questions", func(q dns.Question) []dns.Question { return []dns.Question{q, q} }, DNSError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server := serveUDP(t, func(w dns.ResponseWriter, r *dns.Msg) {
				// The reply carries the rewritten question, and an A record
				// for its name.
				qs := tt.rewrite(r.Question[0])
				m := new(dns.Msg)
				m.SetReply(r)
				m.Question = qs
				if len(qs) > 0 && qs[0].Qtype == dns.TypeA {
					m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: qs[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: want.AsSlice()}}
				}
				_ = w.WriteMsg(m)
			})
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			res := DNS(ctx, server, "wrongq.bad.test", []netip.Addr{want}, DNSOptions{}, nil)
			if res.Verdict != tt.want {
				t.Fatalf("verdict %q (%v), want %q", res.Verdict, res.Err, tt.want)
			}
			if tt.want == DNSError && !strings.Contains(res.Err.Error(), "does not match the query") {
				t.Errorf("error %q does not say the question does not match", res.Err)
			}
		})
	}
}
