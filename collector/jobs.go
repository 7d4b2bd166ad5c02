package collector

import (
	"net"
	"net/netip"
	"strconv"

	"github.com/lbprobe/lbprobe/probe"
)

// jobKind is the kind of one probe; its string is the `kind` label of
// lbprobe_probes_total.
type jobKind string

const (
	kindTCP    jobKind = "tcp"
	kindUDPDNS jobKind = "udp_dns"
	kindICMP   jobKind = "icmp"
	kindDNS    jobKind = "dns"
	kindTLS    jobKind = "tls"
	// kindListener is a TCP connect to a Gateway listener.
	kindListener jobKind = "gateway_listener"
	kindARP      jobKind = "arp"
	kindNodeARP  jobKind = "node_arp"
	kindRoute    jobKind = "route"
)

// jobKinds lists every job kind, in the order the documentation gives them.
var jobKinds = []jobKind{kindTCP, kindUDPDNS, kindICMP, kindDNS, kindTLS, kindListener, kindARP, kindNodeARP, kindRoute}

// ProbeKinds returns the `kind` label values of lbprobe_probes_total.
func ProbeKinds() []string {
	out := make([]string, len(jobKinds))
	for i, k := range jobKinds {
		out[i] = string(k)
	}
	return out
}

// job is one probe of one round. lb, host and listener index into the
// round's targets (-1 when not used).
type job struct {
	kind     jobKind
	lb       int
	host     int
	listener int
	tls      *TLSCheck
	ip       netip.Addr
	port     Port
	server   string
	iface    string // ARP: the interface probed on
	node     int    // node ARP: index into the round's nodes, else -1
	skipSelf bool   // ARP of a VIP held by this very node: not probed
	// holderMAC, for the NDP probe of an IPv6 IP, is its holder's MAC
	// from the last round (nil when unknown).
	holderMAC net.HardwareAddr
}

func (j job) logAttrs() []any {
	attrs := []any{"kind", string(j.kind)}
	if j.server != "" {
		attrs = append(attrs, "server", j.server)
	}
	if j.ip.IsValid() {
		attrs = append(attrs, "ip", j.ip.String())
	}
	if j.port.Port != 0 {
		attrs = append(attrs, "port", strconv.Itoa(int(j.port.Port)))
	}
	return attrs
}

// outcome is the result of one job. done is false for a job that had not
// finished when the round was read.
type outcome struct {
	done    bool
	started bool // a slot was taken: the probe ran, even if it did not finish
	res     probe.Result
	icmp    *probe.ICMPResult
	dns     *probe.DNSResult
	tls     *probe.TLSResult
	arp     *probe.ARPResult
	route   *probe.RouteResult
}

// buildJobs flattens targets into probe jobs, in a stable order: arpIfaces
// are the interfaces every load balancer IP is ARP-probed on, routeCheck
// adds a route lookup per IP.
func buildJobs(t Targets, arpIfaces []string, routeCheck bool, nodeName string) []job {
	jobs := make([]job, 0, countJobs(t, arpIfaces, routeCheck))
	for li, lb := range t.LoadBalancers {
		for _, ip := range lb.IPs {
			for _, p := range lb.Ports {
				switch p.Probe {
				case ProbeTCP:
					jobs = append(jobs, job{kind: kindTCP, node: -1, lb: li, host: -1, listener: -1, ip: ip, port: p})
				case ProbeDNS:
					jobs = append(jobs, job{kind: kindUDPDNS, node: -1, lb: li, host: -1, listener: -1, ip: ip, port: p})
				}
			}
			if lb.ICMP {
				jobs = append(jobs, job{kind: kindICMP, node: -1, lb: li, host: -1, listener: -1, ip: ip})
			}
			for _, ifc := range arpIfaces {
				self := nodeName != "" && lb.Holder == nodeName
				jobs = append(jobs, job{kind: kindARP, lb: li, host: -1, listener: -1, node: -1, ip: ip, iface: ifc, skipSelf: self})
			}
			if routeCheck {
				jobs = append(jobs, job{kind: kindRoute, node: -1, lb: li, host: -1, listener: -1, ip: ip})
			}
		}
	}
	for hi, h := range t.Hostnames {
		for _, s := range h.Servers {
			jobs = append(jobs, job{kind: kindDNS, node: -1, lb: -1, host: hi, listener: -1, server: s})
		}
		for _, c := range h.TLS {
			for _, ip := range c.IPs {
				jobs = append(jobs, job{kind: kindTLS, node: -1, lb: -1, host: hi, listener: -1, tls: &c, ip: ip, port: Port{Port: c.Port, Protocol: "TCP"}})
			}
		}
	}
	for ni, n := range t.Nodes {
		for _, ifc := range arpIfaces {
			jobs = append(jobs, job{kind: kindNodeARP, lb: -1, host: -1, listener: -1, node: ni, ip: n.IP, iface: ifc})
		}
	}
	for gi, l := range t.GatewayListeners {
		if l.Protocol == "UDP" {
			continue
		}
		jobs = append(jobs, job{kind: kindListener, lb: -1, host: -1, listener: gi, node: -1, ip: l.Address, port: Port{Port: l.Port, Protocol: "TCP"}})
	}
	return jobs
}

// countJobs is how many jobs buildJobs makes at most (UDP listeners are
// not probed), so that it allocates once.
func countJobs(t Targets, arpIfaces []string, routeCheck bool) int {
	n := len(t.GatewayListeners) + len(t.Nodes)*len(arpIfaces)
	perIP := len(arpIfaces)
	if routeCheck {
		perIP++
	}
	for _, lb := range t.LoadBalancers {
		per := len(lb.Ports) + perIP
		if lb.ICMP {
			per++
		}
		n += len(lb.IPs) * per
	}
	for _, h := range t.Hostnames {
		n += len(h.Servers)
		for _, c := range h.TLS {
			n += len(c.IPs)
		}
	}
	return n
}
