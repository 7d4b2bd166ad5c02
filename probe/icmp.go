package probe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	probing "github.com/prometheus-community/pro-bing"
)

// ICMPMode selects the kind of socket an ICMP probe sends its echo requests
// through.
type ICMPMode string

// The ICMP modes. The empty mode means ICMPModeAuto.
const (
	// ICMPModeAuto tries a raw socket and falls back to a datagram socket
	// when the raw socket is not permitted.
	ICMPModeAuto ICMPMode = "auto"
	// ICMPModePrivileged uses a raw ICMP socket (needs CAP_NET_RAW).
	ICMPModePrivileged ICMPMode = "privileged"
	// ICMPModeUnprivileged uses a datagram ICMP socket (needs the process's
	// group within sysctl net.ipv4.ping_group_range).
	ICMPModeUnprivileged ICMPMode = "unprivileged"
)

// pingGroupRangeFile holds the groups allowed to open datagram ICMP sockets;
// it governs ICMPv6 datagram sockets too.
const pingGroupRangeFile = "/proc/sys/net/ipv4/ping_group_range"

// minICMPPayload is the smallest payload pro-bing accepts: an 8-byte send
// timestamp and a 16-byte tracker UUID.
const minICMPPayload = 24

// ICMPOptions configures an ICMP probe.
type ICMPOptions struct {
	Mode        ICMPMode // ICMPModeAuto when empty
	Count       int      // echo requests to send, one second apart; 1 when 0
	PayloadSize int      // bytes of echo payload; 0 = library default (24, also the minimum)
}

// ICMPResult is the result of an ICMP probe.
type ICMPResult struct {
	Result
	// RTT is the mean round-trip time of the replies received (for the
	// default Count of 1, the one reply's). Zero without a reply.
	RTT time.Duration
	// Mode is the socket kind that was used (privileged or unprivileged);
	// empty when no socket could be opened.
	Mode ICMPMode
}

// ICMP sends echo requests to ip with pro-bing and waits for the replies
// until ctx's deadline. It succeeds when at least one reply arrived; without
// one by the deadline the Reason is timeout.
//
// In auto mode a raw socket is tried first and a datagram socket second, each
// only when the previous one could not be opened for lack of permission. When
// no allowed socket kind can be opened the Reason is permission_denied and
// Err names what is missing (CAP_NET_RAW, the ping_group_range sysctl and its
// current value).
//
// pro-bing notices the end of ctx only between reads, up to ~100ms late; the
// probe returns at the deadline regardless and leaves the library's goroutine
// to close its socket in the background.
func ICMP(ctx context.Context, ip netip.Addr, opts ICMPOptions, logger *slog.Logger) ICMPResult {
	start := time.Now()
	logger = proberLogger(ctx, logger, func() []any { return []any{"prober", "icmp", "target", ip.String()} })

	modes, err := icmpModes(opts.Mode)
	if err == nil {
		err = checkICMPOptions(ip, opts)
	}
	if err != nil {
		logger.Debug("invalid probe", "err", err)
		return ICMPResult{Result: fail(start, ReasonError, err)}
	}
	if err := ctx.Err(); err != nil {
		logger.Debug("no time left to send an echo request", "err", err)
		return ICMPResult{Result: fail(start, ReasonTimeout, fmt.Errorf("icmp: %w", err))}
	}

	var denied []error
	for _, mode := range modes {
		logger.Debug("pinging", "mode", mode, "count", max(opts.Count, 1))
		res, err := ping(ctx, ip, mode, opts, logger)
		if err != nil && isSocketPermission(err) {
			logger.Debug("socket not permitted", "mode", mode, "err", err)
			denied = append(denied, err)
			continue
		}
		res.Duration = time.Since(start)
		return res
	}
	cause := denied[0]
	for _, e := range denied[1:] {
		cause = fmt.Errorf("%w; %w", cause, e)
	}
	err = icmpPermissionError(opts.Mode, readPingGroupRange(pingGroupRangeFile), cause)
	logger.Debug("no ICMP socket permitted", "err", err)
	return ICMPResult{Result: fail(start, ReasonPermission, err)}
}

// icmpModes returns the socket kinds to try, in order.
func icmpModes(mode ICMPMode) ([]ICMPMode, error) {
	switch mode {
	case "", ICMPModeAuto:
		return []ICMPMode{ICMPModePrivileged, ICMPModeUnprivileged}, nil
	case ICMPModePrivileged, ICMPModeUnprivileged:
		return []ICMPMode{mode}, nil
	}
	return nil, fmt.Errorf("invalid ICMP mode %q: want %q, %q or %q",
		mode, ICMPModeAuto, ICMPModePrivileged, ICMPModeUnprivileged)
}

