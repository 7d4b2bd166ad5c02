package probe

import (
	"cmp"
	"context"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/lbprobe/lbprobe/test/targets"
)

// dnsServer is a real miekg/dns server on one loopback port, over UDP and
// TCP.
type dnsServer struct {
	addr       netip.AddrPort
	tcpQueries atomic.Int64
}

// startDNSServer serves handler with test/targets's DNS server on
// 127.0.0.1, UDP and TCP on the same port, until the test ends.
func startDNSServer(t *testing.T, handler dns.HandlerFunc) *dnsServer {
	t.Helper()
	s := &dnsServer{}
	counting := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		if w.RemoteAddr().Network() == "tcp" {
			s.tcpQueries.Add(1)
		}
		handler(w, r)
	})
	var err error
	if s.addr, err = targets.DNS(t.Context(), "127.0.0.1:0", counting); err != nil {
		t.Fatal(err)
	}
	return s
}

// blackholeUDP returns a loopback UDP port that receives queries and never
// answers them (test/targets's silent UDP peer).
func blackholeUDP(t testing.TB) netip.AddrPort {
	t.Helper()
	ap, err := targets.SilentUDP(t.Context(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

// silentTCP returns a loopback TCP port whose connections the kernel
// completes but nobody reads from or writes to.
func silentTCP(t testing.TB) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// The test zone. Addresses are loopback ones, though they are only data.
var (
	a10    = netip.MustParseAddr("127.0.0.10")
	a11    = netip.MustParseAddr("127.0.0.11")
	a12    = netip.MustParseAddr("127.0.0.12")
	a99    = netip.MustParseAddr("127.0.0.99")
	aaaa1  = netip.MustParseAddr("::1")
	mapped = netip.MustParseAddr("::ffff:127.0.0.10")
)

func rrA(owner string, a netip.Addr) dns.RR {
	return &dns.A{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 30}, A: a.AsSlice()}
}

func rrAAAA(owner string, a netip.Addr) dns.RR {
	return &dns.AAAA{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: 30}, AAAA: a.AsSlice()}
}

func rrCNAME(owner, target string) dns.RR {
	return &dns.CNAME{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 30}, Target: target}
}

// zoneHandler answers the names of the test zone.
func zoneHandler(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	isA, isAAAA := q.Qtype == dns.TypeA, q.Qtype == dns.TypeAAAA
	switch name {
	case "lb.test.":
		if isA {
			m.Answer = []dns.RR{rrA(q.Name, a11), rrA(q.Name, a10), rrA(q.Name, a10)}
		}
		if isAAAA {
			m.Answer = []dns.RR{rrAAAA(q.Name, aaaa1)}
		}
	case "v4only.test.":
		if isA {
			m.Answer = []dns.RR{rrA(q.Name, a10)}
		}
	case "empty.test.":
	case "nx.test.":
		m.Rcode = dns.RcodeNameError
	case "servfail.test.":
		m.Rcode = dns.RcodeServerFailure
	case "refused.test.":
		m.Rcode = dns.RcodeRefused
	case "notimp.test.":
		m.Rcode = dns.RcodeNotImplemented
	case "nxaaaa.test.":
		// Inconsistent: addresses for A, no such name for AAAA.
		if isA {
			m.Answer = []dns.RR{rrA(q.Name, a10)}
		} else {
			m.Rcode = dns.RcodeNameError
		}
	case "cname.test.":
		// Owner names in another case than the query; a decoy record for
		// a name off the chain.
		m.Answer = []dns.RR{
			rrCNAME(q.Name, "C1.Cname.Test."),
			rrA("decoy.test.", a99),
			rrCNAME("c1.cname.test.", "c2.cname.test."),
		}
		if isA {
			m.Answer = append(m.Answer, rrA("C2.CNAME.TEST.", a10), rrA("c2.cname.test.", a11))
		}
		if isAAAA {
			m.Answer = append(m.Answer, rrAAAA("c2.cname.test.", aaaa1))
		}
	case "dangling.test.":
		// A chain that leaves the answer section.
		m.Answer = []dns.RR{rrCNAME(q.Name, "elsewhere.test.")}
	case "loop.test.":
		m.Answer = []dns.RR{
			rrCNAME(q.Name, "loop2.test."),
			rrCNAME("loop2.test.", "LOOP.test."),
			rrA("loop2.test.", a10),
		}
	case "long.test.":
		owner := q.Name
		for i := range maxCNAMEChain + 2 {
			next := "l" + strconv.Itoa(i) + ".long.test."
			m.Answer = append(m.Answer, rrCNAME(owner, next))
			owner = next
		}
		if isA {
			m.Answer = append(m.Answer, rrA(owner, a10))
		}
	case "truncated.test.":
		// UDP gets an empty, truncated reply; only TCP gets the answer.
		if w.RemoteAddr().Network() == "udp" {
			m.Truncated = true
			break
		}
		if isA {
			m.Answer = []dns.RR{rrA(q.Name, a10)}
		}
		if isAAAA {
			m.Answer = []dns.RR{rrAAAA(q.Name, aaaa1)}
		}
	default:
		m.Rcode = dns.RcodeNameError
	}
	w.WriteMsg(m)
}

