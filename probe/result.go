// Package probe holds one prober per protocol. A prober takes a context
// (whose deadline is the limit of the probe), a target and its options, and
// returns a plain result value. Probers know nothing of Kubernetes or of
// Prometheus: one place in package collector turns results into series.
package probe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
)

// Reason is a short failure reason from a fixed set. It is used as a label
// value, so it never carries free text: the detail lives in Result.Err.
type Reason string

// The fixed set of failure reasons. A successful probe has the empty Reason.
const (
	ReasonNone        Reason = ""
	ReasonRefused     Reason = "refused"           // connection refused / ICMP port unreachable
	ReasonTimeout     Reason = "timeout"           // no answer before the deadline
	ReasonUnreachable Reason = "unreachable"       // no route, host or network unreachable
	ReasonPermission  Reason = "permission_denied" // a socket needs a capability the process lacks
	ReasonError       Reason = "error"             // anything else; see Result.Err

	// Reasons of the L2 checks.
	ReasonWrongRoute    Reason = "wrong_route"    // the route to the IP does not use the expected interface
	ReasonHolderIsSelf  Reason = "holder_is_self" // not probed: this host holds the VIP and cannot ARP it
	ReasonNotApplicable Reason = "not_applicable" // the probe does not apply to the target (ARP of an IPv6 address)
	// ReasonNotStarted: the round's deadline came before a slot of
	// --probe.concurrency was free; the target was not probed at all (an
	// overloaded prober, not a dead target).
	ReasonNotStarted Reason = "not_started"

	// DNS verdicts that are failures (see DNSVerdict).
	ReasonNXDomain       Reason = "nxdomain"
	ReasonServfail       Reason = "servfail"
	ReasonDNSRefused     Reason = "dns_refused"
	ReasonWrongAddress   Reason = "wrong_address"
	ReasonMissingAddress Reason = "missing_address"
	ReasonExtraAddress   Reason = "extra_address"

	// TLS failures.
	ReasonHandshake       Reason = "handshake_failed"
	ReasonCertExpired     Reason = "cert_expired"
	ReasonCertNotYetValid Reason = "cert_not_yet_valid"
	ReasonCertHostname    Reason = "cert_hostname_mismatch"
	ReasonCertUntrusted   Reason = "cert_untrusted"
)

// Phase is the time one step of a probe took (e.g. "connect", "handshake").
type Phase struct {
	Name     string
	Duration time.Duration
}

// Result is what every prober returns.
type Result struct {
	Success  bool
	Duration time.Duration // whole probe, including all phases
	Phases   []Phase       // in the order they ran; may be empty
	Reason   Reason        // ReasonNone when Success
	Err      error         // the underlying error for logs and the debug view; nil when Success
}

// fail returns a failed result with the given reason and error.
func fail(start time.Time, reason Reason, err error) Result {
	return Result{Duration: time.Since(start), Reason: reason, Err: err}
}

// classifyNetError maps a network error to a Reason. A context deadline or
// cancellation, and any net.Error timeout, is ReasonTimeout.
func classifyNetError(err error) Reason {
	if err == nil {
		return ReasonNone
	}
	var netErr net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return ReasonTimeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return ReasonRefused
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH),
		errors.Is(err, syscall.EHOSTDOWN), errors.Is(err, syscall.ENETDOWN):
		return ReasonUnreachable
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EACCES):
		return ReasonPermission
	}
	return ReasonError
}

// orDiscard returns logger, or a logger that drops everything when logger is
// nil, so that probers never have to nil-check.
// proberLogger is logger (or a discarding one) with a prober's attributes,
// which attrs builds only when the logger takes debug lines: the probers log
// at debug level only, and a round runs thousands of them.
func proberLogger(ctx context.Context, logger *slog.Logger, attrs func() []any) *slog.Logger {
	logger = orDiscard(logger)
	if !logger.Enabled(ctx, slog.LevelDebug) {
		return logger
	}
	return logger.With(attrs()...)
}

func orDiscard(logger *slog.Logger) *slog.Logger {
	if logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return logger
}

// checkAddrPort rejects an address a socket cannot be dialled with.
func checkAddrPort(addr netip.AddrPort) error {
	switch {
	case !addr.Addr().IsValid():
		return errors.New("invalid target: no IP address")
	case addr.Port() == 0:
		return fmt.Errorf("invalid target %s: port 0", addr)
	}
	return nil
}
