package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"
)

// TLSOptions configures a TLS probe.
type TLSOptions struct {
	RootCAs *x509.CertPool // trust anchors for verification; nil = the system roots
	// InsecureSkipVerify makes a completed handshake a success even when
	// the certificate does not verify. The verification is still done and
	// reported (Verified, VerifyReason).
	InsecureSkipVerify bool
}

// TLSResult is the result of a TLS probe.
type TLSResult struct {
	Result
	HandshakeOK    bool      // the TLS handshake completed
	Verified       bool      // chain, validity period and hostname all verified against RootCAs
	VerifyReason   Reason    // why verification failed: ReasonNone, cert_expired, cert_not_yet_valid, cert_hostname_mismatch, cert_untrusted
	NotAfter       time.Time // the leaf certificate's notAfter; zero without a certificate
	CoversHostname bool      // the leaf certificate's SANs match serverName (leaf.VerifyHostname)
	Version        uint16    // the negotiated TLS version (tls.VersionTLS13, ...); 0 without a handshake
}

// TLS connects to addr, handshakes with SNI serverName and verifies the
// server's certificate itself, so that the leaf certificate (NotAfter,
// CoversHostname) is known even when it does not verify. An empty serverName
// verifies against the IP address and sends no SNI.
//
// Success is a completed handshake and a verified certificate, or with
// opts.InsecureSkipVerify a completed handshake alone. On failure Reason is
// classifyNetError's for the connect phase; for the handshake phase timeout
// when ctx's deadline passed and handshake_failed otherwise; after a
// handshake the VerifyReason. The phases are "connect" and "handshake".
func TLS(ctx context.Context, addr netip.AddrPort, serverName string, opts TLSOptions, logger *slog.Logger) TLSResult {
	start := time.Now()
	logger = proberLogger(ctx, logger, func() []any { return []any{"prober", "tls", "target", addr.String(), "server_name", serverName} })
	if err := checkAddrPort(addr); err != nil {
		logger.Debug("invalid target", "err", err)
		return TLSResult{Result: fail(start, ReasonError, err)}
	}
	if serverName == "" {
		serverName = addr.Addr().Unmap().WithZone("").String()
	}

	logger.Debug("connecting")
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr.String())
	connect := Phase{Name: "connect", Duration: time.Since(start)}
	if err != nil {
		reason := classifyNetError(err)
		logger.Debug("connect failed", "reason", reason, "err", err)
		res := TLSResult{Result: fail(start, reason, fmt.Errorf("tls connect: %w", err))}
		res.Phases = []Phase{connect}
		return res
	}
	// Closing the TCP connection, not the TLS one: tls.Conn.Close may wait
	// up to 5s to send close_notify, past the deadline.
	defer raw.Close()

	logger.Debug("handshaking")
	handshakeStart := time.Now()
	conn := tls.Client(raw, &tls.Config{
		ServerName: serverName,
		// Verification is done below, so that a certificate that does not
		// verify is still read and reported.
		InsecureSkipVerify: true, //nolint:gosec // verified by verifyLeaf
	})
	err = conn.HandshakeContext(ctx)
	handshake := Phase{Name: "handshake", Duration: time.Since(handshakeStart)}
	res := TLSResult{Result: Result{Phases: []Phase{connect, handshake}}}
	if err != nil {
		reason := ReasonHandshake
		if classifyNetError(err) == ReasonTimeout {
			reason = ReasonTimeout
		}
		logger.Debug("handshake failed", "reason", reason, "err", err)
		res.Reason, res.Err = reason, fmt.Errorf("tls handshake: %w", err)
		res.Duration = time.Since(start)
		return res
	}

	state := conn.ConnectionState()
	res.HandshakeOK = true
	res.Version = state.Version
	if len(state.PeerCertificates) == 0 {
		// A server must send a certificate; crypto/tls refuses otherwise.
		res.VerifyReason = ReasonCertUntrusted
		err = errors.New("tls: server sent no certificate")
	} else {
		leaf := state.PeerCertificates[0]
		res.NotAfter = leaf.NotAfter
		res.CoversHostname = leaf.VerifyHostname(serverName) == nil
		res.VerifyReason, err = verifyLeaf(state.PeerCertificates, serverName, opts.RootCAs, time.Now())
	}
	res.Verified = res.VerifyReason == ReasonNone
	res.Duration = time.Since(start)
	logger.Debug("handshake done", "version", tls.VersionName(res.Version), "verified", res.Verified,
		"verify_reason", res.VerifyReason, "not_after", res.NotAfter, "covers_hostname", res.CoversHostname, "err", err)

	switch {
	case res.Verified:
		res.Success = true
	case opts.InsecureSkipVerify:
		// A success: Reason and Err stay empty, VerifyReason tells.
		res.Success = true
	default:
		res.Reason, res.Err = res.VerifyReason, err
	}
	return res
}

// verifyLeaf verifies the chain the server sent (leaf first) for serverName
// at now, and maps a failure to a Reason. crypto/x509 checks the leaf's
// validity period first, then the name, then the chain, so a certificate
// that fails several ways gets the first of these reasons.
func verifyLeaf(certs []*x509.Certificate, serverName string, roots *x509.CertPool, now time.Time) (Reason, error) {
	intermediates := x509.NewCertPool()
	for _, c := range certs[1:] {
		intermediates.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{
		DNSName:       serverName,
		Roots:         roots,
		Intermediates: intermediates,
		CurrentTime:   now,
	})
	if err == nil {
		return ReasonNone, nil
	}
	err = fmt.Errorf("tls verify: %w", err)
	var invalid x509.CertificateInvalidError
	var hostname x509.HostnameError
	switch {
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		if invalid.Cert != nil && now.Before(invalid.Cert.NotBefore) {
			return ReasonCertNotYetValid, err
		}
		return ReasonCertExpired, err
	case errors.As(err, &hostname):
		return ReasonCertHostname, err
	}
	// Unknown authority, and every other reason the chain does not hold.
	return ReasonCertUntrusted, err
}
