package probe

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
)

// etherTypeIPv6 is the EtherType of IPv6 frames.
const etherTypeIPv6 ethernet.EtherType = 0x86dd

// NDPModes says which MACs answered a Neighbor Solicitation sent to the
// target's solicited-node multicast address, and which answered one sent
// unicast to them. An announcer may answer one and drop the other (Cilium
// did: cilium#41678, cilium#44311): clients resolve by multicast, and
// neighbor unreachability detection confirms by unicast.
type NDPModes struct {
	Multicast []net.HardwareAddr
	// UnicastAsked are the MACs a unicast solicitation went to (those that
	// answered the multicast one and NDPOptions.Unicast); Unicast those of
	// them that answered.
	UnicastAsked []net.HardwareAddr
	Unicast      []net.HardwareAddr
}

// NDPOptions configures an NDP probe.
type NDPOptions struct {
	// Interface is the interface to send on; it needs an IPv6 address (its
	// link-local one is the solicitations' source).
	Interface string
	// Wait is the window, as ARPOptions.Wait: its first half for the
	// multicast solicitations, its second for the unicast ones.
	Wait time.Duration
	// Unicast are MACs to send a unicast solicitation to besides those that
	// answer the multicast one: the announcer's, when known.
	Unicast []net.HardwareAddr
}

// NDP is ARP for an IPv6 target: Neighbor Solicitations for ip out of
// opts.Interface over a packet socket, first to ip's solicited-node
// multicast address, then unicast to every MAC that answered and to
// opts.Unicast, collecting every Neighbor Advertisement for ip. The result
// is an ARPResult (MACs: every MAC that answered either way, sorted) with
// NDP set. It succeeds when a MAC answered; failures are those of ARP, an
// IPv4 target being not_applicable. A probe of an IP that another probe of
// this process is soliciting on the same interface joins that run (its
// opts.Unicast asked too, if still in time) and returns its result; it is
// not_started when its ctx ends first.
func NDP(ctx context.Context, ip netip.Addr, opts NDPOptions, logger *slog.Logger) ARPResult {
	start := time.Now()
	logger = proberLogger(ctx, logger, func() []any { return []any{"prober", "ndp", "target", ip.String(), "interface", opts.Interface} })
	failed := func(reason Reason, err error) ARPResult {
		logger.Debug("ndp probe failed", "reason", reason, "err", err)
		return ARPResult{Interface: opts.Interface, Result: fail(start, reason, err)}
	}
	switch {
	case !ip.IsValid():
		return failed(ReasonError, errors.New("invalid target: no IP address"))
	case ip.Is4() || ip.Is4In6():
		return failed(ReasonNotApplicable, fmt.Errorf("ndp: %s is an IPv4 address; NDP is for IPv6", ip))
	case opts.Wait < 0:
		return failed(ReasonError, fmt.Errorf("ndp: negative wait %v", opts.Wait))
	case opts.Interface == "":
		return failed(ReasonError, errors.New("ndp: no interface given"))
	}
	if err := ctx.Err(); err != nil {
		return failed(ReasonTimeout, fmt.Errorf("ndp: %w", err))
	}
	k := ndpKey{opts.Interface, ip}
	for {
		end := arpWindowEnd(ctx, start, opts.Wait)
		f, leader := joinNDP(k, opts.Unicast, start, end)
		if leader {
			return leadNDP(ctx, k, f, ip, opts, start, end, logger)
		}
		res, again := awaitNDP(ctx, f, start, end)
		if !again {
			if res.Reason == ReasonNotStarted {
				logger.Debug("ndp probe not started", "err", res.Err)
			}
			res.Interface = opts.Interface
			return res
		}
		start = time.Now() // the run it joined was cut short: its own
	}
}

// ndpJoinGrace is how long past its own window a member waits for the run
// it joined: the run's result lands just after the run's window ends, and
// with the engine's windows (the probe timeout) the member's ends about
// then too.
const ndpJoinGrace = 100 * time.Millisecond

