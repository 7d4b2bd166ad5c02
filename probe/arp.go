package probe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
)

const (
	// defaultARPWait is the window when neither ARPOptions.Wait nor a
	// deadline on the context bounds it.
	defaultARPWait = time.Second
	// arpRequests is how many who-has requests a probe sends, spread
	// over the first two thirds of the window, in case one is lost.
	arpRequests = 3
	// maxARPResend bounds the time between two requests.
	maxARPResend = time.Second
)

// ARPOptions configures an ARP probe.
type ARPOptions struct {
	// Interface is the name of the interface to send on (the collector
	// resolves patterns to names). It needs an IPv4 address, which is the
	// requests' sender address.
	Interface string
	// Wait is how long to collect replies after the first request; 0 means
	// until ctx's deadline (1s when ctx has none). ctx bounds it either way.
	Wait time.Duration
}

// ARPResult is the result of an ARP probe.
type ARPResult struct {
	Result
	// Interface is the interface the probe sent on (ARPOptions.Interface).
	Interface string
	// MACs are the distinct hardware addresses that replied for the
	// target, sorted. More than one means several hosts claim the address
	// (a split brain of L2 announcements, or a duplicate address).
	MACs []net.HardwareAddr
	// NDP is set for an IPv6 target (probed by NDP): which MACs answered
	// the multicast and the unicast Neighbor Solicitations.
	NDP *NDPModes
}

// ARP sends ARP who-has requests for ip out of opts.Interface with
// mdlayher/arp and collects every reply for ip until the window ends (see
// ARPOptions.Wait): it does not stop at the first reply, so that a second
// responder shows in MACs. It succeeds when at least one reply arrived; the
// one phase, "resolve", is the time to the first reply.
//
// Failures: an IPv6 target is not_applicable (IPv6 has no ARP); no reply in
// the window is timeout; an unknown interface or one without an IPv4 address
// is error; a process without CAP_NET_RAW gets permission_denied.
//
// The end of ctx ends the probe at once. Frames the interface itself sent
// are not counted, so a host that holds ip itself does not show.
func ARP(ctx context.Context, ip netip.Addr, opts ARPOptions, logger *slog.Logger) ARPResult {
	start := time.Now()
	logger = proberLogger(ctx, logger, func() []any { return []any{"prober", "arp", "target", ip.String(), "interface", opts.Interface} })
	res := ARPResult{Interface: opts.Interface}
	failed := func(reason Reason, err error) ARPResult {
		logger.Debug("arp probe failed", "reason", reason, "err", err)
		res.Result = fail(start, reason, err)
		return res
	}

	ip = ip.Unmap()
	switch {
	case !ip.IsValid():
		return failed(ReasonError, errors.New("invalid target: no IP address"))
	case ip.Is6():
		return failed(ReasonNotApplicable, fmt.Errorf("arp: %s is an IPv6 address; ARP is for IPv4", ip))
	case opts.Wait < 0:
		return failed(ReasonError, fmt.Errorf("arp: negative wait %v", opts.Wait))
	case opts.Interface == "":
		return failed(ReasonError, errors.New("arp: no interface given"))
	}
	if err := ctx.Err(); err != nil {
		return failed(ReasonTimeout, fmt.Errorf("arp: %w", err))
	}
	end := arpWindowEnd(ctx, start, opts.Wait)

	ifi, err := net.InterfaceByName(opts.Interface)
	if err != nil {
		return failed(ReasonError, fmt.Errorf("arp: interface %q: %w", opts.Interface, err))
	}
	if !hasIPv4(ifi) {
		return failed(ReasonError, fmt.Errorf("arp: interface %q has no IPv4 address to send from", opts.Interface))
	}
	conn, err := packet.Listen(ifi, packet.Raw, int(ethernet.EtherTypeARP), nil)
	if err != nil {
		if reason := classifyNetError(err); reason == ReasonPermission {
			return failed(reason, fmt.Errorf("arp: opening a packet socket needs CAP_NET_RAW: %w", err))
		}
		return failed(ReasonError, fmt.Errorf("arp: packet socket on %q: %w", opts.Interface, err))
	}
	client, err := arp.New(ifi, conn)
	if err != nil {
		conn.Close()
		return failed(ReasonError, fmt.Errorf("arp: client on %q: %w", opts.Interface, err))
	}
	defer client.Close()
	// Wake a blocked read when ctx ends. The loop checks ctx after each
	// deadline it sets, so it cannot overwrite this one unnoticed.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	resend := min((end.Sub(start))/arpRequests, maxARPResend)
	var (
		sent       int
		nextSend   = start
		firstReply time.Duration
		macs       []net.HardwareAddr
		readErr    error
		buf        = make([]byte, 1500)
	)
	for readErr == nil && ctx.Err() == nil {
		now := time.Now()
		if !now.Before(end) {
			break
		}
		if sent < arpRequests && !now.Before(nextSend) {
			logger.Debug("sending who-has", "request", sent+1)
			if err := client.Request(ip); err != nil {
				if sent == 0 {
					return failed(classifyNetError(err), fmt.Errorf("arp: send request on %q: %w", opts.Interface, err))
				}
				logger.Debug("resending failed", "err", err)
			}
			sent++
			nextSend = nextSend.Add(resend)
		}
		readUntil := end
		if sent < arpRequests && nextSend.Before(end) {
			readUntil = nextSend
		}
		n, timedOut, err := readBefore(ctx, conn, buf, readUntil)
		if err != nil {
			readErr = err
			break
		}
		if timedOut {
			continue // a resend is due, the window is over, or ctx ended
		}
		mac, ok := arpReplyFrom(buf[:n], ip, ifi.HardwareAddr)
		if !ok {
			continue
		}
		if len(macs) == 0 {
			firstReply = time.Since(start)
		}
		if !slices.ContainsFunc(macs, func(m net.HardwareAddr) bool { return bytes.Equal(m, mac) }) {
			logger.Debug("reply", "mac", mac.String(), "after", time.Since(start))
			macs = append(macs, mac)
		}
	}

	if len(macs) > 0 {
		slices.SortFunc(macs, func(a, b net.HardwareAddr) int { return bytes.Compare(a, b) })
		res.MACs = macs
		res.Result = Result{Success: true, Duration: time.Since(start), Phases: []Phase{{Name: "resolve", Duration: firstReply}}}
		logger.Debug("arp probe done", "macs", len(macs), "first_reply", firstReply)
		return res
	}
	switch {
	case readErr != nil:
		return failed(classifyNetError(readErr), fmt.Errorf("arp: read on %q: %w", opts.Interface, readErr))
	case ctx.Err() != nil && time.Now().Before(end):
		return failed(ReasonTimeout, fmt.Errorf("arp: no reply for %s on %q before %w", ip, opts.Interface, ctx.Err()))
	}
	return failed(ReasonTimeout, fmt.Errorf("arp: no reply for %s on %q within %v (%d requests)",
		ip, opts.Interface, end.Sub(start).Round(time.Millisecond), sent))
}

