package probe

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"
)

// TCP connects to addr and closes the connection at once. The one phase is
// "connect". A failure's Reason comes from classifyNetError: refused,
// timeout (ctx's deadline passed), unreachable, permission_denied or error.
func TCP(ctx context.Context, addr netip.AddrPort, logger *slog.Logger) Result {
	start := time.Now()
	logger = orDiscard(logger).With("prober", "tcp", "target", addr.String())
	if err := checkAddrPort(addr); err != nil {
		logger.Debug("invalid target", "err", err)
		return fail(start, ReasonError, err)
	}

	logger.Debug("connecting")
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr.String())
	connect := Phase{Name: "connect", Duration: time.Since(start)}
	if err != nil {
		reason := classifyNetError(err)
		logger.Debug("connect failed", "reason", reason, "err", err, "after", connect.Duration)
		res := fail(start, reason, fmt.Errorf("tcp connect: %w", err))
		res.Phases = []Phase{connect}
		return res
	}
	if err := conn.Close(); err != nil {
		// The connection was established, which is all the probe asks.
		logger.Debug("close failed", "err", err)
	}
	logger.Debug("connected", "after", connect.Duration)
	return Result{Success: true, Duration: time.Since(start), Phases: []Phase{connect}}
}
