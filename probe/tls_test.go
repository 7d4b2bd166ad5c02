package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/lbprobe/lbprobe/test/targets"
)

// newCA makes a CA with test/targets, self-signed when parent is nil, else an intermediate.
func newCA(t *testing.T, name string, parent *targets.CA) *targets.CA {
	t.Helper()
	ca, err := targets.NewCA(name, parent)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// leafSpec describes a server certificate.
type leafSpec struct {
	dnsNames  []string
	ips       []netip.Addr
	notBefore time.Duration // from now
	notAfter  time.Duration // from now
}

// serveLeaf issues a server certificate from issuer (sent along with chain)
// and serves it with test/targets's TLS server until the test ends. It
// returns the server's address and the parsed leaf.
func serveLeaf(t *testing.T, issuer *targets.CA, spec leafSpec, chain ...*targets.CA) (netip.AddrPort, *x509.Certificate) {
	t.Helper()
	now := time.Now()
	cert, err := issuer.Issue(targets.LeafOptions{
		DNSNames: spec.dnsNames, IPs: spec.ips,
		NotBefore: now.Add(spec.notBefore), NotAfter: now.Add(spec.notAfter),
	}, chain...)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := targets.TLS(t.Context(), "127.0.0.1:0", cert)
	if err != nil {
		t.Fatal(err)
	}
	return addr, cert.Leaf
}

func TestTLS(t *testing.T) {
	t.Parallel()
	const host = "lb.probe.test"
	ca := newCA(t, "test root", nil)
	other := newCA(t, "other root", nil)
	inter := newCA(t, "test intermediate", ca)
	valid := leafSpec{dnsNames: []string{host}, notBefore: -time.Hour, notAfter: 24 * time.Hour}

	type server struct {
		addr netip.AddrPort
		leaf *x509.Certificate
	}
	serve := func(issuer *targets.CA, spec leafSpec, chain ...*targets.CA) server {
		addr, leaf := serveLeaf(t, issuer, spec, chain...)
		return server{addr: addr, leaf: leaf}
	}
	good := serve(ca, valid)
	expired := serve(ca, leafSpec{dnsNames: []string{host}, notBefore: -48 * time.Hour, notAfter: -time.Hour})
	notYet := serve(ca, leafSpec{dnsNames: []string{host}, notBefore: time.Hour, notAfter: 48 * time.Hour})
	wrongName := serve(ca, leafSpec{dnsNames: []string{"other.probe.test"}, notBefore: -time.Hour, notAfter: 24 * time.Hour})
	viaIntermediate := serve(inter, valid, inter)
	byIP := serve(ca, leafSpec{ips: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, notBefore: -time.Hour, notAfter: 24 * time.Hour})
	plaintext := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(plaintext.Close)
	plainAddr := netip.MustParseAddrPort(plaintext.Listener.Addr().String())

	const shortDeadline = 200 * time.Millisecond
	tests := []struct {
		name         string
		srv          server
		serverName   string
		opts         TLSOptions
		timeout      time.Duration
		wantOK       bool
		wantReason   Reason
		wantHS       bool
		wantVerified bool
		wantVerify   Reason
		wantCovers   bool
	}{
		{name: "valid", srv: good, serverName: host, opts: TLSOptions{RootCAs: ca.Pool()},
			wantOK: true, wantHS: true, wantVerified: true, wantCovers: true},
		{name: "valid, name in another case", srv: good, serverName: "LB.Probe.Test", opts: TLSOptions{RootCAs: ca.Pool()},
			wantOK: true, wantHS: true, wantVerified: true, wantCovers: true},
		{name: "valid via intermediate", srv: viaIntermediate, serverName: host, opts: TLSOptions{RootCAs: ca.Pool()},
			wantOK: true, wantHS: true, wantVerified: true, wantCovers: true},
		{name: "valid for IP without server name", srv: byIP, opts: TLSOptions{RootCAs: ca.Pool()},
			wantOK: true, wantHS: true, wantVerified: true, wantCovers: true},
		{name: "expired", srv: expired, serverName: host, opts: TLSOptions{RootCAs: ca.Pool()},
			wantReason: ReasonCertExpired, wantHS: true, wantVerify: ReasonCertExpired, wantCovers: true},
		{name: "not yet valid", srv: notYet, serverName: host, opts: TLSOptions{RootCAs: ca.Pool()},
			wantReason: ReasonCertNotYetValid, wantHS: true, wantVerify: ReasonCertNotYetValid, wantCovers: true},
		{name: "wrong name", srv: wrongName, serverName: host, opts: TLSOptions{RootCAs: ca.Pool()},
			wantReason: ReasonCertHostname, wantHS: true, wantVerify: ReasonCertHostname},
		{name: "untrusted CA", srv: good, serverName: host, opts: TLSOptions{RootCAs: other.Pool()},
			wantReason: ReasonCertUntrusted, wantHS: true, wantVerify: ReasonCertUntrusted, wantCovers: true},
		{name: "system roots do not know the test CA", srv: good, serverName: host,
			wantReason: ReasonCertUntrusted, wantHS: true, wantVerify: ReasonCertUntrusted, wantCovers: true},
		{name: "untrusted CA, insecure skip verify", srv: good, serverName: host,
			opts:   TLSOptions{RootCAs: other.Pool(), InsecureSkipVerify: true},
			wantOK: true, wantHS: true, wantVerify: ReasonCertUntrusted, wantCovers: true},
		{name: "expired, insecure skip verify", srv: expired, serverName: host,
			opts:   TLSOptions{RootCAs: ca.Pool(), InsecureSkipVerify: true},
			wantOK: true, wantHS: true, wantVerify: ReasonCertExpired, wantCovers: true},
		{name: "plaintext server", srv: server{addr: plainAddr}, serverName: host, opts: TLSOptions{RootCAs: ca.Pool()},
			wantReason: ReasonHandshake},
		{name: "server never speaks", srv: server{addr: silentTCP(t)}, serverName: host, timeout: shortDeadline,
			wantReason: ReasonTimeout},
		{name: "closed port", srv: server{addr: closedPort(t, "tcp")}, serverName: host, wantReason: ReasonRefused},
		{name: "zero address", serverName: host, wantReason: ReasonError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			timeout := tt.timeout
			if timeout == 0 {
				timeout = 2 * time.Second
			}
			ctx, cancel := context.WithTimeout(t.Context(), timeout)
			defer cancel()
			start := time.Now()
			res := TLS(ctx, tt.srv.addr, tt.serverName, tt.opts, testLogger(t))
			checkNotLate(t, start, timeout)

			checkResult(t, res.Result, tt.wantOK, tt.wantReason)
			if res.HandshakeOK != tt.wantHS || res.Verified != tt.wantVerified || res.VerifyReason != tt.wantVerify {
				t.Errorf("HandshakeOK, Verified, VerifyReason = %v, %v, %q, want %v, %v, %q",
					res.HandshakeOK, res.Verified, res.VerifyReason, tt.wantHS, tt.wantVerified, tt.wantVerify)
			}
			if res.CoversHostname != tt.wantCovers {
				t.Errorf("CoversHostname = %v, want %v", res.CoversHostname, tt.wantCovers)
			}
			var wantNotAfter time.Time
			if tt.wantHS {
				wantNotAfter = tt.srv.leaf.NotAfter
			}
			if !res.NotAfter.Equal(wantNotAfter) {
				t.Errorf("NotAfter = %v, want %v", res.NotAfter, wantNotAfter)
			}
			wantVersion := uint16(0)
			if tt.wantHS {
				wantVersion = tls.VersionTLS13
			}
			if res.Version != wantVersion {
				t.Errorf("Version = %#x, want %#x", res.Version, wantVersion)
			}
			var wantPhases []string
			switch {
			case tt.wantReason == ReasonError:
			case tt.wantReason == ReasonRefused:
				wantPhases = []string{"connect"}
			default:
				wantPhases = []string{"connect", "handshake"}
			}
			if got := phaseNames(res.Phases); !slices.Equal(got, wantPhases) {
				t.Errorf("Phases = %v, want %v", got, wantPhases)
			}
		})
	}
}

func phaseNames(phases []Phase) []string {
	var names []string
	for _, p := range phases {
		names = append(names, p.Name)
	}
	return names
}