// leadNDP runs the probe as the leader of f and hands the result to the
// members that joined.
func leadNDP(ctx context.Context, k ndpKey, f *ndpFlight, ip netip.Addr, opts NDPOptions, start, end time.Time, logger *slog.Logger) ARPResult {
	landed := false
	defer func() {
		if !landed { // a panic: let the members go, with nothing to share
			landNDP(k, f, ARPResult{}, true)
		}
	}()
	res := ndpRun(ctx, ip, opts, f, start, end, logger)
	landNDP(k, f, res, errors.Is(ctx.Err(), context.Canceled))
	landed = true
	return res
}

// awaitNDP waits for the result of the run f that a probe with the window
// start..end joined. again: the run was cut short (cancelled, or its window
// was under half as long as this one's: capped by an earlier deadline), so
// the probe should run its own.
func awaitNDP(ctx context.Context, f *ndpFlight, start, end time.Time) (res ARPResult, again bool) {
	notStarted := func(err error) ARPResult {
		// Not evidence about the target: the run in flight had it.
		return ARPResult{Result: fail(start, ReasonNotStarted, err)}
	}
	short := f.end.Sub(f.start) < end.Sub(start)/2
	giveUp := end
	if f.end.Before(giveUp) {
		giveUp = f.end
	}
	timer := time.NewTimer(time.Until(giveUp.Add(ndpJoinGrace)))
	defer timer.Stop()
	ctxDone := ctx.Done()
	for {
		select {
		case <-f.done:
			switch {
			case !f.cut && !short:
				return f.res.clone(), false
			case ctx.Err() != nil:
				return notStarted(fmt.Errorf("ndp: the run this probe joined was cut short, and so is this probe: %w", ctx.Err())), false
			}
			return ARPResult{}, true
		case <-timer.C:
			return notStarted(fmt.Errorf("ndp: the run in flight for the same IP did not end within this probe's window (%v)", end.Sub(start).Round(time.Millisecond))), false
		case <-ctxDone:
			if errors.Is(ctx.Err(), context.Canceled) {
				return notStarted(fmt.Errorf("ndp: waiting for the run in flight for the same IP: %w", ctx.Err())), false
			}
			ctxDone = nil // the deadline: the run's result lands within the grace
		}
	}
}