func TestDNS(t *testing.T) {
	t.Parallel()
	srv := startDNSServer(t, zoneHandler)
	server := srv.addr.String()
	closed := closedPort(t, "udp").String()
	const shortDeadline = 200 * time.Millisecond

	type dnsCase struct {
		name        string
		server      string // srv when empty
		qname       string
		expect      []netip.Addr
		transports  []string // "udp" and "tcp" when empty
		timeout     time.Duration
		wantVerdict DNSVerdict
		wantReason  Reason
		wantRcode   string
		wantAddrs   []netip.Addr
		wantMissing []netip.Addr
		wantExtra   []netip.Addr
		wantErr     string // in Err
	}
	all := []netip.Addr{a10, a11, aaaa1}
	tests := []dnsCase{
		{name: "right set", qname: "lb.test", expect: all,
			wantVerdict: DNSCorrect, wantRcode: "NOERROR", wantAddrs: all},
		{name: "right set unordered with duplicates and mapped", qname: "LB.test.", expect: []netip.Addr{aaaa1, a11, mapped, a10},
			wantVerdict: DNSCorrect, wantRcode: "NOERROR", wantAddrs: all},
		{name: "any address when nothing expected", qname: "lb.test",
			wantVerdict: DNSCorrect, wantRcode: "NOERROR", wantAddrs: all},
		{name: "missing address", qname: "lb.test", expect: []netip.Addr{a10, a11, a12, aaaa1},
			wantVerdict: DNSMissingAddress, wantReason: ReasonMissingAddress, wantRcode: "NOERROR",
			wantAddrs: all, wantMissing: []netip.Addr{a12}},
		{name: "missing AAAA", qname: "v4only.test", expect: []netip.Addr{a10, aaaa1},
			wantVerdict: DNSMissingAddress, wantReason: ReasonMissingAddress, wantRcode: "NOERROR",
			wantAddrs: []netip.Addr{a10}, wantMissing: []netip.Addr{aaaa1}},
		{name: "extra address", qname: "lb.test", expect: []netip.Addr{a10, aaaa1},
			wantVerdict: DNSExtraAddress, wantReason: ReasonExtraAddress, wantRcode: "NOERROR",
			wantAddrs: all, wantExtra: []netip.Addr{a11}},
		{name: "wrong address", qname: "lb.test", expect: []netip.Addr{a10, a12, aaaa1},
			wantVerdict: DNSWrongAddress, wantReason: ReasonWrongAddress, wantRcode: "NOERROR",
			wantAddrs: all, wantMissing: []netip.Addr{a12}, wantExtra: []netip.Addr{a11}},
		{name: "wholly wrong address", qname: "v4only.test", expect: []netip.Addr{a99},
			wantVerdict: DNSWrongAddress, wantReason: ReasonWrongAddress, wantRcode: "NOERROR",
			wantAddrs: []netip.Addr{a10}, wantMissing: []netip.Addr{a99}, wantExtra: []netip.Addr{a10}},
		{name: "empty NOERROR", qname: "empty.test", expect: []netip.Addr{a10},
			wantVerdict: DNSMissingAddress, wantReason: ReasonMissingAddress, wantRcode: "NOERROR",
			wantMissing: []netip.Addr{a10}},
		{name: "empty NOERROR nothing expected", qname: "empty.test",
			wantVerdict: DNSMissingAddress, wantReason: ReasonMissingAddress, wantRcode: "NOERROR"},
		{name: "NXDOMAIN", qname: "nx.test", expect: []netip.Addr{a10},
			wantVerdict: DNSNXDomain, wantReason: ReasonNXDomain, wantRcode: "NXDOMAIN"},
		{name: "NXDOMAIN for AAAA only", qname: "nxaaaa.test", expect: []netip.Addr{a10},
			wantVerdict: DNSNXDomain, wantReason: ReasonNXDomain, wantRcode: "NXDOMAIN", wantErr: "dns AAAA"},
		{name: "SERVFAIL", qname: "servfail.test", expect: []netip.Addr{a10},
			wantVerdict: DNSServfail, wantReason: ReasonServfail, wantRcode: "SERVFAIL"},
		{name: "REFUSED", qname: "refused.test", expect: []netip.Addr{a10},
			wantVerdict: DNSRefused, wantReason: ReasonDNSRefused, wantRcode: "REFUSED"},
		{name: "other rcode", qname: "notimp.test", expect: []netip.Addr{a10},
			wantVerdict: DNSError, wantReason: ReasonError, wantRcode: "NOTIMP"},
		{name: "CNAME chain", qname: "cname.test", expect: all,
			wantVerdict: DNSCorrect, wantRcode: "NOERROR", wantAddrs: all},
		{name: "CNAME out of the answer", qname: "dangling.test", expect: []netip.Addr{a10},
			wantVerdict: DNSMissingAddress, wantReason: ReasonMissingAddress, wantRcode: "NOERROR",
			wantMissing: []netip.Addr{a10}},
		{name: "CNAME loop", qname: "loop.test", expect: []netip.Addr{a10},
			wantVerdict: DNSError, wantReason: ReasonError, wantRcode: "NOERROR", wantErr: "CNAME loop"},
		{name: "CNAME chain too long", qname: "long.test", expect: []netip.Addr{a10},
			wantVerdict: DNSError, wantReason: ReasonError, wantRcode: "NOERROR", wantErr: "CNAME chain longer"},
		{name: "truncated UDP reply", qname: "truncated.test", expect: []netip.Addr{a10, aaaa1}, transports: []string{"udp", ""},
			wantVerdict: DNSCorrect, wantRcode: "NOERROR", wantAddrs: []netip.Addr{a10, aaaa1}},
		{name: "server never answers", server: blackholeUDP(t).String(), qname: "lb.test", expect: all,
			transports: []string{"udp"}, timeout: shortDeadline,
			wantVerdict: DNSTimeout, wantReason: ReasonTimeout},
		{name: "server never answers over TCP", server: silentTCP(t).String(), qname: "lb.test", expect: all,
			transports: []string{"tcp"}, timeout: shortDeadline,
			wantVerdict: DNSTimeout, wantReason: ReasonTimeout},
		{name: "closed port", server: closed, qname: "lb.test", expect: all, transports: []string{"udp"},
			wantVerdict: DNSError, wantReason: ReasonError, wantErr: "connection refused"},
		{name: "empty name", qname: "", wantVerdict: DNSError, wantReason: ReasonError, wantErr: "empty"},
		{name: "bad name", qname: "a..b", wantVerdict: DNSError, wantReason: ReasonError, wantErr: "invalid DNS name"},
		{name: "server without port", server: "127.0.0.1", qname: "lb.test",
			wantVerdict: DNSError, wantReason: ReasonError, wantErr: "invalid DNS server"},
		{name: "zero expected address", qname: "lb.test", expect: []netip.Addr{{}},
			wantVerdict: DNSError, wantReason: ReasonError, wantErr: "invalid expected address"},
		{name: "bad transport", qname: "lb.test", transports: []string{"quic"},
			wantVerdict: DNSError, wantReason: ReasonError, wantErr: "invalid DNS transport"},
	}
	for _, tt := range tests {
		transports := tt.transports
		if transports == nil {
			transports = []string{"udp", "tcp"}
		}
		for _, transport := range transports {
			t.Run(tt.name+"/"+cmp.Or(transport, "default"), func(t *testing.T) {
				t.Parallel()
				timeout := cmp.Or(tt.timeout, 2*time.Second)
				ctx, cancel := context.WithTimeout(t.Context(), timeout)
				defer cancel()
				start := time.Now()
				res := DNS(ctx, cmp.Or(tt.server, server), tt.qname, tt.expect, DNSOptions{Transport: transport}, testLogger(t))
				checkNotLate(t, start, timeout)

				checkResult(t, res.Result, tt.wantVerdict == DNSCorrect, tt.wantReason)
				if res.Verdict != tt.wantVerdict {
					t.Errorf("Verdict = %q, want %q", res.Verdict, tt.wantVerdict)
				}
				if res.Rcode != tt.wantRcode {
					t.Errorf("Rcode = %q, want %q", res.Rcode, tt.wantRcode)
				}
				checkAddrs(t, "Addresses", res.Addresses, tt.wantAddrs)
				checkAddrs(t, "Missing", res.Missing, tt.wantMissing)
				checkAddrs(t, "Extra", res.Extra, tt.wantExtra)
				if tt.wantErr != "" && (res.Err == nil || !strings.Contains(res.Err.Error(), tt.wantErr)) {
					t.Errorf("Err = %v, want it to contain %q", res.Err, tt.wantErr)
				}
				if tt.wantReason != ReasonError || tt.wantRcode != "" {
					if len(res.Phases) != 1 || res.Phases[0].Name != "exchange" {
						t.Errorf("Phases = %v, want one phase \"exchange\"", res.Phases)
					}
				}
			})
		}
	}
}

