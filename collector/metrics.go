package collector

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lbprobe/lbprobe/probe"
)

// Label sets shared by several series.
var (
	lbIPLabels   = []string{"namespace", "service", "ip"}
	lbPortLabels = []string{"namespace", "service", "ip", "port", "protocol"}
	dnsLabels    = []string{"server", "hostname", "source", "namespace", "name"}
	tlsLabels    = []string{"hostname", "ip", "port", "source", "namespace", "name"}
	gwLabels     = []string{"namespace", "gateway", "listener", "address", "port"}
)

func withLabel(base []string, extra ...string) []string {
	return append(append([]string(nil), base...), extra...)
}

func newGaugeDesc(name, help string, labels []string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

// BoolValue is the value of a boolean gauge: 1 for true, 0 for false.
func BoolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Gauge sends a const gauge; labels are the values of desc's variable labels.
func Gauge(ch chan<- prometheus.Metric, desc *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, labels...)
}

// Descriptors of the series a round produces. Names and label sets are a
// contract with the mixin and with users' dashboards: see README.md.
var (
	descLBReachable = newGaugeDesc("loadbalancer_reachable",
		"1 when at least one probed port of the load balancer IP answered in this scrape (ICMP when no port is probed), else 0.", lbIPLabels)
	descPortReachable = newGaugeDesc("loadbalancer_port_reachable",
		"1 when the port answered the probe in this scrape (TCP connect, or a DNS reply on UDP), else 0.", lbPortLabels)
	descPortDuration = newGaugeDesc("loadbalancer_probe_duration_seconds",
		"How long the probe of the port took, failed or not.", lbPortLabels)
	descPortFailure = newGaugeDesc("loadbalancer_probe_failure_info",
		"1 for a port whose probe failed, with the reason (refused, timeout, unreachable, permission_denied, error, not_started: the probe never ran, lbprobe was overloaded).", withLabel(lbPortLabels, "reason"))
	descICMPReachable = newGaugeDesc("loadbalancer_icmp_reachable",
		"1 when the IP answered an ICMP echo in this scrape, else 0 (only for targets with icmp enabled).", lbIPLabels)
	descICMPRTT = newGaugeDesc("loadbalancer_icmp_rtt_seconds",
		"Round-trip time of the ICMP echo; absent when there was no reply.", lbIPLabels)
	descICMPFailure = newGaugeDesc("loadbalancer_icmp_failure_info",
		"1 for an IP whose ICMP probe failed, with the reason (timeout, permission_denied, ...).", withLabel(lbIPLabels, "reason"))

	descDNSCorrect = newGaugeDesc("gateway_dns_answer_correct",
		"1 when the server's answer for the hostname is exactly the expected address set, else 0.", dnsLabels)
	descDNSResult = newGaugeDesc("gateway_dns_answer_result",
		"1 for the classified result of the lookup: correct, wrong_address, missing_address, extra_address, nxdomain, servfail, refused, timeout, error, route_not_accepted (the answer sends clients to a Gateway that did not accept the route), not_started (the lookup never ran: lbprobe was overloaded).", withLabel(dnsLabels, "result"))
	descDNSDuration = newGaugeDesc("gateway_dns_lookup_duration_seconds",
		"How long the A and AAAA lookups of the hostname took on the server.", dnsLabels)
	descDNSAnswer = newGaugeDesc("gateway_dns_answer_info",
		"1, with the addresses the server answered and the addresses expected (sorted, comma-separated).", withLabel(dnsLabels, "answer", "expected"))

	descTLSSuccess = newGaugeDesc("gateway_tls_handshake_success",
		"1 when the TLS handshake with SNI = hostname completed on the address, else 0.", tlsLabels)
	descTLSVerified = newGaugeDesc("gateway_tls_cert_verified",
		"1 when the certificate chain, validity period and hostname verified, else 0.", tlsLabels)
	descTLSCovers = newGaugeDesc("gateway_tls_cert_covers_hostname",
		"1 when the leaf certificate's names cover the hostname, else 0.", tlsLabels)
	descTLSNotAfter = newGaugeDesc("gateway_tls_cert_not_after_timestamp_seconds",
		"The leaf certificate's notAfter as a Unix timestamp; absent when no certificate was received.", tlsLabels)
	descTLSDuration = newGaugeDesc("gateway_tls_probe_duration_seconds",
		"How long the TLS connect and handshake took.", tlsLabels)
	descTLSFailure = newGaugeDesc("gateway_tls_failure_info",
		"1 for a failed TLS check, with the reason (handshake_failed, cert_expired, cert_not_yet_valid, cert_hostname_mismatch, cert_untrusted, refused, timeout, ...).", withLabel(tlsLabels, "reason"))

	descListenerReachable = newGaugeDesc("gateway_listener_reachable",
		"1 when a TCP connect to the Gateway listener's port on the address succeeded in this scrape, else 0 (UDP listeners are not probed).", gwLabels)
	descListenerDuration = newGaugeDesc("gateway_listener_probe_duration_seconds",
		"How long the TCP probe of the Gateway listener took.", gwLabels)
	descListenerFailure = newGaugeDesc("gateway_listener_failure_info",
		"1 for a Gateway listener whose probe failed, with the reason.", withLabel(gwLabels, "reason"))

	descARPReachable = newGaugeDesc("loadbalancer_arp_reachable",
		"1 when at least one host answered an ARP who-has for the IP on the interface in this scrape, else 0.", withLabel(lbIPLabels, "interface"))
	descARPResponders = newGaugeDesc("loadbalancer_arp_responders",
		"How many distinct MAC addresses answered ARP for the IP on the interface; more than 1 is a split brain.", withLabel(lbIPLabels, "interface"))
	descARPResponder = newGaugeDesc("loadbalancer_arp_responder_info",
		"1 for every MAC address that answered ARP for the IP, with the node it belongs to when known.", withLabel(lbIPLabels, "interface", "mac", "node"))
	descARPFailure = newGaugeDesc("loadbalancer_arp_failure_info",
		"1 when the ARP probe of the IP (NDP for IPv6) failed, with the reason (timeout, permission_denied, error).", withLabel(lbIPLabels, "interface", "reason"))
	descARPSkipped = newGaugeDesc("loadbalancer_arp_skipped",
		"1 when the ARP probe of the IP was not run, with the reason: holder_is_self (lbprobe runs on the node that holds the VIP, which cannot ARP its own VIP).", withLabel(lbIPLabels, "interface", "reason"))
	descARPHolderMatch = newGaugeDesc("loadbalancer_arp_holder_match",
		"1 when the lease holder's MAC (from ARP of its InternalIP on the interface) alone answered ARP for the IP on the interface, else 0; absent when the holder's MAC is unknown there.", withLabel(lbIPLabels, "interface"))
	descNDPAnswered = newGaugeDesc("loadbalancer_ndp_answered",
		"For an IPv6 load balancer IP (probed by NDP; the loadbalancer_arp_* series hold the result of either mode): 1 when a Neighbor Advertisement answered the Neighbor Solicitation sent to the solicited-node multicast address (mode=multicast), or the one sent unicast to the MACs that answered it and to the announcer's (mode=unicast, only when one was sent), else 0. An announcer that answers one mode only is half-broken (cilium#41678, cilium#44311).", withLabel(lbIPLabels, "interface", "mode"))
	descRouteInfo = newGaugeDesc("loadbalancer_route_info",
		"1, with the interface and next hop (empty when on-link) the prober's host routes the IP through.", withLabel(lbIPLabels, "interface", "gateway"))
	descRouteOK = newGaugeDesc("loadbalancer_route_ok",
		"1 when the route to the IP uses an interface matching --probe.route.expect-interface (or any route, when no pattern is set), else 0.", lbIPLabels)

	descScrapeDuration = newGaugeDesc("lbprobe_scrape_duration_seconds",
		"How long the round of probes behind this scrape took.", nil)
	descProbeTimeout = newGaugeDesc("lbprobe_probe_timeout_seconds",
		"The time this scrape's round was allowed: the scrape timeout minus the offset.", nil)
	descTargets = newGaugeDesc("lbprobe_targets",
		"How many targets this scrape probed, by kind (loadbalancer, ip, port, hostname, dns_check, tls_check, gateway_listener).", []string{"kind"})
)

