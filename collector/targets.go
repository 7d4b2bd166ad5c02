// Package collector turns targets into probes and probe results into
// Prometheus series. The Engine runs one round of probes per scrape (shared by
// scrapes that arrive while it is in flight); a RoundResult is a
// prometheus.Collector that emits const metrics, so nothing outlives a scrape.
//
// Targets come from Sources: the static config is one, Kubernetes discovery
// another. A Source must answer from memory: it is read at every scrape.
package collector

import (
	"net"
	"net/netip"
	"strings"

	"github.com/lbprobe/lbprobe/collector/shard"
	"github.com/lbprobe/lbprobe/probe"
)

// Source yields the targets to probe. Implementations read from memory (a
// config already parsed, informer caches) and never block on the network.
type Source interface {
	Targets() Targets
}

// SourceFunc adapts a function to Source.
type SourceFunc func() Targets

// Targets implements Source.
func (f SourceFunc) Targets() Targets { return f() }

var _ Source = SourceFunc(nil)

// Targets is everything one source asks to probe.
type Targets struct {
	LoadBalancers    []LoadBalancer
	Hostnames        []Hostname
	GatewayListeners []GatewayListener
	// Nodes are the cluster's nodes: ARP of their InternalIPs names the
	// MACs that answer for load balancer IPs, and finds the lease holder's.
	Nodes []Node
}

// Node is a cluster node and the address it has on the LAN.
type Node struct {
	Name string
	IP   netip.Addr
}

// Merge returns t followed by o.
func (t Targets) Merge(o Targets) Targets {
	return Targets{
		LoadBalancers:    append(append([]LoadBalancer(nil), t.LoadBalancers...), o.LoadBalancers...),
		Hostnames:        append(append([]Hostname(nil), t.Hostnames...), o.Hostnames...),
		GatewayListeners: append(append([]GatewayListener(nil), t.GatewayListeners...), o.GatewayListeners...),
		Nodes:            append(append([]Node(nil), t.Nodes...), o.Nodes...),
	}
}

// ProbeKind names how a load balancer port is probed.
type ProbeKind string

// Port probe kinds.
const (
	ProbeTCP  ProbeKind = "tcp"  // TCP connect
	ProbeDNS  ProbeKind = "dns"  // a DNS query over UDP; any reply proves the port answers
	ProbeNone ProbeKind = "none" // listed, not probed
)

// LoadBalancer is one LoadBalancer Service (or its static stand-in): every
// port is probed on every IP.
type LoadBalancer struct {
	Namespace string
	Service   string
	IPs       []netip.Addr
	Ports     []Port
	ICMP      bool   // also ping each IP (opt-in: Cilium does not answer echo on LB IPs by default)
	Source    string // "static" or "kubernetes"
	// Holder is the node that should announce the IPs, as the L2
	// implementation says (Cilium's lease holder, MetalLB's ServiceL2Status
	// node, kube-vip's lease holder or vipHost; "" when unknown): its MAC
	// should be the one answering ARP for the IPs.
	Holder string
	// HolderMAC, when the implementation names it (kube-vip.io/hwaddr), is
	// the MAC that should answer, whatever the holder's own MAC.
	HolderMAC net.HardwareAddr
}

// Port is one port of a load balancer.
type Port struct {
	Port     uint16
	Protocol string // "TCP" or "UDP"
	Probe    ProbeKind
}

// Hostname is one DNS name whose answer is checked on every server, and
// optionally its TLS certificate by each TLS check.
type Hostname struct {
	Hostname  string
	Expect    []netip.Addr
	Servers   []string // host:port of the DNS servers to ask
	Source    string   // "static", "httproute" or "service"
	Namespace string   // of the object the name comes from (may be empty for static names)
	Name      string
	TLS       []TLSCheck
	// NotAcceptedBy are the addresses of the Gateways that did not accept
	// the route the name comes from. k8s_gateway answers them all the same:
	// an answer holding one is the verdict route_not_accepted.
	NotAcceptedBy []netip.Addr
}

// TLSCheck asks for a TLS handshake with SNI = the hostname on every address
// of the check, at its port.
type TLSCheck struct {
	Port    uint16
	IPs     []netip.Addr
	Options probe.TLSOptions
}

// GatewayListener is one listener port of a Gateway on one of its
// addresses; it is probed with a TCP connect (UDP listeners are listed, not
// probed).
type GatewayListener struct {
	Namespace string
	Gateway   string
	Listener  string
	Address   netip.Addr
	Port      uint16
	Protocol  string // the listener's protocol: HTTP, HTTPS, TLS, TCP, UDP, ...
}