// TestDNSTruncationFallsBackToTCP checks that the truncated UDP reply was
// asked again over TCP, once per query type.
func TestDNSTruncationFallsBackToTCP(t *testing.T) {
	t.Parallel()
	srv := startDNSServer(t, zoneHandler)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	res := DNS(ctx, srv.addr.String(), "truncated.test", []netip.Addr{a10, aaaa1}, DNSOptions{}, testLogger(t))
	checkResult(t, res.Result, true, ReasonNone)
	if n := srv.tcpQueries.Load(); n != 2 {
		t.Errorf("the server got %d TCP queries, want 2 (A and AAAA after truncation)", n)
	}
}

// TestDNSExpiredContext checks that no query is sent without time left.
func TestDNSExpiredContext(t *testing.T) {
	t.Parallel()
	srv := startDNSServer(t, zoneHandler)
	ctx, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancel()
	res := DNS(ctx, srv.addr.String(), "lb.test", nil, DNSOptions{Transport: "tcp"}, nil)
	checkResult(t, res.Result, false, ReasonTimeout)
	if res.Verdict != DNSTimeout {
		t.Errorf("Verdict = %q, want %q", res.Verdict, DNSTimeout)
	}
	if n := srv.tcpQueries.Load(); n != 0 {
		t.Errorf("the server got %d queries, want 0", n)
	}
}