// ndpRun is the solicitations and the reading of an NDP probe, whose
// in-flight entry is f.
func ndpRun(ctx context.Context, ip netip.Addr, opts NDPOptions, f *ndpFlight, start, end time.Time, logger *slog.Logger) ARPResult {
	modes := &NDPModes{}
	// NDP is set once a solicitation can go out: an early failure has no
	// modes to report.
	res := ARPResult{Interface: opts.Interface}
	failed := func(reason Reason, err error) ARPResult {
		logger.Debug("ndp probe failed", "reason", reason, "err", err)
		res.Result = fail(start, reason, err)
		return res
	}
	half := start.Add(end.Sub(start) / 2)

	ifi, err := net.InterfaceByName(opts.Interface)
	if err != nil {
		return failed(ReasonError, fmt.Errorf("ndp: interface %q: %w", opts.Interface, err))
	}
	src, ok := ipv6Source(ifi)
	if !ok {
		return failed(ReasonError, fmt.Errorf("ndp: interface %q has no IPv6 address to send from", opts.Interface))
	}
	group, err := ndp.SolicitedNodeMulticast(ip)
	if err != nil {
		return failed(ReasonError, fmt.Errorf("ndp: %w", err))
	}
	conn, err := packet.Listen(ifi, packet.Raw, int(etherTypeIPv6), &packet.Config{Filter: advertisementFilter})
	if err != nil {
		if reason := classifyNetError(err); reason == ReasonPermission {
			return failed(reason, fmt.Errorf("ndp: opening a packet socket needs CAP_NET_RAW: %w", err))
		}
		return failed(ReasonError, fmt.Errorf("ndp: packet socket on %q: %w", opts.Interface, err))
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	res.NDP = modes

	send := func(dstIP netip.Addr, dstMAC net.HardwareAddr) error {
		frame, err := solicitation(ifi.HardwareAddr, dstMAC, src, dstIP, ip)
		if err != nil {
			return err
		}
		_, err = conn.WriteTo(frame, &packet.Addr{HardwareAddr: dstMAC})
		return err
	}
	add := func(list []net.HardwareAddr, mac net.HardwareAddr) []net.HardwareAddr {
		if slices.ContainsFunc(list, func(m net.HardwareAddr) bool { return bytes.Equal(m, mac) }) {
			return list
		}
		return append(list, mac)
	}
	var (
		firstReply time.Duration
		all        []net.HardwareAddr
		readErr    error
		buf        = make([]byte, 1500)
		sent       int
		nextSend   = start
		unicast    bool // the second half began: the unicast solicitations went out
		resend     = min(half.Sub(start)/arpRequests, maxARPResend)
	)
	for readErr == nil && ctx.Err() == nil {
		now := time.Now()
		if !now.Before(end) {
			break
		}
		switch {
		case !unicast && !now.Before(half):
			unicast = true
			for _, m := range append(slices.Clone(modes.Multicast), f.unicastTargets()...) {
				if slices.ContainsFunc(modes.UnicastAsked, func(a net.HardwareAddr) bool { return bytes.Equal(a, m) }) {
					continue
				}
				logger.Debug("sending a unicast solicitation", "mac", m.String())
				if err := send(ip, m); err != nil {
					logger.Debug("unicast solicitation failed", "err", err)
					continue
				}
				modes.UnicastAsked = append(modes.UnicastAsked, m)
			}
		case !unicast && sent < arpRequests && !now.Before(nextSend):
			logger.Debug("sending a multicast solicitation", "request", sent+1, "group", group.String())
			if err := send(group, multicastMAC(group)); err != nil && sent == 0 {
				return failed(classifyNetError(err), fmt.Errorf("ndp: send a solicitation on %q: %w", opts.Interface, err))
			}
			sent++
			nextSend = nextSend.Add(resend)
		}
		readUntil := end
		if !unicast {
			readUntil = half
			if sent < arpRequests && nextSend.Before(half) {
				readUntil = nextSend
			}
		}
		n, timedOut, err := readBefore(ctx, conn, buf, readUntil)
		if err != nil {
			readErr = err
			break
		}
		if timedOut {
			continue // a resend is due, the window is over, or ctx ended
		}
		mac, ok := advertisementFrom(buf[:n], ip, ifi.HardwareAddr)
		if !ok {
			continue
		}
		if len(all) == 0 {
			firstReply = time.Since(start)
		}
		all = add(all, mac)
		if unicast && slices.ContainsFunc(modes.UnicastAsked, func(a net.HardwareAddr) bool { return bytes.Equal(a, mac) }) {
			modes.Unicast = add(modes.Unicast, mac)
		} else {
			// Before the unicast solicitations, or from a MAC not asked
			// unicast: a (late) answer to the multicast ones.
			modes.Multicast = add(modes.Multicast, mac)
		}
		logger.Debug("advertisement", "mac", mac.String(), "unicast", unicast, "after", time.Since(start))
	}
	for _, l := range []*[]net.HardwareAddr{&all, &modes.Multicast, &modes.Unicast, &modes.UnicastAsked} {
		slices.SortFunc(*l, func(a, b net.HardwareAddr) int { return bytes.Compare(a, b) })
	}
	if len(all) > 0 {
		res.MACs = all
		res.Result = Result{Success: true, Duration: time.Since(start), Phases: []Phase{{Name: "resolve", Duration: firstReply}}}
		return res
	}
	if readErr != nil {
		return failed(classifyNetError(readErr), fmt.Errorf("ndp: read on %q: %w", opts.Interface, readErr))
	}
	return failed(ReasonTimeout, fmt.Errorf("ndp: no advertisement for %s on %q within %v (%d multicast solicitations)",
		ip, opts.Interface, end.Sub(start).Round(time.Millisecond), sent))
}

// ndpKey is one IP on one interface: the probes of it share one run.
type ndpKey struct {
	iface string
	ip    netip.Addr
}

// ndpFlight is an NDP probe in flight, which the probes of the same IP
// that start meanwhile join instead of soliciting themselves.
type ndpFlight struct {
	start, end time.Time     // the run's window
	done       chan struct{} // closed when res and cut are set
	res        ARPResult
	cut        bool // the run's context was cancelled: res says little about the target

	mu      sync.Mutex
	unicast []net.HardwareAddr // the members' NDPOptions.Unicast
	asked   bool               // the unicast solicitations went out
}

// ndpFlights are this process's NDP probes in flight. A Neighbor
// Advertisement does not say which solicitation it answers: with two runs
// for one IP at once (Services sharing the IP, /probe during a round), one's
// multicast answers would land in the other's unicast phase and count as
// unicast answers, hiding an announcer that drops unicast solicitations (or
// the other way round). So a probe of an IP in flight joins that run and
// gets its result: one run, and no probe waits for another's window first.
var ndpFlights = struct {
	sync.Mutex
	m map[ndpKey]*ndpFlight
}{m: map[ndpKey]*ndpFlight{}}

// joinNDP returns the run in flight for k, adding unicast to the MACs it
// solicits unicast if it has not done so yet, or starts one (leader) whose
// window is start..end.
func joinNDP(k ndpKey, unicast []net.HardwareAddr, start, end time.Time) (f *ndpFlight, leader bool) {
	ndpFlights.Lock()
	defer ndpFlights.Unlock()
	if f := ndpFlights.m[k]; f != nil {
		f.mu.Lock()
		if !f.asked {
			f.unicast = append(f.unicast, unicast...)
		}
		f.mu.Unlock()
		return f, false
	}
	f = &ndpFlight{start: start, end: end, done: make(chan struct{}), unicast: slices.Clone(unicast)}
	ndpFlights.m[k] = f
	return f, true
}

// unicastTargets are the MACs the members asked to solicit unicast; from
// now on a joiner's are not asked.
func (f *ndpFlight) unicastTargets() []net.HardwareAddr {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = true
	return slices.Clone(f.unicast)
}

// landNDP ends the run of k: the members that joined get res (unless the
// run was cut short), and the next probe of k starts its own run.
func landNDP(k ndpKey, f *ndpFlight, res ARPResult, cut bool) {
	ndpFlights.Lock()
	delete(ndpFlights.m, k)
	ndpFlights.Unlock()
	f.res, f.cut = res.clone(), cut
	close(f.done)
}

// clone copies r's slices, so that the members of a run do not share them.
func (r ARPResult) clone() ARPResult {
	r.Phases = slices.Clone(r.Phases)
	r.MACs = slices.Clone(r.MACs)
	if r.NDP != nil {
		m := *r.NDP
		m.Multicast, m.UnicastAsked, m.Unicast = slices.Clone(m.Multicast), slices.Clone(m.UnicastAsked), slices.Clone(m.Unicast)
		r.NDP = &m
	}
	return r
}

// advertisementFilter keeps only ICMPv6 Neighbor Advertisements (IPv6 next
// header 58 at byte 20 of the frame, ICMPv6 type 136 at byte 54), so that a
// probe's socket does not copy the interface's IPv6 traffic.
var advertisementFilter = mustAssemble([]bpf.Instruction{
	bpf.LoadAbsolute{Off: 20, Size: 1},
	bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 58, SkipTrue: 3},
	bpf.LoadAbsolute{Off: 54, Size: 1},
	bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 136, SkipTrue: 1},
	bpf.RetConstant{Val: 1 << 16},
	bpf.RetConstant{Val: 0},
})