var _ prometheus.Collector = (*RoundResult)(nil)

// Describe implements prometheus.Collector. The set is unchecked (a round's
// series change with its targets), so Describe sends nothing.
func (r *RoundResult) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector: it emits the round's series as
// const metrics.
func (r *RoundResult) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) { Gauge(ch, d, v, labels...) }
	var nIPs, nPorts, nDNS, nTLS int
	for _, lb := range r.LoadBalancers() {
		for _, ip := range lb.IPs {
			nIPs++
			ipStr := ip.IP.String()
			if ip.Probed {
				gauge(descLBReachable, BoolValue(ip.Reachable), lb.Namespace, lb.Service, ipStr)
			}
			for _, p := range ip.Ports {
				nPorts++
				labels := []string{lb.Namespace, lb.Service, ipStr, strconv.Itoa(int(p.Port)), p.Protocol}
				gauge(descPortReachable, BoolValue(p.Result.Success), labels...)
				gauge(descPortDuration, p.Result.Duration.Seconds(), labels...)
				if !p.Result.Success {
					gauge(descPortFailure, 1, append(labels, resultLabel(p.Result))...)
				}
			}
			for _, a := range ip.ARP {
				labels := []string{lb.Namespace, lb.Service, ipStr, a.Interface}
				switch a.Reason {
				case probe.ReasonNotApplicable:
					gauge(descARPFailure, 1, append(labels, string(a.Reason))...)
					continue
				case probe.ReasonHolderIsSelf:
					gauge(descARPSkipped, 1, append(labels, string(a.Reason))...)
					continue
				}
				gauge(descARPReachable, BoolValue(a.Success), labels...)
				gauge(descARPResponders, float64(len(a.MACs)), labels...)
				for i, mac := range a.MACs {
					gauge(descARPResponder, 1, append(labels, mac.String(), a.Nodes[i])...)
				}
				if !a.Success {
					gauge(descARPFailure, 1, append(labels, resultLabel(a.Result))...)
				}
				if a.HolderMatch != nil {
					gauge(descARPHolderMatch, BoolValue(*a.HolderMatch), labels...)
				}
				if n := a.NDP; n != nil && a.Reason != probe.ReasonNotStarted {
					gauge(descNDPAnswered, BoolValue(len(n.Multicast) > 0), append(labels, "multicast")...)
					if len(n.UnicastAsked) > 0 {
						gauge(descNDPAnswered, BoolValue(len(n.Unicast) > 0), append(labels, "unicast")...)
					}
				}
			}
			if rt := ip.Route; rt != nil {
				if rt.Interface != "" {
					gw := ""
					if rt.Gateway.IsValid() {
						gw = rt.Gateway.String()
					}
					gauge(descRouteInfo, 1, lb.Namespace, lb.Service, ipStr, rt.Interface, gw)
				}
				gauge(descRouteOK, BoolValue(rt.Result.Success), lb.Namespace, lb.Service, ipStr)
			}
			if ip.ICMP != nil {
				gauge(descICMPReachable, BoolValue(ip.ICMP.Success), lb.Namespace, lb.Service, ipStr)
				if ip.ICMP.Success {
					gauge(descICMPRTT, ip.ICMP.RTT.Seconds(), lb.Namespace, lb.Service, ipStr)
				} else {
					gauge(descICMPFailure, 1, lb.Namespace, lb.Service, ipStr, resultLabel(ip.ICMP.Result))
				}
			}
		}
	}
	hostnames := r.Hostnames()
	for _, h := range hostnames {
		for _, d := range h.DNS {
			nDNS++
			labels := []string{d.Server, h.Hostname.Hostname, h.Source, h.Namespace, h.Name}
			gauge(descDNSCorrect, BoolValue(d.Result.Success), labels...)
			gauge(descDNSResult, 1, append(labels, string(d.Result.Verdict))...)
			gauge(descDNSDuration, d.Result.Duration.Seconds(), labels...)
			gauge(descDNSAnswer, 1, append(labels, JoinAddrs(d.Result.Addresses), JoinAddrs(h.Expect))...)
		}
		for _, t := range h.TLS {
			nTLS++
			labels := []string{h.Hostname.Hostname, t.IP.String(), strconv.Itoa(int(t.Port)), h.Source, h.Namespace, h.Name}
			gauge(descTLSSuccess, BoolValue(t.Result.HandshakeOK), labels...)
			gauge(descTLSVerified, BoolValue(t.Result.Verified), labels...)
			gauge(descTLSDuration, t.Result.Duration.Seconds(), labels...)
			if !t.Result.NotAfter.IsZero() {
				gauge(descTLSCovers, BoolValue(t.Result.CoversHostname), labels...)
				gauge(descTLSNotAfter, float64(t.Result.NotAfter.Unix()), labels...)
			}
			if !t.Result.Success {
				gauge(descTLSFailure, 1, append(labels, resultLabel(t.Result.Result))...)
			}
		}
	}
	var nListeners int
	for _, l := range r.GatewayListeners() {
		if !l.Probed {
			continue
		}
		nListeners++
		labels := []string{l.Namespace, l.Gateway, l.Listener, l.Address.String(), strconv.Itoa(int(l.Port))}
		gauge(descListenerReachable, BoolValue(l.Result.Success), labels...)
		gauge(descListenerDuration, l.Result.Duration.Seconds(), labels...)
		if !l.Result.Success {
			gauge(descListenerFailure, 1, append(labels, resultLabel(l.Result))...)
		}
	}
	gauge(descScrapeDuration, r.Duration.Seconds())
	gauge(descProbeTimeout, r.Budget.Seconds())
	gauge(descTargets, float64(len(r.Targets.LoadBalancers)), "loadbalancer")
	gauge(descTargets, float64(nIPs), "ip")
	gauge(descTargets, float64(nPorts), "port")
	gauge(descTargets, float64(len(hostnames)), "hostname")
	gauge(descTargets, float64(nDNS), "dns_check")
	gauge(descTargets, float64(nTLS), "tls_check")
	gauge(descTargets, float64(nListeners), "gateway_listener")
}

// MaxLabelAddrs is how many addresses JoinAddrs writes into a label value;
// past it, the rest are counted: a DNS answer of thousands of records must
// not make a label value of thousands of addresses.
const MaxLabelAddrs = 8

// JoinAddrs renders addresses as a label value: sorted as text,
// comma-separated, at most MaxLabelAddrs of them followed by "+N more".
func JoinAddrs(addrs []netip.Addr) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	slices.Sort(s)
	if len(s) > MaxLabelAddrs {
		s = append(s[:MaxLabelAddrs], fmt.Sprintf("+%d more", len(s)-MaxLabelAddrs))
	}
	return strings.Join(s, ",")
}
