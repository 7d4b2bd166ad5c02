package probe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// DNSVerdict says how a DNS answer compares with the expected addresses.
type DNSVerdict string

// The DNS verdicts. Only DNSCorrect is a success.
const (
	DNSCorrect        DNSVerdict = "correct"         // the answered set equals the expected set
	DNSWrongAddress   DNSVerdict = "wrong_address"   // the sets differ both ways
	DNSMissingAddress DNSVerdict = "missing_address" // the answered set is a strict subset (or empty)
	DNSExtraAddress   DNSVerdict = "extra_address"   // the answered set is a strict superset
	DNSNXDomain       DNSVerdict = "nxdomain"        // rcode NXDOMAIN
	DNSServfail       DNSVerdict = "servfail"        // rcode SERVFAIL
	DNSRefused        DNSVerdict = "refused"         // rcode REFUSED
	DNSTimeout        DNSVerdict = "timeout"         // no reply before ctx's deadline
	DNSError          DNSVerdict = "error"           // any other rcode, a transport error, a broken answer
	// DNSNotStarted: the lookup never ran (no probe slot before the round's
	// deadline; see ReasonNotStarted).
	DNSNotStarted DNSVerdict = "not_started"
)

// reason maps a verdict to the Result's Reason.
func (v DNSVerdict) reason() Reason {
	switch v {
	case DNSCorrect:
		return ReasonNone
	case DNSWrongAddress:
		return ReasonWrongAddress
	case DNSMissingAddress:
		return ReasonMissingAddress
	case DNSExtraAddress:
		return ReasonExtraAddress
	case DNSNXDomain:
		return ReasonNXDomain
	case DNSServfail:
		return ReasonServfail
	case DNSRefused:
		return ReasonDNSRefused
	case DNSTimeout:
		return ReasonTimeout
	}
	return ReasonError
}

// maxCNAMEChain bounds the CNAME chain followed inside one answer section.
const maxCNAMEChain = 16

// ednsUDPSize is the EDNS0 buffer size advertised over UDP (DNS flag day 2020).
const ednsUDPSize = 1232

// DNSOptions configures a DNS probe.
type DNSOptions struct {
	// Transport is "udp" (the default when empty; a truncated reply is asked
	// again over TCP) or "tcp".
	Transport string
}

// DNSResult is the result of a DNS probe.
type DNSResult struct {
	Result
	Rcode     string       // "NOERROR", "NXDOMAIN", ... of the deciding reply; "" when no reply arrived
	Addresses []netip.Addr // union of the A and AAAA answers, sorted, deduplicated; empty unless both were NOERROR
	Verdict   DNSVerdict
	Missing   []netip.Addr // expected but not answered
	Extra     []netip.Addr // answered but not expected
}

// DNS asks server (host:port) for the A and AAAA records of name, the two
// queries concurrently, follows CNAME chains inside each answer section
// (loop-safe, at most 16 links) and compares the addresses found with
// expect.
//
// The A query is judged first and the AAAA query second; the first one that
// did not end in NOERROR decides the verdict (NXDOMAIN, SERVFAIL, REFUSED,
// timeout, error for other rcodes, transport errors, CNAME loops or overlong
// chains), and Rcode is its rcode. So an NXDOMAIN for either type is
// nxdomain even when the other type has addresses: a server that denies the
// name for one type makes resolvers cache the name's absence. Only when both
// are NOERROR are the address sets compared: equal is correct, a strict
// subset (including none) missing_address, a strict superset
// extra_address, anything else wrong_address. With an empty expect any
// address is correct and none is missing_address.
//
// Success is Verdict == correct. The one phase is "exchange". ctx's deadline
// bounds both queries, including a TCP retry after a truncated UDP reply.
func DNS(ctx context.Context, server string, name string, expect []netip.Addr, opts DNSOptions, logger *slog.Logger) DNSResult {
	start := time.Now()
	logger = proberLogger(ctx, logger, func() []any { return []any{"prober", "dns", "server", server, "name", name} })

	qname, want, err := checkDNSInput(server, name, expect, opts)
	if err != nil {
		logger.Debug("invalid probe", "err", err)
		return DNSResult{Result: fail(start, ReasonError, err), Verdict: DNSError}
	}

	qtypes := [2]uint16{dns.TypeA, dns.TypeAAAA}
	var answers [2]dnsAnswer
	var wg sync.WaitGroup
	for i, qtype := range qtypes {
		wg.Go(func() { answers[i] = query(ctx, server, qname, qtype, opts.Transport, logger) })
	}
	wg.Wait()
	exchange := Phase{Name: "exchange", Duration: time.Since(start)}

	res := judge(answers, want)
	res.Phases = []Phase{exchange}
	res.Duration = time.Since(start)
	logger.Debug("dns probe done", "verdict", res.Verdict, "rcode", res.Rcode,
		"addresses", res.Addresses, "missing", res.Missing, "extra", res.Extra, "err", res.Err)
	return res
}

