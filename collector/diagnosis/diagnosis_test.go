package diagnosis

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lbprobe/lbprobe/collector"
	"github.com/lbprobe/lbprobe/collector/kube"
	"github.com/lbprobe/lbprobe/probe"
)

var (
	vip  = netip.MustParseAddr("10.11.80.81")
	mac1 = net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	mac2 = net.HardwareAddr{0x02, 0, 0, 0, 0, 2}
)

func ptr[T any](v T) *T { return &v }

// healthyService is gateway/cilium-gateway-internal as the seed has it:
// one policy, a live lease held by a Ready node, ready backends.
func healthyService() *kube.ServiceState {
	return &kube.ServiceState{
		Namespace: "gateway", Name: "cilium-gateway-internal",
		IPs: []netip.Addr{vip}, Assigned: true,
		Policies: 1, PolicyNames: []string{"l2-policy"}, PolicyNodes: 3,
		Lease: &kube.LeaseState{
			Name: "cilium-l2announce-gateway-cilium-gateway-internal", Holder: "k8s-opti-02",
			RenewAge: 2 * time.Second, Duration: 15 * time.Second, Live: true, HolderReady: true,
		},
		PerIP:    []kube.IPState{{IP: vip, Announced: true, Expected: true, Holder: "k8s-opti-02"}},
		Backends: 2,
	}
}

// healthyIP is a round's status of the IP seen from the LAN host: the
// holder alone answers ARP on eth0, the route is on eth0, 443 answers.
func healthyIP() *collector.IPStatus {
	return &collector.IPStatus{
		IP: vip, Reachable: true, Probed: true,
		Ports: []collector.PortStatus{{Port: 443, Protocol: "TCP", Kind: "tcp", Result: probe.Result{Success: true}}},
		ARP: []collector.ARPStatus{{
			ARPResult: probe.ARPResult{Result: probe.Result{Success: true}, Interface: "eth0", MACs: []net.HardwareAddr{mac1}},
			Nodes:     []string{"k8s-opti-02"}, HolderMatch: ptr(true),
		}},
		Route: &collector.RouteStatus{RouteResult: probe.RouteResult{Interface: "eth0"}, Result: probe.Result{Success: true}},
	}
}

var arpMode = Mode{ARP: true, CiliumNamespace: "kube-system"}