func mustAssemble(prog []bpf.Instruction) []bpf.RawInstruction {
	raw, err := bpf.Assemble(prog)
	if err != nil {
		panic(fmt.Sprintf("probe: BPF program: %v", err))
	}
	return raw
}

// ipv6Source is the interface's link-local IPv6 address, else another.
func ipv6Source(ifi *net.Interface) (netip.Addr, bool) {
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}, false
	}
	var other netip.Addr
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok || n.IP.To4() != nil {
			continue
		}
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		if ip.IsLinkLocalUnicast() {
			return ip.WithZone(ifi.Name), true
		}
		if !other.IsValid() {
			other = ip
		}
	}
	return other, other.IsValid()
}

// multicastMAC is the Ethernet address of an IPv6 multicast group
// (33:33 and its last 32 bits).
func multicastMAC(group netip.Addr) net.HardwareAddr {
	b := group.As16()
	return net.HardwareAddr{0x33, 0x33, b[12], b[13], b[14], b[15]}
}

// solicitation is an Ethernet frame holding a Neighbor Solicitation for
// target from src (with mac as source link-layer address) to dst.
func solicitation(mac, dstMAC net.HardwareAddr, src, dst, target netip.Addr) ([]byte, error) {
	ns := &ndp.NeighborSolicitation{TargetAddress: target, Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: mac}}}
	return icmpv6Frame(ns, mac, dstMAC, src, dst)
}