// checkDNSInput validates the probe's input and returns the query name and
// the expected set, normalised.
func checkDNSInput(server, name string, expect []netip.Addr, opts DNSOptions) (string, []netip.Addr, error) {
	switch opts.Transport {
	case "", "udp", "tcp":
	default:
		return "", nil, fmt.Errorf("invalid DNS transport %q: want \"udp\" or \"tcp\"", opts.Transport)
	}
	host, port, err := net.SplitHostPort(server)
	if err != nil {
		return "", nil, fmt.Errorf("invalid DNS server %q: %w", server, err)
	}
	if host == "" || port == "" {
		return "", nil, fmt.Errorf("invalid DNS server %q: want host:port", server)
	}
	if name == "" {
		return "", nil, errors.New("invalid DNS name: empty")
	}
	if _, ok := dns.IsDomainName(name); !ok {
		return "", nil, fmt.Errorf("invalid DNS name %q", name)
	}
	want := make([]netip.Addr, 0, len(expect))
	for _, a := range expect {
		if !a.IsValid() {
			return "", nil, errors.New("invalid expected address: zero netip.Addr")
		}
		want = append(want, a.Unmap())
	}
	return dns.Fqdn(name), SortAddrs(want), nil
}

// dnsAnswer is the outcome of one query.
type dnsAnswer struct {
	qtype uint16
	reply *dns.Msg // nil when no reply arrived
	err   error    // transport error; nil when reply is set
}

// query asks one question, over UDP with a TCP retry on truncation, or over
// TCP only.
func query(ctx context.Context, server, qname string, qtype uint16, transport string, logger *slog.Logger) dnsAnswer {
	logger = logger.With("qtype", dns.TypeToString[qtype])
	msg := new(dns.Msg)
	msg.SetQuestion(qname, qtype)
	if transport == "" {
		transport = "udp"
	}
	if transport == "udp" {
		msg.SetEdns0(ednsUDPSize, false)
	}
	reply, err := exchange(ctx, msg, server, transport, logger)
	if err == nil && reply.Truncated && transport == "udp" {
		logger.Debug("truncated UDP reply, asking again over TCP")
		reply, err = exchange(ctx, msg, server, "tcp", logger)
	}
	if err != nil {
		return dnsAnswer{qtype: qtype, err: err}
	}
	return dnsAnswer{qtype: qtype, reply: reply}
}

// exchange sends msg once over network. The client's own timeouts (2s by
// default) would cut a longer deadline short, so ctx's deadline is the
// client's timeout; without a deadline the library defaults stay. (The
// library watches ctx's deadline, not its cancellation, once connected.)
func exchange(ctx context.Context, msg *dns.Msg, server, network string, logger *slog.Logger) (*dns.Msg, error) {
	client := &dns.Client{Net: network}
	if deadline, ok := ctx.Deadline(); ok {
		client.Timeout = max(time.Until(deadline), time.Nanosecond)
	}
	reply, rtt, err := client.ExchangeContext(ctx, msg, server)
	if err == nil {
		// The library matches the reply's ID to the query's; the question
		// must match too (RFC 5452): a reply about another name is no
		// answer to this query, whatever records it carries.
		err = checkQuestion(msg.Question[0], reply)
	}
	if err != nil {
		logger.Debug("exchange failed", "net", network, "err", err)
		return nil, fmt.Errorf("dns %s %s over %s: %w", dns.TypeToString[msg.Question[0].Qtype], msg.Question[0].Name, network, err)
	}
	logger.Debug("reply", "net", network, "rtt", rtt, "rcode", dns.RcodeToString[reply.Rcode],
		"truncated", reply.Truncated, "answers", len(reply.Answer))
	return reply, nil
}

// errQuestionMismatch is a reply whose question is not the query's.
var errQuestionMismatch = errors.New("the reply's question does not match the query")

// checkQuestion checks that a reply asks exactly the query's one question:
// the same name (case-insensitively), type and class.
func checkQuestion(q dns.Question, reply *dns.Msg) error {
	if len(reply.Question) != 1 {
		return fmt.Errorf("%w: %d questions in the reply", errQuestionMismatch, len(reply.Question))
	}
	got := reply.Question[0]
	if !strings.EqualFold(got.Name, q.Name) || got.Qtype != q.Qtype || got.Qclass != q.Qclass {
		return fmt.Errorf("%w: asked %s %s %s, the reply is for %s %s %s", errQuestionMismatch,
			q.Name, dns.ClassToString[q.Qclass], dns.TypeToString[q.Qtype],
			truncateName(got.Name), dns.ClassToString[got.Qclass], dns.TypeToString[got.Qtype])
	}
	return nil
}

// truncateName shortens a name from a reply for a message.
func truncateName(name string) string {
	if len(name) > 64 {
		return name[:64] + "…"
	}
	return name
}