func TestLoadBalancerCauses(t *testing.T) {
	tests := []struct {
		name string
		// mutate breaks the healthy state; noIP drops the round's IP status.
		mutate func(*kube.ServiceState, *collector.IPStatus)
		noIP   bool
		mode   Mode // arpMode when zero
		cause  string
		// fix must contain each of these (the real names filled in).
		fix []string
	}{
		{
			name:   "healthy",
			mutate: func(*kube.ServiceState, *collector.IPStatus) {},
			cause:  CauseOK,
		},
		{
			name: "no IP",
			mutate: func(s *kube.ServiceState, _ *collector.IPStatus) {
				s.IPs, s.Assigned, s.PerIP = nil, false, nil
			},
			noIP:  true,
			cause: CauseIPPending,
			fix:   []string{"gateway/cilium-gateway-internal", "ciliumloadbalancerippools", "kubectl -n gateway describe service cilium-gateway-internal"},
		},
		{
			name: "requested IP taken",
			mutate: func(s *kube.ServiceState, _ *collector.IPStatus) {
				s.IPs, s.Assigned, s.PerIP = nil, false, nil
				s.Requested = []netip.Addr{netip.MustParseAddr("10.11.80.82")}
				s.IPAM = "False already_allocated"
			},
			noIP:  true,
			cause: CauseIPPending,
			fix:   []string{"asks for 10.11.80.82", "lbipam.cilium.io/ips"},
		},
		{
			name: "another IP than the requested one",
			mutate: func(s *kube.ServiceState, ip *collector.IPStatus) {
				s.Requested = []netip.Addr{netip.MustParseAddr("10.11.80.90")}
			},
			cause: CauseIPNotRequestedOne,
			fix:   []string{"has 10.11.80.81 but asks for 10.11.80.90", "free 10.11.80.90"},
		},
		{
			name: "no policy",
			mutate: func(s *kube.ServiceState, ip *collector.IPStatus) {
				s.Policies, s.PolicyNames, s.Lease = 0, nil, nil
			},
			cause: CauseNoPolicy,
			fix:   []string{"no L2 policy selects gateway/cilium-gateway-internal", "kubectl -n kube-system delete lease cilium-l2announce-gateway-cilium-gateway-internal"},
		},
		{
			name: "policy selects no node",
			mutate: func(s *kube.ServiceState, ip *collector.IPStatus) {
				s.PolicyNodes = 0
			},
			cause: CausePolicyNoNode,
			fix:   []string{"nodeSelector of l2-policy"},
		},
		{
			name: "policy interfaces match none of the node's",
			mutate: func(s *kube.ServiceState, ip *collector.IPStatus) {
				s.InterfaceMatch, s.Node, s.Interfaces = ptr(false), "k8s-nuc", []string{"eno1"}
			},
			cause: CausePolicyInterfaceMismatch,
			fix:   []string{"k8s-nuc", "eno1", "^eno1$"},
		},
		{
			name: "no lease",
			mutate: func(s *kube.ServiceState, ip *collector.IPStatus) {
				s.Lease = nil
			},
			cause: CauseNotAnnounced,
			fix:   []string{"no node holds the lease of gateway/cilium-gateway-internal"},
		},
		{
			name: "lease expired",
			mutate: func(s *kube.ServiceState, ip *collector.IPStatus) {
				s.Lease.RenewAge, s.Lease.Expired, s.Lease.Live = 10*time.Minute, true, false
			},
			cause: CauseLeaseExpired,
			fix:   []string{"last renewed 10m0s ago by k8s-opti-02", "kubectl -n kube-system delete lease cilium-l2announce-gateway-cilium-gateway-internal", "re-check"},
		},
		{
			name: "holder not ready",
			mutate: func(s *kube.ServiceState, ip *collector.IPStatus) {
				s.Lease.HolderReady = false
			},
			mode: Mode{ARP: true, CiliumNamespace: "cilium"}, cause: CauseHolderNotReady,
			fix: []string{"k8s-opti-02, which is NotReady", "kubectl -n cilium delete lease cilium-l2announce-gateway-cilium-gateway-internal"},
		},
		{
			name: "nobody answers ARP",
			mutate: func(s *kube.ServiceState, ip *collector.IPStatus) {
				ip.ARP[0].MACs, ip.ARP[0].Nodes, ip.ARP[0].HolderMatch = nil, nil, ptr(false)
				ip.ARP[0].Result = probe.Result{Reason: probe.ReasonTimeout}
			},
			cause: CauseHolderSilent,
			fix:   []string{"nobody answers ARP for 10.11.80.81 on eth0", "k8s-opti-02"},
		},
		{
			name: "another node answers ARP",
			mutate: func(s *kube.ServiceState, ip *collector.IPStatus) {
				ip.ARP[0].MACs, ip.ARP[0].Nodes, ip.ARP[0].HolderMatch = []net.HardwareAddr{mac2}, []string{"k8s-nuc"}, ptr(false)
			},
			cause: CauseHolderSilent,
			fix:   []string{"k8s-opti-02 should announce", "k8s-nuc answers ARP"},
		},
		{
			name: "two MACs answer",
			mutate: func(s *kube.ServiceState, ip *collector.IPStatus) {
				ip.ARP[0].MACs, ip.ARP[0].Nodes, ip.ARP[0].HolderMatch = []net.HardwareAddr{mac1, mac2}, []string{"k8s-opti-02", ""}, ptr(false)
			},
			cause: CauseSplitBrain,
			fix:   []string{"k8s-opti-02 and 02:00:00:00:00:02 answer ARP for 10.11.80.81"},
		},
		{
			name: "shared IP, leases on two nodes",
			mutate: func(s *kube.ServiceState, ip *collector.IPStatus) {
				s.PerIP[0].SharedHolders = []string{"k8s-nuc", "k8s-opti-02"}
			},
			cause: CauseSplitBrain,
			fix:   []string{"shares 10.11.80.81", "Give each Service its own IP"},
		},
		{
			name: "route through a tunnel",
			mutate: func(s *kube.ServiceState, ip *collector.IPStatus) {
				ip.Route = &collector.RouteStatus{RouteResult: probe.RouteResult{Interface: "tailscale0"}, Result: probe.Result{Reason: probe.ReasonWrongRoute}}
			},
			cause: CauseRouteViaTunnel,
			fix:   []string{"routes 10.11.80.81 through tailscale0"},
		},
		{
			name: "no route",
			mutate: func(s *kube.ServiceState, ip *collector.IPStatus) {
				ip.Route = &collector.RouteStatus{Result: probe.Result{Reason: probe.ReasonUnreachable, Err: errors.New("network is unreachable")}}
			},
			cause: CauseNoRoute,
			fix:   []string{"ip route get 10.11.80.81"},
		},
		{
			name: "no ready backends",
			mutate: func(s *kube.ServiceState, ip *collector.IPStatus) {
				s.Backends = 0
			},
			cause: CauseNoReadyBackends,
			fix:   []string{"kubectl -n gateway get endpointslices -l kubernetes.io/service-name=cilium-gateway-internal"},
		},
		{
			name: "port refused",
			mutate: func(s *kube.ServiceState, ip *collector.IPStatus) {
				ip.Ports[0].Result = probe.Result{Reason: probe.ReasonRefused}
				ip.Reachable = false
			},
			cause: CausePortRefused,
			fix:   []string{"443/TCP refused of 10.11.80.81"},
		},
		{
			name: "first failure wins: no lease and a refused port",
			mutate: func(s *kube.ServiceState, ip *collector.IPStatus) {
				s.Lease = nil
				ip.Ports[0].Result = probe.Result{Reason: probe.ReasonTimeout}
				ip.Reachable = false
			},
			cause: CauseNotAnnounced,
		},
	}
	lb := collector.LoadBalancer{Namespace: "gateway", Service: "cilium-gateway-internal"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, ip := healthyService(), healthyIP()
			tt.mutate(st, ip)
			if tt.noIP {
				ip = nil
			}
			mode := tt.mode
			if mode == (Mode{}) {
				mode = arpMode
			}
			checkVerdict(t, LoadBalancer(lb, st, ip, mode), tt.cause, tt.fix)
		})
	}
}