// readBefore reads one frame from conn into buf until the deadline;
// timedOut is true when the deadline passed, or ctx ended, first.
func readBefore(ctx context.Context, conn *packet.Conn, buf []byte, until time.Time) (n int, timedOut bool, err error) {
	if err := conn.SetReadDeadline(until); err != nil {
		return 0, false, err
	}
	if ctx.Err() != nil {
		return 0, true, nil
	}
	n, _, err = conn.ReadFrom(buf)
	if err != nil && isTimeout(err) {
		return 0, true, nil
	}
	return n, false, err
}

// isTimeout reports whether err is a read deadline passing.
func isTimeout(err error) bool {
	var netErr net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout()
}

// arpWindowEnd returns when an ARP probe that began at start stops
// collecting replies.
func arpWindowEnd(ctx context.Context, start time.Time, wait time.Duration) time.Time {
	deadline, hasDeadline := ctx.Deadline()
	switch {
	case wait > 0 && (!hasDeadline || start.Add(wait).Before(deadline)):
		return start.Add(wait)
	case hasDeadline:
		return deadline
	}
	return start.Add(defaultARPWait)
}

// arpReplyFrom returns the sender hardware address of frame when it is an
// ARP reply for ip that the interface (with hardware address own) did not
// send itself.
func arpReplyFrom(frame []byte, ip netip.Addr, own net.HardwareAddr) (net.HardwareAddr, bool) {
	var f ethernet.Frame
	if err := f.UnmarshalBinary(frame); err != nil || f.EtherType != ethernet.EtherTypeARP {
		return nil, false
	}
	var p arp.Packet
	if err := p.UnmarshalBinary(f.Payload); err != nil {
		return nil, false
	}
	if p.Operation != arp.OperationReply || p.SenderIP != ip || bytes.Equal(p.SenderHardwareAddr, own) {
		return nil, false
	}
	return p.SenderHardwareAddr, true
}
