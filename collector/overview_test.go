package collector

import (
	"context"
	"net/netip"
	"reflect"
	"syscall"
	"testing"
	"time"

	"github.com/lbprobe/lbprobe/probe"
)

func TestOverview(t *testing.T) {
	ip1, ip2, ip3 := netip.MustParseAddr("10.11.80.80"), netip.MustParseAddr("10.11.80.81"), netip.MustParseAddr("10.11.80.83")
	ok := probe.Result{Success: true, Duration: 2 * time.Millisecond}
	refused := probe.Result{Duration: time.Millisecond, Reason: probe.ReasonRefused, Err: syscall.ECONNREFUSED}
	p := tableProber{
		tcp: map[netip.AddrPort]probe.Result{
			netip.AddrPortFrom(ip1, 443): ok,
			netip.AddrPortFrom(ip1, 80):  refused,
			netip.AddrPortFrom(ip2, 443): ok,
		},
		icmp: map[netip.Addr]probe.ICMPResult{ip2: {Result: ok, RTT: 300 * time.Microsecond}},
		dns: map[string]probe.DNSResult{
			"10.11.80.82:53 app.sbbh.cloud":      {Result: ok, Verdict: probe.DNSCorrect, Rcode: "NOERROR", Addresses: []netip.Addr{ip2, ip1}},
			"10.11.80.82:53 web.apps.sbbh.cloud": {Result: ok, Verdict: probe.DNSCorrect, Rcode: "NOERROR", Addresses: []netip.Addr{ip2}},
			"10.11.80.82:53 gone.sbbh.cloud":     {Result: probe.Result{Reason: probe.ReasonNXDomain}, Verdict: probe.DNSNXDomain, Rcode: "NXDOMAIN"},
		},
		tls: map[netip.AddrPort]probe.TLSResult{
			netip.AddrPortFrom(ip1, 443): {Result: probe.Result{Reason: probe.ReasonCertExpired}, HandshakeOK: true, NotAfter: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
		},
	}
	server := []string{"10.11.80.82:53"}
	targets := Targets{
		LoadBalancers: []LoadBalancer{
			{Namespace: "kube-system", Service: "external", IPs: []netip.Addr{ip1},
				Ports: []Port{{Port: 80, Protocol: "TCP", Probe: ProbeTCP}, {Port: 443, Protocol: "TCP", Probe: ProbeTCP}}},
			{Namespace: "apps", Service: "web", IPs: []netip.Addr{ip2}, ICMP: true,
				Ports: []Port{{Port: 443, Protocol: "TCP", Probe: ProbeTCP}}},
			{Namespace: "apps", Service: "unprobed", IPs: []netip.Addr{ip3},
				Ports: []Port{{Port: 9000, Protocol: "TCP", Probe: ProbeNone}}},
		},
		Hostnames: []Hostname{
			{Hostname: "app.sbbh.cloud", Expect: []netip.Addr{ip1, ip2}, Servers: server, Source: "static",
				TLS: []TLSCheck{{Port: 443, IPs: []netip.Addr{ip1}}}},
			{Hostname: "web.apps.sbbh.cloud", Expect: []netip.Addr{ip2}, Servers: server, Source: "service", Namespace: "apps", Name: "web"},
			{Hostname: "gone.sbbh.cloud", Expect: []netip.Addr{ip1}, Servers: server, Source: "httproute", Namespace: "apps", Name: "gone"},
		},
		GatewayListeners: []GatewayListener{
			{Namespace: "gw", Gateway: "internal", Listener: "dns", Address: ip2, Port: 53, Protocol: "UDP"},
		},
	}
	e := NewEngine(Config{Concurrency: 4, Probers: p.probers(), Options: Options{ProbeTimeout: time.Second}},
		SourceFunc(func() Targets { return targets }))
	o := e.Probe(context.Background(), time.Minute).Overview()

	wantLB := []LoadBalancerRow{
		{Row: Row{OK: false, Group: "kube-system/external", Target: "10.11.80.80", Detail: "80/TCP refused (1ms), 443/TCP ok (2ms)",
			Link: "/probe?target=10.11.80.80&debug=true"}, Namespace: "kube-system", Service: "external", IP: ip1},
		{Row: Row{OK: true, Group: "apps/web", Target: "10.11.80.81", Detail: "443/TCP ok (2ms), icmp ok 300µs",
			Link: "/probe?target=10.11.80.81&debug=true"}, Namespace: "apps", Service: "web", IP: ip2,
			ServiceDNS: "web.apps.sbbh.cloud: correct"},
		// No probe ran: not known to work.
		{Row: Row{OK: false, Group: "apps/unprobed", Target: "10.11.80.83", Detail: "nothing probed",
			Link: "/probe?target=10.11.80.83&debug=true"}, Namespace: "apps", Service: "unprobed", IP: ip3},
	}
	if !reflect.DeepEqual(o.LoadBalancers, wantLB) {
		t.Errorf("load balancer rows:\n%+v\nwant\n%+v", o.LoadBalancers, wantLB)
	}
	wantListeners := []Row{{OK: true, Group: "gw/internal", Target: "10.11.80.81:53", Detail: "dns (UDP): UDP: not probed"}}
	if !reflect.DeepEqual(o.Listeners, wantListeners) {
		t.Errorf("listener rows:\n%+v\nwant\n%+v", o.Listeners, wantListeners)
	}
	wantHosts := []Row{
		{OK: true, Group: "app.sbbh.cloud", Target: "DNS 10.11.80.82:53", Detail: "correct",
			Answer: "10.11.80.80,10.11.80.81", Expected: "10.11.80.80,10.11.80.81", Link: "/probe?target=app.sbbh.cloud&debug=true"},
		{OK: false, Group: "app.sbbh.cloud", Target: "TLS 10.11.80.80:443", Detail: "TLS cert_expired, certificate valid until 2026-01-02",
			Link: "/probe?target=app.sbbh.cloud&debug=true"},
		{OK: true, Group: "web.apps.sbbh.cloud (service apps/web)", Target: "DNS 10.11.80.82:53", Detail: "correct",
			Answer: "10.11.80.81", Expected: "10.11.80.81", Link: "/probe?target=web.apps.sbbh.cloud&debug=true"},
		{OK: false, Group: "gone.sbbh.cloud (httproute apps/gone)", Target: "DNS 10.11.80.82:53", Detail: "nxdomain (NXDOMAIN)",
			Expected: "10.11.80.80", Link: "/probe?target=gone.sbbh.cloud&debug=true"},
	}
	if !reflect.DeepEqual(o.Hostnames, wantHosts) {
		t.Errorf("hostname rows:\n%+v\nwant\n%+v", o.Hostnames, wantHosts)
	}

	SortRows(o.LoadBalancers)
	var order []string
	for _, r := range o.LoadBalancers {
		order = append(order, r.Group)
	}
	if want := []string{"apps/unprobed", "kube-system/external", "apps/web"}; !reflect.DeepEqual(order, want) {
		t.Errorf("sorted rows %v, want failures first, then by group: %v", order, want)
	}
}
