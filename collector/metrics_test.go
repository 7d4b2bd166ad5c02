package collector

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lbprobe/lbprobe/probe"
)

// tableProber answers every probe from a table keyed by address or name,
// with fixed durations, so that the exposition can be compared exactly.
type tableProber struct {
	tcp   map[netip.AddrPort]probe.Result
	icmp  map[netip.Addr]probe.ICMPResult
	dns   map[string]probe.DNSResult // server + " " + name
	tls   map[netip.AddrPort]probe.TLSResult
	arp   map[string]probe.ARPResult // interface + " " + ip
	route map[netip.Addr]probe.RouteResult
}

// probers returns the table's answers as the engine's probe functions.
func (p tableProber) probers() Probers {
	return Probers{
		TCP: p.TCP, UDPDNS: p.UDPDNS, ICMP: p.ICMP, DNS: p.DNS, TLS: p.TLS, ARP: p.ARP,
		Route: p.Route, Interfaces: p.Interfaces,
	}
}

func (p tableProber) ARP(_ context.Context, ip netip.Addr, o probe.ARPOptions, _ *slog.Logger) probe.ARPResult {
	return p.arp[o.Interface+" "+ip.String()]
}
func (p tableProber) Route(ip netip.Addr) (probe.RouteResult, error) {
	r, ok := p.route[ip]
	if !ok {
		return r, errors.New("no route")
	}
	return r, nil
}
func (p tableProber) Interfaces() ([]string, error) {
	return []string{"eth0", "tailscale0", "eth1"}, nil
}

func (p tableProber) TCP(_ context.Context, a netip.AddrPort, _ *slog.Logger) probe.Result {
	return p.tcp[a]
}
func (p tableProber) UDPDNS(_ context.Context, a netip.AddrPort, _ *slog.Logger) probe.Result {
	return p.tcp[a]
}
func (p tableProber) ICMP(_ context.Context, ip netip.Addr, _ probe.ICMPOptions, _ *slog.Logger) probe.ICMPResult {
	return p.icmp[ip]
}
func (p tableProber) DNS(_ context.Context, server, name string, _ []netip.Addr, _ probe.DNSOptions, _ *slog.Logger) probe.DNSResult {
	return p.dns[server+" "+name]
}
func (p tableProber) TLS(_ context.Context, a netip.AddrPort, _ string, _ probe.TLSOptions, _ *slog.Logger) probe.TLSResult {
	return p.tls[a]
}