func checkICMPOptions(ip netip.Addr, opts ICMPOptions) error {
	switch {
	case !ip.IsValid():
		return errors.New("invalid target: no IP address")
	case opts.Count < 0:
		return fmt.Errorf("invalid ICMP count %d: must not be negative", opts.Count)
	case opts.PayloadSize != 0 && opts.PayloadSize < minICMPPayload:
		return fmt.Errorf("invalid ICMP payload size %d: must be 0 (default) or at least %d", opts.PayloadSize, minICMPPayload)
	}
	return nil
}

// ping runs one pinger with one socket kind. The error is what
// RunWithContext returned; it is also in the result (as Err) when it made
// the probe fail.
func ping(ctx context.Context, ip netip.Addr, mode ICMPMode, opts ICMPOptions, logger *slog.Logger) (ICMPResult, error) {
	start := time.Now()
	ip = ip.Unmap()
	pinger := probing.New(ip.String())
	pinger.SetIPAddr(&net.IPAddr{IP: ip.AsSlice(), Zone: ip.Zone()})
	pinger.SetPrivileged(mode == ICMPModePrivileged)
	pinger.Count = max(opts.Count, 1)
	if opts.PayloadSize > 0 {
		pinger.Size = opts.PayloadSize
	}
	pinger.RecordRtts = false
	pinger.RecordTTLs = false
	// The library may still log from its goroutine after we returned; the
	// adapter goes quiet then, so no log line outlives the probe.
	var returned atomic.Bool
	defer returned.Store(true)
	pinger.SetLogger(pingLogger{logger: logger, returned: &returned})

	done := make(chan error, 1)
	go func() { done <- pinger.RunWithContext(ctx) }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		// RunWithContext ends too, within one of its read polls; its
		// statistics are safe to read meanwhile.
		err = ctx.Err()
	}
	stats := pinger.Statistics()
	echo := Phase{Name: "echo", Duration: time.Since(start)}
	logger.Debug("ping finished", "mode", mode, "sent", stats.PacketsSent, "received", stats.PacketsRecv,
		"avg_rtt", stats.AvgRtt, "err", err)

	res := ICMPResult{Mode: mode, Result: Result{Phases: []Phase{echo}}}
	if stats.PacketsRecv > 0 {
		// At least one reply: success, even when ctx ended before the
		// remaining replies of a Count above 1 arrived.
		res.Success = true
		res.RTT = stats.AvgRtt
		return res, err
	}
	if err == nil {
		// The library gave up (its own timeout) without a reply.
		err = errors.New("no echo reply")
		res.Reason = ReasonTimeout
	} else {
		res.Reason = classifyNetError(err)
	}
	res.Err = fmt.Errorf("icmp %s: %w", mode, err)
	return res, err
}

// isSocketPermission reports whether err is the refusal to create a socket
// (EPERM for a raw socket without CAP_NET_RAW, EACCES for a datagram ICMP
// socket outside ping_group_range), as opposed to a refused send.
func isSocketPermission(err error) bool {
	var sysErr *os.SyscallError
	return errors.As(err, &sysErr) && sysErr.Syscall == "socket" &&
		(errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES))
}

// readPingGroupRange returns the sysctl's value as "low high", or a note
// saying why it could not be read.
func readPingGroupRange(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("unreadable: %v", err)
	}
	return strings.Join(strings.Fields(string(b)), " ")
}

// icmpPermissionError says plainly what the process lacks to open the
// socket kinds that mode allows. groupRange is the sysctl's current value.
func icmpPermissionError(mode ICMPMode, groupRange string, cause error) error {
	const raw = "raw ICMP needs CAP_NET_RAW"
	dgram := fmt.Sprintf("unprivileged ICMP needs the process's group within sysctl net.ipv4.ping_group_range (now %q)", groupRange)
	var missing string
	switch mode {
	case ICMPModePrivileged:
		missing = raw
	case ICMPModeUnprivileged:
		missing = dgram
	default:
		missing = raw + ", " + dgram
	}
	return fmt.Errorf("no permission to open an ICMP socket: %s: %w", missing, cause)
}

// pingLogger adapts slog to pro-bing's logger; everything is debug level,
// since a failing target is data, not an error.
type pingLogger struct {
	logger   *slog.Logger
	returned *atomic.Bool
}

func (l pingLogger) log(level, format string, v ...any) {
	if l.returned.Load() {
		return
	}
	l.logger.Debug(fmt.Sprintf(format, v...), "library", "pro-bing", "library_level", level)
}

func (l pingLogger) Fatalf(format string, v ...any) { l.log("fatal", format, v...) }
func (l pingLogger) Errorf(format string, v ...any) { l.log("error", format, v...) }
func (l pingLogger) Warnf(format string, v ...any)  { l.log("warn", format, v...) }
func (l pingLogger) Infof(format string, v ...any)  { l.log("info", format, v...) }
func (l pingLogger) Debugf(format string, v ...any) { l.log("debug", format, v...) }

var _ probing.Logger = pingLogger{}
