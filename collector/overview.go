package collector

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lbprobe/lbprobe/probe"
)

// Row is one line of a round's overview (the landing page): a target's latest
// state in words.
type Row struct {
	OK     bool
	Group  string // namespace/service, namespace/gateway, or the hostname
	Target string // the IP, address:port, or the check ("DNS 10.0.0.1:53", "TLS 10.0.0.1:443")
	Detail string // the ports and their results, the listener, the verdict
	// Answer and Expected are the addresses of a DNS check.
	Answer, Expected string
	// Link is the debug view of the target ("" when it has none).
	Link string
}

// LoadBalancerRow is the overview of one load balancer IP.
type LoadBalancerRow struct {
	Row
	Namespace, Service string
	IP                 netip.Addr
	// ServiceDNS sums up the DNS checks of the Service's own name
	// ("name: verdict, ..."); empty without such checks.
	ServiceDNS string
}

// Overview is a round in words, for people: one row per load balancer IP,
// Gateway listener and hostname check, in target order (see SortRows).
type Overview struct {
	LoadBalancers []LoadBalancerRow
	Listeners     []Row
	Hostnames     []Row
}

// Overview describes the round.
func (r *RoundResult) Overview() Overview {
	var o Overview
	hostnames := r.Hostnames()
	for _, lb := range r.LoadBalancers() {
		for _, ip := range lb.IPs {
			o.LoadBalancers = append(o.LoadBalancers, LoadBalancerRow{
				Row: Row{
					OK:     !ip.Failing(),
					Group:  lb.Namespace + "/" + lb.Service,
					Target: ip.IP.String(),
					Detail: ip.Summary(),
					Link:   DebugLink(ip.IP.String()),
				},
				Namespace:  lb.Namespace,
				Service:    lb.Service,
				IP:         ip.IP,
				ServiceDNS: serviceDNSSummary(hostnames, lb.Namespace, lb.Service),
			})
		}
	}
	for _, l := range r.GatewayListeners() {
		o.Listeners = append(o.Listeners, Row{
			OK:     !l.Probed || l.Result.Success,
			Group:  l.Namespace + "/" + l.Gateway,
			Target: l.Address.String() + ":" + strconv.Itoa(int(l.Port)),
			Detail: l.Summary(),
		})
	}
	for _, h := range hostnames {
		group := h.Hostname.Hostname
		if h.Source != "static" {
			group += " (" + h.Source + " " + h.Namespace + "/" + h.Name + ")"
		}
		link := DebugLink(h.Hostname.Hostname)
		for _, d := range h.DNS {
			o.Hostnames = append(o.Hostnames, Row{
				OK:       d.Result.Success,
				Group:    group,
				Target:   "DNS " + d.Server,
				Detail:   d.Summary(),
				Answer:   JoinAddrs(d.Result.Addresses),
				Expected: JoinAddrs(h.Expect),
				Link:     link,
			})
		}
		for _, t := range h.TLS {
			o.Hostnames = append(o.Hostnames, Row{
				OK:     t.Result.Success,
				Group:  group,
				Target: "TLS " + netip.AddrPortFrom(t.IP, t.Port).String(),
				Detail: t.Summary(),
				Link:   link,
			})
		}
	}
	return o
}

// DebugLink is the path of the debug view of a target (an IP or a hostname).
func DebugLink(target string) string { return "/probe?target=" + target + "&debug=true" }

// SortRows orders rows failures first, then by group and target.
func SortRows[R interface{ row() Row }](rows []R) {
	slices.SortStableFunc(rows, func(a, b R) int {
		ra, rb := a.row(), b.row()
		if ra.OK != rb.OK {
			if !ra.OK {
				return -1
			}
			return 1
		}
		return strings.Compare(ra.Group+" "+ra.Target, rb.Group+" "+rb.Target)
	})
}

func (r Row) row() Row { return r }

// Failing reports whether any probe of the IP failed, or none ran (a load
// balancer IP with no probed port and no ICMP check is not known to work).
func (s IPStatus) Failing() bool {
	if !s.Reachable {
		return true
	}
	for _, p := range s.Ports {
		if !p.Result.Success {
			return true
		}
	}
	return s.ICMP != nil && !s.ICMP.Success
}

// Summary describes the IP's probes: "443/TCP ok (1.2ms), 80/TCP refused
// (300µs), icmp ok 200µs".
func (s IPStatus) Summary() string {
	parts := make([]string, 0, len(s.Ports)+1)
	for _, p := range s.Ports {
		parts = append(parts, strconv.Itoa(int(p.Port))+"/"+p.Protocol+" "+stateWord(p.Result)+" ("+p.Result.Duration.Round(time.Microsecond).String()+")")
	}
	if s.ICMP != nil {
		state := stateWord(s.ICMP.Result)
		if s.ICMP.Success {
			state += " " + s.ICMP.RTT.Round(time.Microsecond).String()
		}
		parts = append(parts, "icmp "+state)
	}
	if len(parts) == 0 {
		return "nothing probed"
	}
	return strings.Join(parts, ", ")
}

// Summary describes the listener's probe.
func (s GatewayListenerStatus) Summary() string {
	state := "UDP: not probed"
	if s.Probed {
		state = stateWord(s.Result)
	}
	return s.Listener + " (" + s.Protocol + "): " + state
}

// Summary is the verdict, with the rcode when it is not NOERROR.
func (s DNSStatus) Summary() string {
	if rc := s.Result.Rcode; rc != "" && rc != "NOERROR" {
		return string(s.Result.Verdict) + " (" + rc + ")"
	}
	return string(s.Result.Verdict)
}

// Summary describes the TLS check and the certificate's end of validity.
func (s TLSStatus) Summary() string {
	detail := "TLS " + stateWord(s.Result.Result)
	if !s.Result.NotAfter.IsZero() {
		detail += ", certificate valid until " + s.Result.NotAfter.UTC().Format(time.DateOnly)
	}
	return detail
}

// stateWord is "ok" or the failure reason.
func stateWord(res probe.Result) string {
	if res.Success {
		return "ok"
	}
	return resultLabel(res)
}

// serviceDNSSummary sums up the DNS checks of a Service's own name.
func serviceDNSSummary(hostnames []HostnameStatus, namespace, name string) string {
	var parts []string
	for _, h := range hostnames {
		if h.Source != "service" || h.Namespace != namespace || h.Name != name {
			continue
		}
		for _, d := range h.DNS {
			parts = append(parts, h.Hostname.Hostname+": "+string(d.Result.Verdict))
		}
	}
	return strings.Join(parts, ", ")
}