// dedupe drops repeated targets so that no series is emitted twice: load
// balancers by (namespace, service), their IPs and ports, hostnames by
// (hostname, source, namespace, name), their servers and TLS addresses. The
// first occurrence wins.
func (t Targets) dedupe() Targets {
	out := Targets{
		LoadBalancers:    make([]LoadBalancer, 0, len(t.LoadBalancers)),
		Hostnames:        make([]Hostname, 0, len(t.Hostnames)),
		GatewayListeners: make([]GatewayListener, 0, len(t.GatewayListeners)),
	}
	seenLB := make(map[[2]string]bool, len(t.LoadBalancers))
	for _, lb := range t.LoadBalancers {
		key := [2]string{lb.Namespace, lb.Service}
		if seenLB[key] {
			continue
		}
		seenLB[key] = true
		lb.IPs = uniq(lb.IPs, func(a netip.Addr) netip.Addr { return a })
		lb.Ports = uniq(lb.Ports, func(p Port) Port { return Port{Port: p.Port, Protocol: p.Protocol} })
		out.LoadBalancers = append(out.LoadBalancers, lb)
	}
	seenHost := make(map[[4]string]bool, len(t.Hostnames))
	for _, h := range t.Hostnames {
		key := [4]string{h.Hostname, h.Source, h.Namespace, h.Name}
		if seenHost[key] {
			continue
		}
		seenHost[key] = true
		h.Servers = uniq(h.Servers, func(s string) string { return s })
		checks := make([]TLSCheck, 0, len(h.TLS))
		seenPort := make(map[uint16]bool, len(h.TLS))
		for _, c := range h.TLS {
			if seenPort[c.Port] {
				continue
			}
			seenPort[c.Port] = true
			c.IPs = uniq(c.IPs, func(a netip.Addr) netip.Addr { return a })
			checks = append(checks, c)
		}
		h.TLS = checks
		out.Hostnames = append(out.Hostnames, h)
	}
	out.Nodes = uniq(t.Nodes, func(n Node) string { return n.Name })
	seenListener := make(map[GatewayListener]bool, len(t.GatewayListeners))
	for _, l := range t.GatewayListeners {
		if !seenListener[l] {
			seenListener[l] = true
			out.GatewayListeners = append(out.GatewayListeners, l)
		}
	}
	return out
}

// uniq returns s without the elements whose key was seen before.
func uniq[T any, K comparable](s []T, key func(T) K) []T {
	if len(s) < 2 {
		return s
	}
	seen := make(map[K]bool, len(s))
	out := make([]T, 0, len(s))
	for _, v := range s {
		if k := key(v); !seen[k] {
			seen[k] = true
			out = append(out, v)
		}
	}
	return out
}

// HostnameKey is a name as Hostname.Hostname holds it: lower case, without
// a trailing dot (for looking up what a user typed).
func HostnameKey(name string) string {
	return strings.TrimSuffix(strings.ToLower(name), ".")
}

// Shard returns the targets that s owns: each load balancer with the IPs
// whose key (namespace/service/ip) falls in s, a load balancer without IPs
// when namespace/service/ does, the hostnames whose name does, the Gateway
// listeners whose Gateway does. Nodes are kept: every shard needs their MACs
// for the holder match, and they have no series of their own.
func (t Targets) Shard(s shard.Shard) Targets {
	if s.OwnsAll() {
		return t
	}
	out := Targets{Nodes: t.Nodes}
	for _, lb := range t.LoadBalancers {
		if len(lb.IPs) == 0 {
			if s.Owns(shard.LoadBalancerKey(lb.Namespace, lb.Service, netip.Addr{})) {
				out.LoadBalancers = append(out.LoadBalancers, lb)
			}
			continue
		}
		var ips []netip.Addr
		for _, ip := range lb.IPs {
			if s.Owns(shard.LoadBalancerKey(lb.Namespace, lb.Service, ip)) {
				ips = append(ips, ip)
			}
		}
		if len(ips) > 0 {
			lb.IPs = ips
			out.LoadBalancers = append(out.LoadBalancers, lb)
		}
	}
	for _, h := range t.Hostnames {
		if s.Owns(shard.HostnameKey(h.Hostname)) {
			out.Hostnames = append(out.Hostnames, h)
		}
	}
	for _, l := range t.GatewayListeners {
		if s.Owns(shard.GatewayKey(l.Namespace, l.Gateway)) {
			out.GatewayListeners = append(out.GatewayListeners, l)
		}
	}
	return out
}
