package collector

import (
	"context"
	"log/slog"
	"net/netip"

	"github.com/lbprobe/lbprobe/probe"
)

// Probers are the functions a round calls, one per kind of probe. A nil field
// means package probe's function, so the zero value probes the real network
// and a test replaces only the probes it fakes.
type Probers struct {
	TCP    func(ctx context.Context, addr netip.AddrPort, logger *slog.Logger) probe.Result
	UDPDNS func(ctx context.Context, addr netip.AddrPort, logger *slog.Logger) probe.Result
	ICMP   func(ctx context.Context, ip netip.Addr, opts probe.ICMPOptions, logger *slog.Logger) probe.ICMPResult
	DNS    func(ctx context.Context, server, name string, expect []netip.Addr, opts probe.DNSOptions, logger *slog.Logger) probe.DNSResult
	TLS    func(ctx context.Context, addr netip.AddrPort, serverName string, opts probe.TLSOptions, logger *slog.Logger) probe.TLSResult
	ARP    func(ctx context.Context, ip netip.Addr, opts probe.ARPOptions, logger *slog.Logger) probe.ARPResult
	NDP    func(ctx context.Context, ip netip.Addr, opts probe.NDPOptions, logger *slog.Logger) probe.ARPResult
	Route  func(ip netip.Addr) (probe.RouteResult, error)
	// Interfaces lists the host's interfaces that ARP probes may use.
	Interfaces func() ([]string, error)
}

// withDefaults fills every nil field with package probe's function.
func (p Probers) withDefaults() Probers {
	if p.TCP == nil {
		p.TCP = probe.TCP
	}
	if p.UDPDNS == nil {
		p.UDPDNS = probe.UDPDNS
	}
	if p.ICMP == nil {
		p.ICMP = probe.ICMP
	}
	if p.DNS == nil {
		p.DNS = probe.DNS
	}
	if p.TLS == nil {
		p.TLS = probe.TLS
	}
	if p.ARP == nil {
		p.ARP = probe.ARP
	}
	if p.NDP == nil {
		p.NDP = probe.NDP
	}
	if p.Route == nil {
		p.Route = probe.Route
	}
	if p.Interfaces == nil {
		p.Interfaces = probe.UpIPv4Interfaces
	}
	return p
}