// metallbService is apps/web announced by MetalLB: pool lan, one
// L2Advertisement from three nodes, the speaker on k8s-opti-02.
func metallbService() *kube.ServiceState {
	s := healthyService()
	s.Namespace, s.Name, s.Policies, s.PolicyNames, s.Lease = "apps", "web", -1, nil, nil
	s.Announcer = &kube.Announcer{Implementation: kube.ImplMetalLB, Node: "k8s-opti-02", Source: "servicel2status metallb-system/l2-abcde", NodeReady: true}
	s.MetalLB = &kube.MetalLBState{Pool: "lan", Advertisements: []string{"metallb-system/lan"}, AdvertisedNodes: 3, Speakers: []string{"k8s-opti-02"}}
	return s
}

// kubeVIPService is apps/web announced by kube-vip with service election.
func kubeVIPService() *kube.ServiceState {
	s := healthyService()
	s.Namespace, s.Name, s.Policies, s.PolicyNames, s.Lease = "apps", "web", -1, nil, nil
	s.Announcer = &kube.Announcer{Implementation: kube.ImplKubeVIP, Node: "k8s-opti-02", Source: "lease kubevip-web", Lease: "kubevip-web", Holder: "k8s-opti-02", NodeReady: true}
	return s
}

// The chains of MetalLB's and kube-vip's Services: the same causes, their
// own evidence and fixes.
func TestOtherImplementationsCauses(t *testing.T) {
	tests := []struct {
		name   string
		svc    func() *kube.ServiceState
		mutate func(*kube.ServiceState, *collector.IPStatus)
		cause  string
		fix    []string
	}{
		{"metallb healthy", metallbService, func(*kube.ServiceState, *collector.IPStatus) {}, CauseOK, nil},
		{"metallb: no advertisement", metallbService, func(s *kube.ServiceState, _ *collector.IPStatus) {
			s.MetalLB.Advertisements, s.MetalLB.AdvertisedNodes = nil, 0
		}, CauseNoPolicy, []string{"no L2Advertisement announces the IPAddressPool lan", "apps/web"}},
		{"metallb: advertised from no node", metallbService, func(s *kube.ServiceState, _ *collector.IPStatus) {
			s.MetalLB.AdvertisedNodes = 0
		}, CausePolicyNoNode, []string{"nodeSelectors of metallb-system/lan"}},
		{"metallb: no speaker", metallbService, func(s *kube.ServiceState, _ *collector.IPStatus) {
			s.Announcer.Node, s.MetalLB.Speakers = "", nil
		}, CauseNotAnnounced, []string{"no MetalLB speaker announces apps/web", "component=speaker"}},
		{"metallb: two speakers", metallbService, func(s *kube.ServiceState, _ *collector.IPStatus) {
			s.MetalLB.Speakers = []string{"k8s-nuc", "k8s-opti-02"}
		}, CauseSplitBrain, []string{"k8s-nuc and k8s-opti-02", "memberlist"}},
		{"metallb: speaker's node NotReady", metallbService, func(s *kube.ServiceState, _ *collector.IPStatus) {
			s.Announcer.NodeReady = false
		}, CauseHolderNotReady, []string{"spec.nodeName=k8s-opti-02"}},
		{"metallb: speaker silent", metallbService, func(_ *kube.ServiceState, ip *collector.IPStatus) {
			ip.ARP[0].MACs, ip.ARP[0].Nodes, ip.ARP[0].HolderMatch = nil, nil, ptr(false)
			ip.ARP[0].Result = probe.Result{Reason: probe.ReasonTimeout}
		}, CauseHolderSilent, []string{"k8s-opti-02 should announce it", "restart the MetalLB speaker on k8s-opti-02"}},
		{"IPv6: both solicitations answered", healthyService, func(_ *kube.ServiceState, ip *collector.IPStatus) {
			ip.ARP[0].NDP = &probe.NDPModes{Multicast: []net.HardwareAddr{mac1}, UnicastAsked: []net.HardwareAddr{mac1}, Unicast: []net.HardwareAddr{mac1}}
		}, CauseOK, nil},
		{"IPv6: multicast solicitations unanswered", healthyService, func(_ *kube.ServiceState, ip *collector.IPStatus) {
			ip.ARP[0].NDP = &probe.NDPModes{UnicastAsked: []net.HardwareAddr{mac1}, Unicast: []net.HardwareAddr{mac1}}
		}, CauseHolderSilent, []string{"answers only unicast solicitations", "cilium#41678"}},
		{"IPv6: unicast solicitations unanswered", healthyService, func(_ *kube.ServiceState, ip *collector.IPStatus) {
			ip.ARP[0].NDP = &probe.NDPModes{Multicast: []net.HardwareAddr{mac1}, UnicastAsked: []net.HardwareAddr{mac1}}
		}, CauseHolderSilent, []string{"answers only multicast solicitations", "neighbor unreachability detection"}},
		{"kube-vip healthy", kubeVIPService, func(*kube.ServiceState, *collector.IPStatus) {}, CauseOK, nil},
		{"kube-vip: lease expired", kubeVIPService, func(s *kube.ServiceState, _ *collector.IPStatus) {
			s.Announcer.Node, s.Announcer.Expired = "", true
		}, CauseLeaseExpired, []string{"kube-vip's lease kubevip-web", "kubectl -n kube-system delete lease kubevip-web"}},
		{"kube-vip: nobody took it", kubeVIPService, func(s *kube.ServiceState, _ *collector.IPStatus) {
			s.Announcer = &kube.Announcer{Implementation: kube.ImplKubeVIP}
		}, CauseNotAnnounced, []string{"no kube-vip instance took apps/web"}},
		{"kube-vip: another MAC answers", kubeVIPService, func(_ *kube.ServiceState, ip *collector.IPStatus) {
			ip.ARP[0].MACs, ip.ARP[0].Nodes, ip.ARP[0].HolderMatch = []net.HardwareAddr{mac2}, []string{"k8s-nuc"}, ptr(false)
		}, CauseHolderSilent, []string{"k8s-opti-02 should announce apps/web but k8s-nuc answers", "restart kube-vip on k8s-opti-02", "delete lease kubevip-web"}},
		{"kube-vip: two answer", kubeVIPService, func(_ *kube.ServiceState, ip *collector.IPStatus) {
			ip.ARP[0].MACs, ip.ARP[0].Nodes, ip.ARP[0].HolderMatch = []net.HardwareAddr{mac1, mac2}, []string{"k8s-opti-02", "k8s-nuc"}, ptr(false)
		}, CauseSplitBrain, []string{"k8s-opti-02 and k8s-nuc answer ARP"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, ip := tt.svc(), healthyIP()
			lb := collector.LoadBalancer{Namespace: st.Namespace, Service: st.Name}
			tt.mutate(st, ip)
			checkVerdict(t, LoadBalancer(lb, st, ip, arpMode), tt.cause, tt.fix)
		})
	}
}

