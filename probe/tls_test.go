package probe

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// testCA is a certificate authority made for the test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// createCert signs template with parent's key (self-signed when parent is
// nil) and returns the parsed certificate.
func createCert(t *testing.T, template *x509.Certificate, key *ecdsa.PrivateKey, parent *testCA) *x509.Certificate {
	t.Helper()
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	template.SerialNumber = serial
	parentCert, parentKey := template, key
	if parent != nil {
		parentCert, parentKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, template, parentCert, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// newCA makes a CA, self-signed when parent is nil, else an intermediate.
func newCA(t *testing.T, name string, parent *testCA) *testCA {
	t.Helper()
	key := newKey(t)
	now := time.Now()
	cert := createCert(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}, key, parent)
	return &testCA{cert: cert, key: key}
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// leafSpec describes a server certificate.
type leafSpec struct {
	dnsNames  []string
	ips       []netip.Addr
	notBefore time.Duration // from now
	notAfter  time.Duration // from now
}

// leaf issues a server certificate from ca and returns it as served
// (leaf, then chain) together with the parsed leaf.
func (ca *testCA) leaf(t *testing.T, spec leafSpec, chain ...*testCA) (tls.Certificate, *x509.Certificate) {
	t.Helper()
	key := newKey(t)
	now := time.Now()
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "leaf"},
		DNSNames:    spec.dnsNames,
		NotBefore:   now.Add(spec.notBefore),
		NotAfter:    now.Add(spec.notAfter),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, ip := range spec.ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip.AsSlice())
	}
	cert := createCert(t, tmpl, key, ca)
	served := tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
	for _, c := range chain {
		served.Certificate = append(served.Certificate, c.cert.Raw)
	}
	return served, cert
}

// serveTLS runs a TLS server with cert on a loopback port until the test
// ends; it completes handshakes and closes the connections.
func serveTLS(t *testing.T, cert tls.Certificate) netip.AddrPort {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed at cleanup
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				// The client may hang up right after its handshake; that
				// error is no concern here.
				_ = c.(*tls.Conn).Handshake()
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).AddrPort()
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
	serve := func(issuer *testCA, spec leafSpec, chain ...*testCA) server {
		cert, leaf := issuer.leaf(t, spec, chain...)
		return server{addr: serveTLS(t, cert), leaf: leaf}
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
		{name: "valid", srv: good, serverName: host, opts: TLSOptions{RootCAs: ca.pool()},
			wantOK: true, wantHS: true, wantVerified: true, wantCovers: true},
		{name: "valid, name in another case", srv: good, serverName: "LB.Probe.Test", opts: TLSOptions{RootCAs: ca.pool()},
			wantOK: true, wantHS: true, wantVerified: true, wantCovers: true},
		{name: "valid via intermediate", srv: viaIntermediate, serverName: host, opts: TLSOptions{RootCAs: ca.pool()},
			wantOK: true, wantHS: true, wantVerified: true, wantCovers: true},
		{name: "valid for IP without server name", srv: byIP, opts: TLSOptions{RootCAs: ca.pool()},
			wantOK: true, wantHS: true, wantVerified: true, wantCovers: true},
		{name: "expired", srv: expired, serverName: host, opts: TLSOptions{RootCAs: ca.pool()},
			wantReason: ReasonCertExpired, wantHS: true, wantVerify: ReasonCertExpired, wantCovers: true},
		{name: "not yet valid", srv: notYet, serverName: host, opts: TLSOptions{RootCAs: ca.pool()},
			wantReason: ReasonCertNotYetValid, wantHS: true, wantVerify: ReasonCertNotYetValid, wantCovers: true},
		{name: "wrong name", srv: wrongName, serverName: host, opts: TLSOptions{RootCAs: ca.pool()},
			wantReason: ReasonCertHostname, wantHS: true, wantVerify: ReasonCertHostname},
		{name: "untrusted CA", srv: good, serverName: host, opts: TLSOptions{RootCAs: other.pool()},
			wantReason: ReasonCertUntrusted, wantHS: true, wantVerify: ReasonCertUntrusted, wantCovers: true},
		{name: "system roots do not know the test CA", srv: good, serverName: host,
			wantReason: ReasonCertUntrusted, wantHS: true, wantVerify: ReasonCertUntrusted, wantCovers: true},
		{name: "untrusted CA, insecure skip verify", srv: good, serverName: host,
			opts:   TLSOptions{RootCAs: other.pool(), InsecureSkipVerify: true},
			wantOK: true, wantHS: true, wantVerify: ReasonCertUntrusted, wantCovers: true},
		{name: "expired, insecure skip verify", srv: expired, serverName: host,
			opts:   TLSOptions{RootCAs: ca.pool(), InsecureSkipVerify: true},
			wantOK: true, wantHS: true, wantVerify: ReasonCertExpired, wantCovers: true},
		{name: "plaintext server", srv: server{addr: plainAddr}, serverName: host, opts: TLSOptions{RootCAs: ca.pool()},
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
