package probe

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"
)

// TCP connects to addr and closes the connection at once, with a reset (no
// TIME_WAIT left behind). The one phase is
// "connect". A failure's Reason comes from classifyNetError: refused,
// timeout (ctx's deadline passed), unreachable, permission_denied or error.
func TCP(ctx context.Context, addr netip.AddrPort, logger *slog.Logger) Result {
	start := time.Now()
	logger = proberLogger(ctx, logger, func() []any { return []any{"prober", "tcp", "target", addr.String()} })
	if err := checkAddrPort(addr); err != nil {
		logger.Debug("invalid target", "err", err)
		return fail(start, ReasonError, err)
	}

	logger.Debug("connecting")
	// No TCP keep-alive: the connection is closed at once (it saves two
	// setsockopt calls per probe).
	d := net.Dialer{KeepAlive: -1}
	// Not Dialer.DialTCP: its zero local address is still bound (to port 0)
	// before the connect, and picking a port at bind costs more than the
	// whole probe when thousands are in flight.
	conn, err := d.DialContext(ctx, "tcp", addr.String())
	connect := Phase{Name: "connect", Duration: time.Since(start)}
	if err != nil {
		reason := classifyNetError(err)
		logger.Debug("connect failed", "reason", reason, "err", err, "after", connect.Duration)
		res := fail(start, reason, fmt.Errorf("tcp connect: %w", err))
		res.Phases = []Phase{connect}
		return res
	}
	// Close with a reset (SO_LINGER 0), as HAProxy's health checks do: a
	// connect-only probe has nothing to flush, and a FIN would leave the
	// socket in TIME_WAIT on this side for a minute, holding an ephemeral
	// port; at 10,000 probes a scrape that uses up the port range.
	if err := conn.(*net.TCPConn).SetLinger(0); err != nil {
		logger.Debug("SO_LINGER 0 failed; closing with a FIN", "err", err)
	}
	if err := conn.Close(); err != nil {
		// The connection was established, which is all the probe asks.
		logger.Debug("close failed", "err", err)
	}
	logger.Debug("connected", "after", connect.Duration)
	return Result{Success: true, Duration: time.Since(start), Phases: []Phase{connect}}
}