// judge turns the two answers into the result (see DNS for the rules).
func judge(answers [2]dnsAnswer, want []netip.Addr) DNSResult {
	var got []netip.Addr
	for _, a := range answers {
		qt := dns.TypeToString[a.qtype]
		if a.err != nil {
			verdict := DNSError
			if classifyNetError(a.err) == ReasonTimeout {
				verdict = DNSTimeout
			}
			return dnsFailure(verdict, "", a.err)
		}
		rcode := rcodeString(a.reply.Rcode)
		switch a.reply.Rcode {
		case dns.RcodeSuccess:
		case dns.RcodeNameError:
			return dnsFailure(DNSNXDomain, rcode, fmt.Errorf("dns %s: rcode %s", qt, rcode))
		case dns.RcodeServerFailure:
			return dnsFailure(DNSServfail, rcode, fmt.Errorf("dns %s: rcode %s", qt, rcode))
		case dns.RcodeRefused:
			return dnsFailure(DNSRefused, rcode, fmt.Errorf("dns %s: rcode %s", qt, rcode))
		default:
			return dnsFailure(DNSError, rcode, fmt.Errorf("dns %s: rcode %s", qt, rcode))
		}
		addrs, err := followAnswer(a.reply, a.qtype)
		if err != nil {
			return dnsFailure(DNSError, rcode, fmt.Errorf("dns %s: %w", qt, err))
		}
		got = append(got, addrs...)
	}

	res := DNSResult{Rcode: rcodeString(dns.RcodeSuccess), Addresses: SortAddrs(got)}
	res.Verdict, res.Missing, res.Extra = compareSets(res.Addresses, want)
	if res.Verdict == DNSCorrect {
		res.Success = true
		return res
	}
	res.Reason = res.Verdict.reason()
	res.Err = fmt.Errorf("dns: %s: answered %v, expected %v", res.Verdict, res.Addresses, want)
	return res
}

func dnsFailure(verdict DNSVerdict, rcode string, err error) DNSResult {
	return DNSResult{
		Result:  Result{Reason: verdict.reason(), Err: err},
		Rcode:   rcode,
		Verdict: verdict,
	}
}

func rcodeString(rcode int) string {
	if s, ok := dns.RcodeToString[rcode]; ok {
		return s
	}
	return fmt.Sprintf("RCODE%d", rcode)
}

// followAnswer returns the addresses of type qtype that the answer section
// gives for the question's name, following CNAME records from the name
// (case-insensitively). A CNAME loop or a chain longer than maxCNAMEChain is
// an error; a chain that leaves the answer section simply ends without
// addresses.
func followAnswer(reply *dns.Msg, qtype uint16) ([]netip.Addr, error) {
	if len(reply.Question) == 0 {
		return nil, errors.New("reply without a question")
	}
	cnames := make(map[string]string)
	addrs := make(map[string][]netip.Addr)
	for _, rr := range reply.Answer {
		owner := strings.ToLower(rr.Header().Name)
		switch rr := rr.(type) {
		case *dns.CNAME:
			cnames[owner] = strings.ToLower(rr.Target)
		case *dns.A:
			if a, ok := netip.AddrFromSlice(rr.A); ok && qtype == dns.TypeA {
				addrs[owner] = append(addrs[owner], a.Unmap())
			}
		case *dns.AAAA:
			if a, ok := netip.AddrFromSlice(rr.AAAA); ok && qtype == dns.TypeAAAA {
				addrs[owner] = append(addrs[owner], a)
			}
		}
	}

	name := strings.ToLower(reply.Question[0].Name)
	seen := map[string]bool{name: true}
	var out []netip.Addr
	for range maxCNAMEChain + 1 {
		out = append(out, addrs[name]...)
		next, ok := cnames[name]
		if !ok {
			return out, nil
		}
		if seen[next] {
			return nil, fmt.Errorf("CNAME loop at %s -> %s", name, next)
		}
		seen[next] = true
		name = next
	}
	return nil, fmt.Errorf("CNAME chain longer than %d", maxCNAMEChain)
}

// compareSets compares the answered set got with the expected set want,
// both sorted and deduplicated.
func compareSets(got, want []netip.Addr) (verdict DNSVerdict, missing, extra []netip.Addr) {
	if len(want) == 0 {
		if len(got) == 0 {
			return DNSMissingAddress, nil, nil
		}
		return DNSCorrect, nil, nil
	}
	for _, a := range want {
		if _, found := slices.BinarySearchFunc(got, a, netip.Addr.Compare); !found {
			missing = append(missing, a)
		}
	}
	for _, a := range got {
		if _, found := slices.BinarySearchFunc(want, a, netip.Addr.Compare); !found {
			extra = append(extra, a)
		}
	}
	switch {
	case len(missing) == 0 && len(extra) == 0:
		verdict = DNSCorrect
	case len(extra) == 0:
		verdict = DNSMissingAddress
	case len(missing) == 0:
		verdict = DNSExtraAddress
	default:
		verdict = DNSWrongAddress
	}
	return verdict, missing, extra
}

// SortAddrs sorts addrs and removes duplicates, in place, and returns the
// shortened slice: the canonical form of an address set.
func SortAddrs(addrs []netip.Addr) []netip.Addr {
	slices.SortFunc(addrs, netip.Addr.Compare)
	return slices.Compact(addrs)
}