func TestRoundResultCollect(t *testing.T) {
	ip1, ip2 := netip.MustParseAddr("10.11.80.80"), netip.MustParseAddr("10.11.80.81")
	ok := probe.Result{Success: true, Duration: 2 * time.Millisecond}
	refused := probe.Result{Duration: time.Millisecond, Reason: probe.ReasonRefused, Err: syscall.ECONNREFUSED}
	timeout := probe.Result{Duration: time.Second, Reason: probe.ReasonTimeout, Err: context.DeadlineExceeded}
	notAfter := time.Unix(1900000000, 0)
	p := tableProber{
		tcp: map[netip.AddrPort]probe.Result{
			netip.AddrPortFrom(ip1, 443): ok,
			netip.AddrPortFrom(ip1, 80):  refused,
			netip.AddrPortFrom(ip2, 443): timeout,
			netip.AddrPortFrom(ip2, 53):  timeout,
			netip.AddrPortFrom(ip2, 80):  refused,
		},
		icmp: map[netip.Addr]probe.ICMPResult{
			ip1: {Result: ok, RTT: 500 * time.Microsecond},
			ip2: {Result: probe.Result{Reason: probe.ReasonPermission, Err: errors.New("no CAP_NET_RAW")}},
		},
		dns: map[string]probe.DNSResult{
			"10.11.80.82:53 app.sbbh.cloud": {Result: ok, Verdict: "correct", Rcode: "NOERROR", Addresses: []netip.Addr{ip1}},
			"10.11.80.82:53 int.sbbh.cloud": {Result: probe.Result{Duration: 3 * time.Millisecond, Reason: probe.ReasonWrongAddress},
				Verdict: "wrong_address", Rcode: "NOERROR", Addresses: []netip.Addr{ip1}},
		},
		arp: map[string]probe.ARPResult{
			"eth0 10.11.80.80": {Result: ok, MACs: []net.HardwareAddr{{0x02, 0, 0, 0, 0, 0x11}, {0x02, 0, 0, 0, 0, 0x12}}},
			"eth0 10.11.80.81": {Result: probe.Result{Reason: probe.ReasonTimeout, Err: context.DeadlineExceeded}},
			"eth1 10.11.80.80": {Result: ok, MACs: []net.HardwareAddr{{0x02, 0, 0, 0, 0, 0x11}}},
			"eth1 10.11.80.81": {Result: ok, MACs: []net.HardwareAddr{{0x02, 0, 0, 0, 0, 0x13}}},
			// The nodes' InternalIPs, answered on eth0 only.
			"eth0 10.11.80.11": {Result: ok, MACs: []net.HardwareAddr{{0x02, 0, 0, 0, 0, 0x11}}},
			"eth0 10.11.80.12": {Result: ok, MACs: []net.HardwareAddr{{0x02, 0, 0, 0, 0, 0x12}}},
		},
		route: map[netip.Addr]probe.RouteResult{
			ip1: {Interface: "eth0"},
			ip2: {Interface: "tailscale0", Gateway: netip.MustParseAddr("100.100.100.100")},
		},
		tls: map[netip.AddrPort]probe.TLSResult{
			netip.AddrPortFrom(ip1, 443): {Result: ok, HandshakeOK: true, Verified: true, CoversHostname: true, NotAfter: notAfter},
		},
	}
	targets := Targets{
		LoadBalancers: []LoadBalancer{
			{Namespace: "kube-system", Service: "cilium-gateway-external", IPs: []netip.Addr{ip1}, ICMP: true, Holder: "k8s-nuc",
				Ports: []Port{{Port: 80, Protocol: "TCP", Probe: ProbeTCP}, {Port: 443, Protocol: "TCP", Probe: ProbeTCP}, {Port: 8080, Protocol: "TCP", Probe: ProbeNone}}},
			{Namespace: "kube-system", Service: "internal", IPs: []netip.Addr{ip2}, ICMP: true,
				Ports: []Port{{Port: 443, Protocol: "TCP", Probe: ProbeTCP}, {Port: 53, Protocol: "UDP", Probe: ProbeDNS}}},
		},
		Hostnames: []Hostname{
			{Hostname: "app.sbbh.cloud", Expect: []netip.Addr{ip1}, Servers: []string{"10.11.80.82:53"}, Source: "static",
				TLS: []TLSCheck{{Port: 443, IPs: []netip.Addr{ip1}}}},
			{Hostname: "int.sbbh.cloud", Expect: []netip.Addr{ip2}, Servers: []string{"10.11.80.82:53"}, Source: "httproute", Namespace: "apps", Name: "internal-app"},
		},
		Nodes: []Node{
			{Name: "k8s-nuc", IP: netip.MustParseAddr("10.11.80.11")},
			{Name: "k8s-opti-01", IP: netip.MustParseAddr("10.11.80.12")},
		},
		GatewayListeners: []GatewayListener{
			{Namespace: "gateway", Gateway: "external", Listener: "https", Address: ip1, Port: 443, Protocol: "HTTPS"},
			{Namespace: "gateway", Gateway: "internal", Listener: "http", Address: ip2, Port: 80, Protocol: "HTTP"},
			{Namespace: "gateway", Gateway: "internal", Listener: "dns", Address: ip2, Port: 53, Protocol: "UDP"},
		},
	}
	e := NewEngine(Config{Concurrency: 4, Probers: p.probers(), Options: Options{
		ProbeTimeout:  time.Second,
		ARPInterfaces: regexp.MustCompile(`^eth`), RouteCheck: true, RouteExpect: regexp.MustCompile(`^eth`),
	}}, SourceFunc(func() Targets { return targets }))
	r := e.Probe(t.Context(), time.Minute)

	// The round runs every kind of probe; ProbeKinds (the HELP of
	// lbprobe_probes_total and the README) must name each.
	seen := map[jobKind]bool{}
	for _, j := range r.Jobs {
		if !slices.Contains(jobKinds, j.kind) {
			t.Errorf("job kind %q is not in jobKinds", j.kind)
		}
		seen[j.kind] = true
	}
	if len(seen) != len(jobKinds) {
		t.Errorf("the round ran %d of the %d job kinds: %v", len(seen), len(jobKinds), seen)
	}

	want := `
# HELP gateway_dns_answer_correct 1 when the server's answer for the hostname is exactly the expected address set, else 0.
# TYPE gateway_dns_answer_correct gauge
gateway_dns_answer_correct{hostname="app.sbbh.cloud",name="",namespace="",server="10.11.80.82:53",source="static"} 1
gateway_dns_answer_correct{hostname="int.sbbh.cloud",name="internal-app",namespace="apps",server="10.11.80.82:53",source="httproute"} 0
# HELP gateway_dns_answer_info 1, with the addresses the server answered and the addresses expected (sorted, comma-separated).
# TYPE gateway_dns_answer_info gauge
gateway_dns_answer_info{answer="10.11.80.80",expected="10.11.80.80",hostname="app.sbbh.cloud",name="",namespace="",server="10.11.80.82:53",source="static"} 1
gateway_dns_answer_info{answer="10.11.80.80",expected="10.11.80.81",hostname="int.sbbh.cloud",name="internal-app",namespace="apps",server="10.11.80.82:53",source="httproute"} 1
# HELP gateway_dns_answer_result 1 for the classified result of the lookup: correct, wrong_address, missing_address, extra_address, nxdomain, servfail, refused, timeout, error, route_not_accepted (the answer sends clients to a Gateway that did not accept the route), not_started (the lookup never ran: lbprobe was overloaded).
# TYPE gateway_dns_answer_result gauge
gateway_dns_answer_result{hostname="app.sbbh.cloud",name="",namespace="",result="correct",server="10.11.80.82:53",source="static"} 1
gateway_dns_answer_result{hostname="int.sbbh.cloud",name="internal-app",namespace="apps",result="wrong_address",server="10.11.80.82:53",source="httproute"} 1
# HELP gateway_tls_cert_not_after_timestamp_seconds The leaf certificate's notAfter as a Unix timestamp; absent when no certificate was received.
# TYPE gateway_tls_cert_not_after_timestamp_seconds gauge
gateway_tls_cert_not_after_timestamp_seconds{hostname="app.sbbh.cloud",ip="10.11.80.80",name="",namespace="",port="443",source="static"} 1.9e+09
# HELP gateway_tls_handshake_success 1 when the TLS handshake with SNI = hostname completed on the address, else 0.
# TYPE gateway_tls_handshake_success gauge
gateway_tls_handshake_success{hostname="app.sbbh.cloud",ip="10.11.80.80",name="",namespace="",port="443",source="static"} 1
# HELP loadbalancer_arp_failure_info 1 when the ARP probe of the IP (NDP for IPv6) failed, with the reason (timeout, permission_denied, error).
# TYPE loadbalancer_arp_failure_info gauge
loadbalancer_arp_failure_info{interface="eth0",ip="10.11.80.81",namespace="kube-system",reason="timeout",service="internal"} 1
# HELP loadbalancer_arp_holder_match 1 when the lease holder's MAC (from ARP of its InternalIP on the interface) alone answered ARP for the IP on the interface, else 0; absent when the holder's MAC is unknown there.
# TYPE loadbalancer_arp_holder_match gauge
loadbalancer_arp_holder_match{interface="eth0",ip="10.11.80.80",namespace="kube-system",service="cilium-gateway-external"} 0
# HELP loadbalancer_arp_reachable 1 when at least one host answered an ARP who-has for the IP on the interface in this scrape, else 0.
# TYPE loadbalancer_arp_reachable gauge
loadbalancer_arp_reachable{interface="eth0",ip="10.11.80.80",namespace="kube-system",service="cilium-gateway-external"} 1
loadbalancer_arp_reachable{interface="eth0",ip="10.11.80.81",namespace="kube-system",service="internal"} 0
loadbalancer_arp_reachable{interface="eth1",ip="10.11.80.80",namespace="kube-system",service="cilium-gateway-external"} 1
loadbalancer_arp_reachable{interface="eth1",ip="10.11.80.81",namespace="kube-system",service="internal"} 1
# HELP loadbalancer_arp_responder_info 1 for every MAC address that answered ARP for the IP, with the node it belongs to when known.
# TYPE loadbalancer_arp_responder_info gauge
loadbalancer_arp_responder_info{interface="eth0",ip="10.11.80.80",mac="02:00:00:00:00:11",namespace="kube-system",node="k8s-nuc",service="cilium-gateway-external"} 1
loadbalancer_arp_responder_info{interface="eth0",ip="10.11.80.80",mac="02:00:00:00:00:12",namespace="kube-system",node="k8s-opti-01",service="cilium-gateway-external"} 1
loadbalancer_arp_responder_info{interface="eth1",ip="10.11.80.80",mac="02:00:00:00:00:11",namespace="kube-system",node="",service="cilium-gateway-external"} 1
loadbalancer_arp_responder_info{interface="eth1",ip="10.11.80.81",mac="02:00:00:00:00:13",namespace="kube-system",node="",service="internal"} 1
# HELP loadbalancer_arp_responders How many distinct MAC addresses answered ARP for the IP on the interface; more than 1 is a split brain.
# TYPE loadbalancer_arp_responders gauge
loadbalancer_arp_responders{interface="eth0",ip="10.11.80.80",namespace="kube-system",service="cilium-gateway-external"} 2
loadbalancer_arp_responders{interface="eth0",ip="10.11.80.81",namespace="kube-system",service="internal"} 0
loadbalancer_arp_responders{interface="eth1",ip="10.11.80.80",namespace="kube-system",service="cilium-gateway-external"} 1
loadbalancer_arp_responders{interface="eth1",ip="10.11.80.81",namespace="kube-system",service="internal"} 1
# HELP loadbalancer_route_info 1, with the interface and next hop (empty when on-link) the prober's host routes the IP through.
# TYPE loadbalancer_route_info gauge
loadbalancer_route_info{gateway="",interface="eth0",ip="10.11.80.80",namespace="kube-system",service="cilium-gateway-external"} 1
loadbalancer_route_info{gateway="100.100.100.100",interface="tailscale0",ip="10.11.80.81",namespace="kube-system",service="internal"} 1
# HELP loadbalancer_route_ok 1 when the route to the IP uses an interface matching --probe.route.expect-interface (or any route, when no pattern is set), else 0.
# TYPE loadbalancer_route_ok gauge
loadbalancer_route_ok{ip="10.11.80.80",namespace="kube-system",service="cilium-gateway-external"} 1
loadbalancer_route_ok{ip="10.11.80.81",namespace="kube-system",service="internal"} 0
# HELP loadbalancer_icmp_failure_info 1 for an IP whose ICMP probe failed, with the reason (timeout, permission_denied, ...).
# TYPE loadbalancer_icmp_failure_info gauge
loadbalancer_icmp_failure_info{ip="10.11.80.81",namespace="kube-system",reason="permission_denied",service="internal"} 1
# HELP loadbalancer_icmp_reachable 1 when the IP answered an ICMP echo in this scrape, else 0 (only for targets with icmp enabled).
# TYPE loadbalancer_icmp_reachable gauge
loadbalancer_icmp_reachable{ip="10.11.80.80",namespace="kube-system",service="cilium-gateway-external"} 1
loadbalancer_icmp_reachable{ip="10.11.80.81",namespace="kube-system",service="internal"} 0
# HELP loadbalancer_icmp_rtt_seconds Round-trip time of the ICMP echo; absent when there was no reply.
# TYPE loadbalancer_icmp_rtt_seconds gauge
loadbalancer_icmp_rtt_seconds{ip="10.11.80.80",namespace="kube-system",service="cilium-gateway-external"} 0.0005
# HELP loadbalancer_port_reachable 1 when the port answered the probe in this scrape (TCP connect, or a DNS reply on UDP), else 0.
# TYPE loadbalancer_port_reachable gauge
loadbalancer_port_reachable{ip="10.11.80.80",namespace="kube-system",port="443",protocol="TCP",service="cilium-gateway-external"} 1
loadbalancer_port_reachable{ip="10.11.80.80",namespace="kube-system",port="80",protocol="TCP",service="cilium-gateway-external"} 0
loadbalancer_port_reachable{ip="10.11.80.81",namespace="kube-system",port="443",protocol="TCP",service="internal"} 0
loadbalancer_port_reachable{ip="10.11.80.81",namespace="kube-system",port="53",protocol="UDP",service="internal"} 0
# HELP loadbalancer_probe_failure_info 1 for a port whose probe failed, with the reason (refused, timeout, unreachable, permission_denied, error, not_started: the probe never ran, lbprobe was overloaded).
# TYPE loadbalancer_probe_failure_info gauge
loadbalancer_probe_failure_info{ip="10.11.80.80",namespace="kube-system",port="80",protocol="TCP",reason="refused",service="cilium-gateway-external"} 1
loadbalancer_probe_failure_info{ip="10.11.80.81",namespace="kube-system",port="443",protocol="TCP",reason="timeout",service="internal"} 1
loadbalancer_probe_failure_info{ip="10.11.80.81",namespace="kube-system",port="53",protocol="UDP",reason="timeout",service="internal"} 1
# HELP loadbalancer_reachable 1 when at least one probed port of the load balancer IP answered in this scrape (ICMP when no port is probed), else 0.
# TYPE loadbalancer_reachable gauge
loadbalancer_reachable{ip="10.11.80.80",namespace="kube-system",service="cilium-gateway-external"} 1
loadbalancer_reachable{ip="10.11.80.81",namespace="kube-system",service="internal"} 0
# HELP gateway_listener_failure_info 1 for a Gateway listener whose probe failed, with the reason.
# TYPE gateway_listener_failure_info gauge
gateway_listener_failure_info{address="10.11.80.81",gateway="internal",listener="http",namespace="gateway",port="80",reason="refused"} 1
# HELP gateway_listener_reachable 1 when a TCP connect to the Gateway listener's port on the address succeeded in this scrape, else 0 (UDP listeners are not probed).
# TYPE gateway_listener_reachable gauge
gateway_listener_reachable{address="10.11.80.80",gateway="external",listener="https",namespace="gateway",port="443"} 1
gateway_listener_reachable{address="10.11.80.81",gateway="internal",listener="http",namespace="gateway",port="80"} 0
# HELP lbprobe_targets How many targets this scrape probed, by kind (loadbalancer, ip, port, hostname, dns_check, tls_check, gateway_listener).
# TYPE lbprobe_targets gauge
lbprobe_targets{kind="dns_check"} 2
lbprobe_targets{kind="gateway_listener"} 2
lbprobe_targets{kind="hostname"} 2
lbprobe_targets{kind="ip"} 2
lbprobe_targets{kind="loadbalancer"} 2
lbprobe_targets{kind="port"} 4
lbprobe_targets{kind="tls_check"} 1
`
	names := []string{
		"gateway_dns_answer_correct", "gateway_dns_answer_info", "gateway_dns_answer_result",
		"gateway_tls_cert_not_after_timestamp_seconds", "gateway_tls_handshake_success",
		"loadbalancer_icmp_failure_info", "loadbalancer_icmp_reachable", "loadbalancer_icmp_rtt_seconds",
		"loadbalancer_port_reachable", "loadbalancer_probe_failure_info", "loadbalancer_reachable", "lbprobe_targets",
		"gateway_listener_reachable", "gateway_listener_failure_info",
		"loadbalancer_arp_reachable", "loadbalancer_arp_responders", "loadbalancer_arp_responder_info", "loadbalancer_arp_failure_info",
		"loadbalancer_arp_holder_match",
		"loadbalancer_route_info", "loadbalancer_route_ok",
	}
	if err := testutil.CollectAndCompare(r, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	// Every series passes the registry's consistency checks (no duplicates).
	if n, err := testutil.GatherAndCount(registryWith(t, r)); err != nil || n == 0 {
		t.Errorf("gather: %d series, err %v", n, err)
	}
}

func registryWith(t *testing.T, r *RoundResult) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(r); err != nil {
		t.Fatal(err)
	}
	return reg
}

