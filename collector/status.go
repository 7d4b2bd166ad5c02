package collector

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/lbprobe/lbprobe/probe"
)

// RoundResult is the outcome of one round: the targets it probed, one outcome
// per job, and when it ran. It is read-only once returned.
type RoundResult struct {
	Targets  Targets
	Jobs     []job
	Outcomes []outcome
	Started  time.Time
	Budget   time.Duration // the time the round was allowed
	Duration time.Duration
	Options  Options // the options the round ran with
}

// PortStatus is the result of probing one port of one IP.
type PortStatus struct {
	Port     uint16
	Protocol string
	Kind     string // "tcp" or "udp_dns"
	Result   probe.Result
}

// IPStatus is what one round learned about one IP of a load balancer.
type IPStatus struct {
	IP        netip.Addr
	Reachable bool // at least one probed port answered (or, with no probed port, the ICMP echo)
	Probed    bool // at least one port or ICMP probe ran for this IP
	Ports     []PortStatus
	ICMP      *probe.ICMPResult
	ARP       []ARPStatus  // one per interface probed
	Route     *RouteStatus // nil when the route check is off
}

// ARPStatus is the ARP probe of one IP on one interface. Nodes names the
// node of each MAC in MACs ("" when unknown). HolderMatch is set when the
// lease holder's MAC is known: true when the holder's MAC alone answered.
type ARPStatus struct {
	probe.ARPResult
	Nodes       []string
	HolderMatch *bool
}

// RouteStatus is the route the prober's host uses to reach an IP. Result
// fails with reason unreachable when there is no route, and wrong_route when
// the route's interface does not match the expected pattern.
type RouteStatus struct {
	probe.RouteResult
	Result probe.Result
}

// LoadBalancerStatus groups the IP statuses of one load balancer.
type LoadBalancerStatus struct {
	LoadBalancer
	IPs []IPStatus
}

// DNSStatus is the verdict of one server for one hostname.
type DNSStatus struct {
	Server string
	Result probe.DNSResult
}

// TLSStatus is the TLS check of one hostname on one address.
type TLSStatus struct {
	IP     netip.Addr
	Port   uint16
	Result probe.TLSResult
}

// HostnameStatus groups the DNS and TLS results of one hostname.
type HostnameStatus struct {
	Hostname
	DNS []DNSStatus
	TLS []TLSStatus
}

// LoadBalancers returns the status of every load balancer IP, in target order.
func (r *RoundResult) LoadBalancers() []LoadBalancerStatus {
	macs := r.nodeMACs()
	out := make([]LoadBalancerStatus, len(r.Targets.LoadBalancers))
	index := make([]map[netip.Addr]int, len(out))
	for i, lb := range r.Targets.LoadBalancers {
		out[i].LoadBalancer = lb
		index[i] = make(map[netip.Addr]int, len(lb.IPs))
		for _, ip := range lb.IPs {
			index[i][ip] = len(out[i].IPs)
			out[i].IPs = append(out[i].IPs, IPStatus{IP: ip})
		}
	}
	for ji, j := range r.Jobs {
		if j.lb < 0 {
			continue
		}
		st := &out[j.lb].IPs[index[j.lb][j.ip]]
		o := r.Outcomes[ji]
		switch j.kind {
		case kindTCP, kindUDPDNS:
			st.Ports = append(st.Ports, PortStatus{Port: j.port.Port, Protocol: j.port.Protocol, Kind: string(j.kind), Result: o.res})
		case kindICMP:
			icmp := probe.ICMPResult{Result: o.res}
			if o.icmp != nil {
				icmp = *o.icmp
			}
			st.ICMP = &icmp
		case kindARP:
			arp := probe.ARPResult{Result: o.res, Interface: j.iface}
			if o.arp != nil {
				arp = *o.arp
				arp.Interface = j.iface
			}
			st.ARP = append(st.ARP, r.arpStatus(arp, out[j.lb].Holder, out[j.lb].HolderMAC, macs))
		case kindRoute:
			rs := RouteStatus{Result: o.res}
			if o.route != nil {
				rs.RouteResult = *o.route
			}
			st.Route = &rs
		}
	}
	for i := range out {
		for k := range out[i].IPs {
			st := &out[i].IPs[k]
			st.Probed = len(st.Ports) > 0 || st.ICMP != nil
			if len(st.Ports) > 0 {
				st.Reachable = slices.ContainsFunc(st.Ports, func(p PortStatus) bool { return p.Result.Success })
			} else if st.ICMP != nil {
				st.Reachable = st.ICMP.Success
			}
		}
	}
	return out
}

// nodeMACs maps, per interface, each node's MAC to its name and each node's
// name to its MAC, from the ARP probes of the nodes' InternalIPs. A node
// that did not answer, or that more than one MAC answered for, is left out.
func (r *RoundResult) nodeMACs() map[string]map[string]string {
	out := make(map[string]map[string]string)
	for ji, j := range r.Jobs {
		o := r.Outcomes[ji]
		if j.kind != kindNodeARP || o.arp == nil || len(o.arp.MACs) != 1 {
			continue
		}
		if out[j.iface] == nil {
			out[j.iface] = make(map[string]string)
		}
		name, mac := r.Targets.Nodes[j.node].Name, o.arp.MACs[0].String()
		out[j.iface]["mac "+mac] = name
		out[j.iface]["node "+name] = mac
	}
	return out
}

