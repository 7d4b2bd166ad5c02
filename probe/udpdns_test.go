package probe

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// rcodeHandler answers every query with rcode and no records.
func rcodeHandler(rcode int) dns.HandlerFunc {
	return func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetRcode(r, rcode)
		w.WriteMsg(m)
	}
}

// wrongIDUDP returns a loopback UDP port that answers every datagram with
// a copy whose DNS ID is changed, so the reply never matches the query.
func wrongIDUDP(t testing.TB) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return // closed at cleanup
			}
			if n < 12 {
				continue
			}
			buf[0] ^= 0xff // another ID
			buf[2] |= 0x80 // QR: a response
			if _, err := pc.WriteTo(buf[:n], from); err != nil {
				return
			}
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// garbageUDP returns a loopback UDP port that answers with the query's ID
// followed by bytes that do not parse as the rest of a DNS message.
func garbageUDP(t testing.TB) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return // closed at cleanup
			}
			if n < 2 {
				continue
			}
			// Header: the ID, QR set, one question; then a truncated name.
			reply := []byte{buf[0], buf[1], 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x3f, 'x'}
			if _, err := pc.WriteTo(reply, from); err != nil {
				return
			}
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

func TestUDPDNS(t *testing.T) {
	t.Parallel()
	const shortDeadline = 200 * time.Millisecond
	noerror := startDNSServer(t, zoneHandler).addr
	refused := startDNSServer(t, rcodeHandler(dns.RcodeRefused)).addr
	nxdomain := startDNSServer(t, rcodeHandler(dns.RcodeNameError)).addr
	servfail := startDNSServer(t, rcodeHandler(dns.RcodeServerFailure)).addr

	tests := []struct {
		name       string
		addr       netip.AddrPort
		timeout    time.Duration
		expired    bool
		wantOK     bool
		wantReason Reason
	}{
		{name: "answers", addr: noerror, wantOK: true},
		{name: "answers REFUSED", addr: refused, wantOK: true},
		{name: "answers NXDOMAIN", addr: nxdomain, wantOK: true},
		{name: "answers SERVFAIL", addr: servfail, wantOK: true},
		{name: "answers with our ID but garbage", addr: garbageUDP(t), wantOK: true},
		{name: "closed port", addr: closedPort(t, "udp"), wantReason: ReasonRefused},
		{name: "never answers", addr: blackholeUDP(t), timeout: shortDeadline, wantReason: ReasonTimeout},
		{name: "answers with another ID only", addr: wrongIDUDP(t), timeout: shortDeadline, wantReason: ReasonTimeout},
		{name: "expired context", addr: noerror, expired: true, wantReason: ReasonTimeout},
		{name: "zero address", wantReason: ReasonError},
		{name: "port zero", addr: netip.AddrPortFrom(noerror.Addr(), 0), wantReason: ReasonError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			timeout := tt.timeout
			if timeout == 0 {
				timeout = 2 * time.Second
			}
			deadline := time.Now().Add(timeout)
			if tt.expired {
				deadline, timeout = time.Now().Add(-time.Second), 0
			}
			ctx, cancel := context.WithDeadline(t.Context(), deadline)
			defer cancel()
			start := time.Now()
			res := UDPDNS(ctx, tt.addr, testLogger(t))
			checkNotLate(t, start, timeout)
			checkResult(t, res, tt.wantOK, tt.wantReason)
			if tt.wantReason != ReasonError && (len(res.Phases) != 1 || res.Phases[0].Name != "exchange") {
				t.Errorf("Phases = %v, want one phase \"exchange\"", res.Phases)
			}
			if tt.timeout > 0 && time.Now().Before(deadline) {
				t.Errorf("returned %v before the deadline (Duration %v)", time.Until(deadline), res.Duration)
			}
		})
	}
}