// A node cannot ARP a VIP it holds: in DaemonSet mode, lbprobe on the holder
// skips that probe and says so, and never reports a false failure.
func TestARPSkippedOnHolder(t *testing.T) {
	vip := netip.MustParseAddr("10.11.80.80")
	node := netip.MustParseAddr("10.11.80.11")
	mac := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x11}
	p := tableProber{arp: map[string]probe.ARPResult{
		"eth0 10.11.80.80": {Result: probe.Result{Success: true}, MACs: []net.HardwareAddr{mac}},
		"eth0 10.11.80.11": {Result: probe.Result{Success: true}, MACs: []net.HardwareAddr{mac}},
	}}
	targets := Targets{
		LoadBalancers: []LoadBalancer{{Namespace: "gateway", Service: "external", IPs: []netip.Addr{vip}, Holder: "k8s-nuc",
			Ports: []Port{{Port: 443, Protocol: "TCP", Probe: ProbeNone}}}},
		Nodes: []Node{{Name: "k8s-nuc", IP: node}},
	}
	tests := []struct {
		name, nodeName, want string
	}{
		{"on the holder", "k8s-nuc", `
# HELP loadbalancer_arp_skipped 1 when the ARP probe of the IP was not run, with the reason: holder_is_self (lbprobe runs on the node that holds the VIP, which cannot ARP its own VIP).
# TYPE loadbalancer_arp_skipped gauge
loadbalancer_arp_skipped{interface="eth0",ip="10.11.80.80",namespace="gateway",reason="holder_is_self",service="external"} 1
`},
		{"on another node", "k8s-opti-01", `
# HELP loadbalancer_arp_holder_match 1 when the lease holder's MAC (from ARP of its InternalIP on the interface) alone answered ARP for the IP on the interface, else 0; absent when the holder's MAC is unknown there.
# TYPE loadbalancer_arp_holder_match gauge
loadbalancer_arp_holder_match{interface="eth0",ip="10.11.80.80",namespace="gateway",service="external"} 1
# HELP loadbalancer_arp_reachable 1 when at least one host answered an ARP who-has for the IP on the interface in this scrape, else 0.
# TYPE loadbalancer_arp_reachable gauge
loadbalancer_arp_reachable{interface="eth0",ip="10.11.80.80",namespace="gateway",service="external"} 1
`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := NewEngine(Config{Concurrency: 2, Probers: p.probers(), Options: Options{
				ProbeTimeout: time.Second, ARPInterfaces: regexp.MustCompile(`^eth0$`), NodeName: tc.nodeName,
			}}, SourceFunc(func() Targets { return targets }))
			r := e.Probe(t.Context(), time.Minute)
			err := testutil.CollectAndCompare(r, strings.NewReader(tc.want),
				"loadbalancer_arp_skipped", "loadbalancer_arp_holder_match", "loadbalancer_arp_reachable")
			if err != nil {
				t.Error(err)
			}
		})
	}
}