// A probe that did not run (no slot before the deadline, no permission)
// is no evidence: its step is unknown, never failed.
func TestNotProbedIsUnknown(t *testing.T) {
	lb := collector.LoadBalancer{Namespace: "gateway", Service: "cilium-gateway-internal"}
	for _, tt := range []struct {
		name   string
		mutate func(*collector.IPStatus)
		step   string
	}{
		{"ARP not started", func(ip *collector.IPStatus) {
			ip.ARP[0].MACs, ip.ARP[0].Nodes, ip.ARP[0].HolderMatch = nil, nil, nil
			ip.ARP[0].Result = probe.Result{Reason: probe.ReasonNotStarted}
		}, StepARP},
		{"ARP without CAP_NET_RAW", func(ip *collector.IPStatus) {
			ip.ARP[0].MACs, ip.ARP[0].Nodes, ip.ARP[0].HolderMatch = nil, nil, nil
			ip.ARP[0].Result = probe.Result{Reason: probe.ReasonPermission}
		}, StepARP},
		{"port not started", func(ip *collector.IPStatus) {
			ip.Ports[0].Result, ip.Reachable = probe.Result{Reason: probe.ReasonNotStarted}, false
		}, StepPorts},
		{"route not started", func(ip *collector.IPStatus) {
			ip.Route.Result = probe.Result{Reason: probe.ReasonNotStarted}
		}, StepRoute},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ip := healthyIP()
			tt.mutate(ip)
			d := LoadBalancer(lb, healthyService(), ip, arpMode)
			if d.Cause != CauseOK {
				t.Fatalf("cause %s, want ok; chain:\n%s", d.Cause, text(t, d))
			}
			for _, s := range d.Steps {
				if s.Name == tt.step && s.State != Unknown {
					t.Errorf("step %s is %s, want unknown", s.Name, s.State)
				}
			}
		})
	}
}