// icmpv6Frame wraps an NDP message in IPv6 (hop limit 255, as NDP demands)
// and Ethernet.
func icmpv6Frame(m ndp.Message, srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr) ([]byte, error) {
	body, err := ndp.MarshalMessageChecksum(m, src.WithZone(""), dst.WithZone(""))
	if err != nil {
		return nil, err
	}
	ip6 := make([]byte, 40, 40+len(body))
	ip6[0] = 0x60
	binary.BigEndian.PutUint16(ip6[4:6], uint16(len(body)))
	ip6[6] = 58 // ICMPv6
	ip6[7] = 255
	s, d := src.As16(), dst.As16()
	copy(ip6[8:24], s[:])
	copy(ip6[24:40], d[:])
	f := ethernet.Frame{Destination: dstMAC, Source: srcMAC, EtherType: etherTypeIPv6, Payload: append(ip6, body...)}
	return f.MarshalBinary()
}

// NDPFrame is an IPv6 frame's NDP message, with the addresses around it.
type NDPFrame struct {
	SrcMAC, DstMAC net.HardwareAddr
	Src, Dst       netip.Addr
	Message        ndp.Message
}

// ParseNDPFrame parses an Ethernet frame holding an NDP message (IPv6
// without extension headers, hop limit 255); ok is false for anything else.
func ParseNDPFrame(frame []byte) (NDPFrame, bool) {
	var f ethernet.Frame
	if err := f.UnmarshalBinary(frame); err != nil || f.EtherType != etherTypeIPv6 || len(f.Payload) < 40 {
		return NDPFrame{}, false
	}
	p := f.Payload
	if p[0]>>4 != 6 || p[6] != 58 || p[7] != 255 {
		return NDPFrame{}, false
	}
	n := int(binary.BigEndian.Uint16(p[4:6]))
	if 40+n > len(p) {
		return NDPFrame{}, false
	}
	m, err := ndp.ParseMessage(p[40 : 40+n])
	if err != nil {
		return NDPFrame{}, false
	}
	return NDPFrame{SrcMAC: f.Source, DstMAC: f.Destination, Src: netip.AddrFrom16([16]byte(p[8:24])), Dst: netip.AddrFrom16([16]byte(p[24:40])), Message: m}, true
}

// AdvertisementFrame is an Ethernet frame holding a solicited Neighbor
// Advertisement of target by mac, from src to dst (dstMAC).
func AdvertisementFrame(mac, dstMAC net.HardwareAddr, src, dst, target netip.Addr) ([]byte, error) {
	na := &ndp.NeighborAdvertisement{Solicited: true, Override: true, TargetAddress: target,
		Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: mac}}}
	return icmpv6Frame(na, mac, dstMAC, src, dst)
}

// advertisementFrom returns the MAC that advertises ip in frame (its
// target link-layer address, else the frame's source) when the interface
// (own) did not send it.
func advertisementFrom(frame []byte, ip netip.Addr, own net.HardwareAddr) (net.HardwareAddr, bool) {
	f, ok := ParseNDPFrame(frame)
	if !ok || bytes.Equal(f.SrcMAC, own) {
		return nil, false
	}
	na, ok := f.Message.(*ndp.NeighborAdvertisement)
	if !ok || na.TargetAddress.WithZone("") != ip.WithZone("") {
		return nil, false
	}
	for _, o := range na.Options {
		if l, ok := o.(*ndp.LinkLayerAddress); ok && l.Direction == ndp.Target && len(l.Addr) == 6 {
			return l.Addr, true
		}
	}
	return f.SrcMAC, true
}