func TestCompareSets(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name              string
		got, want         []netip.Addr
		wantVerdict       DNSVerdict
		wantMiss, wantExt []netip.Addr
	}{
		{"both empty", nil, nil, DNSMissingAddress, nil, nil},
		{"nothing expected", []netip.Addr{a10}, nil, DNSCorrect, nil, nil},
		{"equal", []netip.Addr{a10, a11}, []netip.Addr{a10, a11}, DNSCorrect, nil, nil},
		{"nothing answered", nil, []netip.Addr{a10}, DNSMissingAddress, []netip.Addr{a10}, nil},
		{"subset", []netip.Addr{a10}, []netip.Addr{a10, a11}, DNSMissingAddress, []netip.Addr{a11}, nil},
		{"superset", []netip.Addr{a10, a11}, []netip.Addr{a10}, DNSExtraAddress, nil, []netip.Addr{a11}},
		{"overlap", []netip.Addr{a10, a11}, []netip.Addr{a10, a12}, DNSWrongAddress, []netip.Addr{a12}, []netip.Addr{a11}},
		{"disjoint", []netip.Addr{a10}, []netip.Addr{a11}, DNSWrongAddress, []netip.Addr{a11}, []netip.Addr{a10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			verdict, missing, extra := compareSets(tt.got, tt.want)
			if verdict != tt.wantVerdict {
				t.Errorf("verdict = %q, want %q", verdict, tt.wantVerdict)
			}
			checkAddrs(t, "missing", missing, tt.wantMiss)
			checkAddrs(t, "extra", extra, tt.wantExt)
		})
	}
}

func checkAddrs(t *testing.T, what string, got, want []netip.Addr) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}