// Without ARP probes (an in-cluster Deployment) L2 is unknown, never ok,
// and the evidence names the run mode that sees it.
func TestLoadBalancerL2NotObserved(t *testing.T) {
	ip := healthyIP()
	ip.ARP = nil
	d := LoadBalancer(collector.LoadBalancer{Namespace: "gateway", Service: "cilium-gateway-internal"}, healthyService(), ip, Mode{})
	if d.Cause != CauseOK {
		t.Fatalf("cause %q, want ok", d.Cause)
	}
	var arp *Step
	for i := range d.Steps {
		if d.Steps[i].Name == StepARP {
			arp = &d.Steps[i]
		}
	}
	if arp == nil || arp.State != Unknown {
		t.Fatalf("ARP step %+v, want unknown", arp)
	}
	for _, want := range []string{"socket-level load balancing", "l2-daemonset", "lan-host"} {
		if !strings.Contains(arp.Evidence, want) {
			t.Errorf("ARP evidence %q lacks %q", arp.Evidence, want)
		}
	}
}

func TestHostnameCauses(t *testing.T) {
	ext := netip.MustParseAddr("10.11.80.80")
	healthy := func() (collector.HostnameStatus, *kube.HostnameState) {
		h := collector.HostnameStatus{
			Hostname: collector.Hostname{Hostname: "grafana.example.com", Expect: []netip.Addr{vip}, Source: "httproute", Namespace: "monitoring", Name: "grafana"},
			DNS: []collector.DNSStatus{{Server: "10.11.80.82:53", Result: probe.DNSResult{
				Result: probe.Result{Success: true}, Verdict: probe.DNSCorrect, Addresses: []netip.Addr{vip},
			}}},
			TLS: []collector.TLSStatus{{IP: vip, Port: 443, Result: probe.TLSResult{Result: probe.Result{Success: true}, Verified: true}}},
		}
		hs := &kube.HostnameState{Hostname: "grafana.example.com", Parents: []kube.RouteParentState{{
			Route: "monitoring/grafana", Gateway: "gateway/internal", Section: "https",
			Accepted: ptr(true), Programmed: ptr(true),
		}}}
		return h, hs
	}
	tests := []struct {
		name   string
		mutate func(*collector.HostnameStatus, *kube.HostnameState)
		cause  string
		fix    []string
	}{
		{name: "healthy", mutate: func(*collector.HostnameStatus, *kube.HostnameState) {}, cause: CauseOK},
		{
			name: "route refused",
			mutate: func(_ *collector.HostnameStatus, hs *kube.HostnameState) {
				hs.Parents[0].Accepted, hs.Parents[0].AcceptedReason = ptr(false), "NoMatchingParent"
			},
			cause: CauseRouteNotAccepted,
			fix:   []string{"gateway/internal (https)", "NoMatchingParent", "kubectl -n monitoring describe httproute grafana"},
		},
		{
			name: "gateway not programmed",
			mutate: func(_ *collector.HostnameStatus, hs *kube.HostnameState) {
				hs.Parents[0].Programmed, hs.Parents[0].ProgrammedReason = ptr(false), "AddressNotAssigned"
			},
			cause: CauseGatewayNotProgrammed,
			fix:   []string{"AddressNotAssigned", "kubectl -n gateway describe gateway internal"},
		},
		{
			name: "wrong address",
			mutate: func(h *collector.HostnameStatus, _ *kube.HostnameState) {
				h.DNS[0].Result = probe.DNSResult{Verdict: probe.DNSWrongAddress, Addresses: []netip.Addr{ext}}
			},
			cause: CauseDNSWrongAddress,
			fix:   []string{"answers 10.11.80.80 for grafana.example.com, its Gateway has 10.11.80.81"},
		},
		{
			name: "nxdomain",
			mutate: func(h *collector.HostnameStatus, _ *kube.HostnameState) {
				h.DNS[0].Result = probe.DNSResult{Verdict: probe.DNSNXDomain, Rcode: "NXDOMAIN"}
			},
			cause: CauseDNSNXDomain,
			fix:   []string{"10.11.80.82:53 does not know grafana.example.com"},
		},
		{
			name: "no answer",
			mutate: func(h *collector.HostnameStatus, _ *kube.HostnameState) {
				h.DNS[0].Result = probe.DNSResult{Verdict: probe.DNSTimeout, Result: probe.Result{Reason: probe.ReasonTimeout, Err: errors.New("i/o timeout")}}
			},
			cause: CauseDNSError,
			fix:   []string{"10.11.80.82:53 did not answer"},
		},
		{
			name: "certificate untrusted",
			mutate: func(h *collector.HostnameStatus, _ *kube.HostnameState) {
				h.TLS[0].Result = probe.TLSResult{Result: probe.Result{Reason: probe.ReasonCertUntrusted}, VerifyReason: probe.ReasonCertUntrusted}
			},
			cause: CauseTLSInvalid,
			fix:   []string{"10.11.80.81:443", "cert_untrusted"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, hs := healthy()
			tt.mutate(&h, hs)
			checkVerdict(t, Hostname(h, hs), tt.cause, tt.fix)
		})
	}
}

