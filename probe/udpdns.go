package probe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// UDPDNS proves that a UDP port answers by sending it one DNS query (". IN
// NS") from a connected UDP socket. Any reply whose ID matches, whatever its
// rcode, is success: the port is served. An ICMP port unreachable makes the
// socket's read fail with ECONNREFUSED, which is refused; no reply before
// ctx's deadline is timeout. The query is sent once, not retried. The one
// phase is "exchange".
func UDPDNS(ctx context.Context, addr netip.AddrPort, logger *slog.Logger) Result {
	start := time.Now()
	logger = proberLogger(ctx, logger, func() []any { return []any{"prober", "udpdns", "target", addr.String()} })
	if err := checkAddrPort(addr); err != nil {
		logger.Debug("invalid target", "err", err)
		return fail(start, ReasonError, err)
	}

	msg := new(dns.Msg)
	msg.SetQuestion(".", dns.TypeNS)
	client := &dns.Client{Net: "udp"}
	if deadline, ok := ctx.Deadline(); ok {
		client.Timeout = max(time.Until(deadline), time.Nanosecond)
	}
	logger.Debug("sending query", "id", msg.Id)
	reply, rtt, err := client.ExchangeContext(ctx, msg, addr.String())
	exchange := Phase{Name: "exchange", Duration: time.Since(start)}
	switch {
	case err == nil:
	case reply != nil && reply.Id == msg.Id && !errors.Is(err, dns.ErrId):
		// The header arrived with our ID but the rest did not parse: the
		// port still answered.
		logger.Debug("reply does not parse, but its ID matches", "err", err)
	default:
		reason := classifyNetError(err)
		logger.Debug("no reply", "reason", reason, "err", err, "after", exchange.Duration)
		res := fail(start, reason, fmt.Errorf("udp dns exchange: %w", err))
		res.Phases = []Phase{exchange}
		return res
	}
	logger.Debug("reply", "rcode", rcodeString(reply.Rcode), "rtt", rtt)
	return Result{Success: true, Duration: time.Since(start), Phases: []Phase{exchange}}
}