// arpStatus names the responders of an ARP result and checks the holder:
// wantMAC when the implementation names the MAC that should answer, else
// the holder node's MAC from the node ARP probes.
func (r *RoundResult) arpStatus(a probe.ARPResult, holder string, wantMAC net.HardwareAddr, macs map[string]map[string]string) ARPStatus {
	st := ARPStatus{ARPResult: a, Nodes: make([]string, len(a.MACs))}
	byIface := macs[a.Interface]
	for i, m := range a.MACs {
		st.Nodes[i] = byIface["mac "+m.String()]
		if st.Nodes[i] == "" && wantMAC != nil && m.String() == wantMAC.String() {
			st.Nodes[i] = holder
		}
	}
	if wantMAC != nil && a.Reason != probe.ReasonHolderIsSelf {
		match := len(a.MACs) == 1 && a.MACs[0].String() == wantMAC.String()
		st.HolderMatch = &match
		return st
	}
	if holderMAC, ok := byIface["node "+holder]; ok && holder != "" && a.Reason != probe.ReasonHolderIsSelf {
		match := len(a.MACs) == 1 && a.MACs[0].String() == holderMAC
		st.HolderMatch = &match
	}
	return st
}

// Hostnames returns the DNS and TLS status of every hostname, in target order.
func (r *RoundResult) Hostnames() []HostnameStatus {
	out := make([]HostnameStatus, len(r.Targets.Hostnames))
	for i, h := range r.Targets.Hostnames {
		out[i].Hostname = h
	}
	for ji, j := range r.Jobs {
		if j.host < 0 {
			continue
		}
		o := r.Outcomes[ji]
		switch j.kind {
		case kindDNS:
			dr := probe.DNSResult{Result: o.res, Verdict: probe.DNSTimeout} // a job cut off by the deadline
			if o.res.Reason == probe.ReasonNotStarted {
				dr.Verdict = probe.DNSNotStarted
			}
			if o.dns != nil {
				dr = *o.dns
			}
			dr = judgeAcceptance(dr, r.Targets.Hostnames[j.host].NotAcceptedBy)
			out[j.host].DNS = append(out[j.host].DNS, DNSStatus{Server: j.server, Result: dr})
		case kindTLS:
			tr := probe.TLSResult{Result: o.res}
			if o.tls != nil {
				tr = *o.tls
			}
			out[j.host].TLS = append(out[j.host].TLS, TLSStatus{IP: j.ip, Port: j.port.Port, Result: tr})
		}
	}
	return out
}

// VerdictRouteNotAccepted is the DNS verdict of a route hostname whose answer
// holds the address of a Gateway that did not accept the route: clients are
// sent to a Gateway that will not serve the name.
const VerdictRouteNotAccepted probe.DNSVerdict = "route_not_accepted"

// ReasonRouteNotAccepted is the failure reason of that verdict.
const ReasonRouteNotAccepted probe.Reason = "route_not_accepted"

// judgeAcceptance turns an answer that sends clients to a Gateway that
// refused the route into the verdict route_not_accepted, whatever the
// address sets say.
func judgeAcceptance(dr probe.DNSResult, refused []netip.Addr) probe.DNSResult {
	if len(refused) == 0 || len(dr.Addresses) == 0 {
		return dr
	}
	var hit []netip.Addr
	for _, a := range dr.Addresses {
		if slices.Contains(refused, a) {
			hit = append(hit, a)
		}
	}
	if len(hit) == 0 {
		return dr
	}
	dr.Success, dr.Verdict, dr.Reason = false, VerdictRouteNotAccepted, ReasonRouteNotAccepted
	dr.Err = fmt.Errorf("dns: the answer %v sends clients to %v, whose Gateway did not accept the route", dr.Addresses, hit)
	return dr
}

// GatewayListenerStatus is the TCP probe of one Gateway listener on one
// address. Result is the zero Result (not Success) for a UDP listener, which
// is not probed: Probed tells.
type GatewayListenerStatus struct {
	GatewayListener
	Probed bool
	Result probe.Result
}

// GatewayListeners returns the status of every Gateway listener, in target order.
func (r *RoundResult) GatewayListeners() []GatewayListenerStatus {
	out := make([]GatewayListenerStatus, len(r.Targets.GatewayListeners))
	for i, l := range r.Targets.GatewayListeners {
		out[i].GatewayListener = l
	}
	for ji, j := range r.Jobs {
		if j.kind == kindListener {
			out[j.listener].Probed = true
			out[j.listener].Result = r.Outcomes[ji].res
		}
	}
	return out
}

// NotStarted returns how many probes of the round never got a slot before
// its deadline.
func (r *RoundResult) NotStarted() int {
	n := 0
	for _, o := range r.Outcomes {
		if o.res.Reason == probe.ReasonNotStarted {
			n++
		}
	}
	return n
}

// ProbeCounts returns how many probes of each kind ended with each result
// ("success" or the failure reason).
func (r *RoundResult) ProbeCounts() map[[2]string]int {
	counts := make(map[[2]string]int)
	for i, j := range r.Jobs {
		counts[[2]string{string(j.kind), resultLabel(r.Outcomes[i].res)}]++
	}
	return counts
}

func resultLabel(res probe.Result) string {
	if res.Success {
		return "success"
	}
	if res.Reason == probe.ReasonNone {
		return string(probe.ReasonError)
	}
	return string(res.Reason)
}