// Every cause a chain can give is in Causes (the documented set).
func TestCausesClosed(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range Causes {
		if seen[c] {
			t.Errorf("cause %s listed twice", c)
		}
		seen[c] = true
		if strings.ContainsAny(c, " -") || strings.ToLower(c) != c {
			t.Errorf("cause %q is not a lower_snake_case label value", c)
		}
	}
	for _, fixed := range []string{"ip_pending", "ip_not_requested_one", "no_policy", "policy_no_node", "policy_interface_mismatch",
		"not_announced", "lease_expired", "holder_not_ready", "holder_silent", "split_brain", "route_via_tunnel",
		"no_ready_backends", "port_refused", "route_not_accepted", "gateway_not_programmed", "dns_wrong_address",
		"dns_nxdomain", "tls_invalid"} {
		if !seen[fixed] {
			t.Errorf("the issue's cause %s is missing", fixed)
		}
	}
}

func TestRoundAndSeries(t *testing.T) {
	pending := kube.ServiceState{Namespace: "apps", Name: "pending", Policies: 1, PolicyNames: []string{"l2-policy"}, PolicyNodes: 3, Backends: 1}
	assignedElsewhere := *healthyService()
	assignedElsewhere.Name = "not-in-this-round"
	diags := []Diagnosis{
		LoadBalancer(collector.LoadBalancer{Namespace: "gateway", Service: "cilium-gateway-internal"}, healthyService(), healthyIP(), arpMode),
	}
	diags = append(diags, Round(&collector.RoundResult{}, Cluster{Services: []kube.ServiceState{pending, assignedElsewhere}}, arpMode)...)
	if len(diags) != 2 {
		t.Fatalf("got %d diagnoses, want the probed one and the pending one (a Service with an IP outside the round is not diagnosed without its probes): %+v", len(diags), diags)
	}
	got, ok := Select(diags, "apps/pending")
	if !ok || len(got) != 1 || got[0].Cause != CauseIPPending || got[0].IP != "" {
		t.Fatalf("Select(apps/pending) = %+v, %v", got, ok)
	}
	if got, ok := Select(diags, "10.11.80.81"); !ok || got[0].Service != "cilium-gateway-internal" {
		t.Fatalf("Select by IP = %+v, %v", got, ok)
	}
	if _, ok := Select(diags, "apps/none"); ok {
		t.Fatal("Select(apps/none) matched")
	}

	want := `
# HELP loadbalancer_diagnosis_info 1 with the verdict of the load balancer IP's diagnosis chain: the cause of the first failed step (ip_pending, ip_not_requested_one, no_policy, policy_no_node, policy_interface_mismatch, not_announced, lease_expired, holder_not_ready, holder_silent, split_brain, route_via_tunnel, no_route, no_ready_backends, port_refused), or ok. ip is empty for a Service without an IP.
# TYPE loadbalancer_diagnosis_info gauge
loadbalancer_diagnosis_info{cause="ip_pending",ip="",namespace="apps",service="pending"} 1
loadbalancer_diagnosis_info{cause="ok",ip="10.11.80.81",namespace="gateway",service="cilium-gateway-internal"} 1
`
	// Listed twice, exposed once.
	if err := testutil.CollectAndCompare(Collector(append(diags, diags...)), strings.NewReader(want), "loadbalancer_diagnosis_info"); err != nil {
		t.Fatal(err)
	}

	// A hostname two objects claim is exposed once, with the failing verdict.
	route := collector.HostnameStatus{Hostname: collector.Hostname{Hostname: "app.example.com", Source: "httproute", Namespace: "apps", Name: "public-app", Expect: []netip.Addr{vip}},
		DNS: []collector.DNSStatus{{Server: "10.11.80.82:53", Result: probe.DNSResult{Verdict: probe.DNSCorrect, Addresses: []netip.Addr{vip}}}}}
	svc := collector.HostnameStatus{Hostname: collector.Hostname{Hostname: "app.example.com", Source: "service", Namespace: "apps", Name: "legacy", Expect: []netip.Addr{netip.MustParseAddr("10.11.80.83")}},
		DNS: []collector.DNSStatus{{Server: "10.11.80.82:53", Result: probe.DNSResult{Verdict: probe.DNSWrongAddress, Addresses: []netip.Addr{vip}}}}}
	claims := []Diagnosis{Hostname(route, nil), Hostname(svc, nil)}
	if claims[1].Target != "app.example.com (service apps/legacy)" || claims[1].Object != "service apps/legacy" {
		t.Errorf("target %q, object %q", claims[1].Target, claims[1].Object)
	}
	if want := "answers 10.11.80.81 for app.example.com, the service apps/legacy has 10.11.80.83"; !strings.Contains(claims[1].Fix, want) {
		t.Errorf("fix %q lacks %q", claims[1].Fix, want)
	}
	wantHost := `
# HELP gateway_hostname_diagnosis_info 1 with the verdict of the hostname's diagnosis chain: the cause of the first failed step (route_not_accepted, gateway_not_programmed, dns_wrong_address, dns_nxdomain, dns_error, tls_invalid), or ok.
# TYPE gateway_hostname_diagnosis_info gauge
gateway_hostname_diagnosis_info{cause="dns_wrong_address",hostname="app.example.com"} 1
`
	if err := testutil.CollectAndCompare(Collector(claims), strings.NewReader(wantHost), "gateway_hostname_diagnosis_info"); err != nil {
		t.Fatal(err)
	}

	var b bytes.Buffer
	if err := json.NewEncoder(&b).Encode(got); err != nil {
		t.Fatal(err)
	}
	var back []map[string]any
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"target", "cause", "fix", "steps", "runbook"} {
		if _, ok := back[0][field]; !ok {
			t.Errorf("JSON lacks %q: %s", field, b.String())
		}
	}
}

func TestWriteText(t *testing.T) {
	st := healthyService()
	st.Lease.RenewAge, st.Lease.Expired, st.Lease.Live = 10*time.Minute, true, false
	d := LoadBalancer(collector.LoadBalancer{Namespace: "gateway", Service: "cilium-gateway-internal"}, st, healthyIP(), arpMode)
	out := text(t, d)
	for _, want := range []string{
		"gateway/cilium-gateway-internal 10.11.80.81\n",
		"  ✓ IP assigned ",
		"  ✗ lease live ",
		"verdict: lease_expired\n",
		"fix: the lease cilium-l2announce-gateway-cilium-gateway-internal was last renewed 10m0s ago by k8s-opti-02",
		"runbook: " + Runbook(CauseLeaseExpired),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}
}

// checkVerdict checks a chain's cause, that its fix names each of fix, its
// runbook link, and that a healthy chain is all ok.
func checkVerdict(t *testing.T, d Diagnosis, cause string, fix []string) {
	t.Helper()
	if d.Cause != cause {
		t.Fatalf("cause %q, want %q; chain:\n%s", d.Cause, cause, text(t, d))
	}
	for _, want := range fix {
		if !strings.Contains(d.Fix, want) {
			t.Errorf("fix %q lacks %q", d.Fix, want)
		}
	}
	if cause != CauseOK {
		if want := Runbook(cause); d.Runbook != want {
			t.Errorf("runbook %q, want %q", d.Runbook, want)
		}
		return
	}
	for _, s := range d.Steps {
		if s.State != OK {
			t.Errorf("healthy chain has step %q %s (%s)", s.Name, s.State, s.Evidence)
		}
	}
	if d.Fix != "" || d.Runbook != "" {
		t.Errorf("healthy chain has fix %q, runbook %q", d.Fix, d.Runbook)
	}
}

func text(t *testing.T, d Diagnosis) string {
	t.Helper()
	var b strings.Builder
	if err := d.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// Every cause has its section in docs/runbook.md, under the heading whose
// anchor Runbook links, and every in-page link of those sections resolves.
func TestRunbookSections(t *testing.T) {
	b, err := os.ReadFile("../../docs/runbook.md")
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for l := range strings.Lines(string(b)) {
		if h, ok := strings.CutPrefix(strings.TrimSpace(l), "## "); ok {
			anchors[slug(h)] = true
		}
	}
	for _, c := range Causes[1:] {
		_, anchor, _ := strings.Cut(Runbook(c), "#")
		if !anchors[anchor] {
			t.Errorf("docs/runbook.md has no section %q (heading \"## Diagnosis: %s\") for cause %s", anchor, c, c)
		}
	}
	for _, m := range regexp.MustCompile(`\]\(#([^)]+)\)`).FindAllStringSubmatch(string(b), -1) {
		if !anchors[m[1]] {
			t.Errorf("docs/runbook.md links #%s, which no section has", m[1])
		}
	}
}

// slug is GitHub's anchor of a heading: lower case, spaces as -, and only
// letters, digits, - and _ kept.
func slug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}
