package kube

import (
	"reflect"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/lbprobe/lbprobe/collector"
)

func TestServiceDNSName(t *testing.T) {
	const zone = "sbbh.cloud"
	tests := []struct {
		name        string
		annotations map[string]string
		want        string
	}{
		{"default", nil, "web.apps.sbbh.cloud"},
		{"coredns absolute", map[string]string{annotationCoreDNSHostname: "www.sbbh.cloud"}, "www.sbbh.cloud"},
		{"coredns relative", map[string]string{annotationCoreDNSHostname: "www"}, "www.sbbh.cloud"},
		{"coredns relative with dots", map[string]string{annotationCoreDNSHostname: "www.team"}, "www.team.sbbh.cloud"},
		{"apex", map[string]string{annotationCoreDNSHostname: "sbbh.cloud"}, "sbbh.cloud"},
		{"external-dns", map[string]string{annotationExternalDNSHostname: "ext.sbbh.cloud"}, "ext.sbbh.cloud"},
		{"both: coredns wins", map[string]string{annotationCoreDNSHostname: "core.sbbh.cloud", annotationExternalDNSHostname: "ext.sbbh.cloud"}, "core.sbbh.cloud"},
		{"invalid coredns (list) falls back to external-dns", map[string]string{annotationCoreDNSHostname: "a.sbbh.cloud,b.sbbh.cloud", annotationExternalDNSHostname: "ext.sbbh.cloud"}, "ext.sbbh.cloud"},
		{"trailing dot invalid", map[string]string{annotationCoreDNSHostname: "www.sbbh.cloud."}, "web.apps.sbbh.cloud"},
		{"upper case invalid", map[string]string{annotationCoreDNSHostname: "WWW.sbbh.cloud"}, "web.apps.sbbh.cloud"},
		{"both invalid", map[string]string{annotationCoreDNSHostname: "-bad", annotationExternalDNSHostname: "a b"}, "web.apps.sbbh.cloud"},
		{"empty invalid", map[string]string{annotationCoreDNSHostname: ""}, "web.apps.sbbh.cloud"},
		{"label over 63 characters invalid", map[string]string{annotationCoreDNSHostname: strings.Repeat("a", 64) + ".sbbh.cloud"}, "web.apps.sbbh.cloud"},
		{"label of 63 characters valid", map[string]string{annotationCoreDNSHostname: strings.Repeat("a", 63) + ".sbbh.cloud"}, strings.Repeat("a", 63) + ".sbbh.cloud"},
		{"label too long invalid", map[string]string{annotationCoreDNSHostname: strings.Repeat("a", 64) + ".sbbh.cloud"}, "web.apps.sbbh.cloud"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := lbService("apps", "web", "192.0.2.1")
			s.Annotations = tt.annotations
			if got := serviceDNSName(s, zone); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestServiceHostnames(t *testing.T) {
	servers := []string{"192.0.2.53:53"}
	ext := lbService("apps", "ext", "192.0.2.1")
	ext.Spec.ExternalIPs = []string{"198.51.100.1", "bogus"}
	extPending := lbService("apps", "ext-pending")
	extPending.Spec.ExternalIPs = []string{"198.51.100.2"}
	shareA := with(lbService("apps", "a", "192.0.2.10"), annotate(annotationCoreDNSHostname, "shared"))
	shareB := with(lbService("team", "b", "192.0.2.11"), annotate(annotationExternalDNSHostname, "shared.sbbh.cloud"))
	ignored := with(lbService("apps", "ignored", "192.0.2.12"), annotate(AnnotationIgnore, "true"))
	cluster := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "cluster"}}
	svcs := []*corev1.Service{ext, extPending, shareA, shareB, ignored, lbService("apps", "pending"), cluster}

	got := serviceHostnames(svcs, "sbbh.cloud", servers)
	want := []collector.Hostname{
		{Hostname: "ext.apps.sbbh.cloud", Expect: addrs("198.51.100.1"), Servers: servers, Source: "service", Namespace: "apps", Name: "ext"},
		{Hostname: "ext-pending.apps.sbbh.cloud", Expect: addrs("198.51.100.2"), Servers: servers, Source: "service", Namespace: "apps", Name: "ext-pending"},
		{Hostname: "shared.sbbh.cloud", Expect: addrs("192.0.2.10", "192.0.2.11"), Servers: servers, Source: "service", Namespace: "apps", Name: "a"},
		{Hostname: "shared.sbbh.cloud", Expect: addrs("192.0.2.10", "192.0.2.11"), Servers: servers, Source: "service", Namespace: "team", Name: "b"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	if got := serviceHostnames(svcs, "", servers); got != nil {
		t.Fatalf("no zone: %+v", got)
	}
}

func TestLoadBalancerTarget(t *testing.T) {
	ports := lbService("apps", "ports", "192.0.2.1", "192.0.2.1", "::ffff:192.0.2.2")
	ports.Spec.Ports = []corev1.ServicePort{
		{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP},
		{Name: "noproto", Port: 81},
		{Name: "dns", Port: 5353, Protocol: corev1.ProtocolUDP},
		{Name: "dns-tcp", Port: 5354, Protocol: corev1.ProtocolUDP},
		{Name: "any", Port: 53, Protocol: corev1.ProtocolUDP},
		{Name: "syslog", Port: 514, Protocol: corev1.ProtocolUDP},
		{Name: "sctp", Port: 9999, Protocol: corev1.ProtocolSCTP},
	}
	hostOnly := lbService("apps", "aws")
	hostOnly.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{Hostname: "abc.elb.example.com"}}

	tests := []struct {
		name string
		svc  *corev1.Service
		want *collector.LoadBalancer
	}{
		{"port kinds", ports, &collector.LoadBalancer{Namespace: "apps", Service: "ports", IPs: addrs("192.0.2.1", "192.0.2.2"), Source: "kubernetes", Ports: []collector.Port{
			{Port: 80, Protocol: "TCP", Probe: collector.ProbeTCP},
			{Port: 81, Protocol: "TCP", Probe: collector.ProbeTCP},
			{Port: 5353, Protocol: "UDP", Probe: collector.ProbeDNS},
			{Port: 5354, Protocol: "UDP", Probe: collector.ProbeDNS},
			{Port: 53, Protocol: "UDP", Probe: collector.ProbeDNS},
			{Port: 514, Protocol: "UDP", Probe: collector.ProbeNone},
			{Port: 9999, Protocol: "SCTP", Probe: collector.ProbeNone},
		}}},
		{"icmp", with(lbService("apps", "ping", "192.0.2.1"), annotate(AnnotationICMP, "true")),
			&collector.LoadBalancer{Namespace: "apps", Service: "ping", IPs: addrs("192.0.2.1"), ICMP: true, Source: "kubernetes",
				Ports: []collector.Port{{Port: 80, Protocol: "TCP", Probe: collector.ProbeTCP}}}},
		{"ignored", with(lbService("apps", "x", "192.0.2.1"), annotate(AnnotationIgnore, "true")), nil},
		{"ignore false", with(lbService("apps", "x", "192.0.2.1"), annotate(AnnotationIgnore, "false")),
			&collector.LoadBalancer{Namespace: "apps", Service: "x", IPs: addrs("192.0.2.1"), Source: "kubernetes",
				Ports: []collector.Port{{Port: 80, Protocol: "TCP", Probe: collector.ProbeTCP}}}},
		{"pending", lbService("apps", "pending"), nil},
		{"hostname-only ingress", hostOnly, nil},
		{"not a LoadBalancer", &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "b"}}, nil},
		{"zero Service", &corev1.Service{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := loadBalancerTarget(tt.svc)
			if tt.want == nil {
				if ok {
					t.Fatalf("want no target, got %+v", got)
				}
				return
			}
			if !ok || !reflect.DeepEqual(got, *tt.want) {
				t.Fatalf("got %+v (%v)\nwant %+v", got, ok, *tt.want)
			}
		})
	}
}

func TestDNSServers(t *testing.T) {
	kgw := with(lbService("infra", "k8s-gateway", "192.0.2.53", "2001:db8::53"), label(k8sGatewayLabel, k8sGatewayLabelValue))
	kgw.Spec.Ports = []corev1.ServicePort{{Name: "metrics", Port: 9153, Protocol: corev1.ProtocolTCP}, {Name: "dns-udp", Port: 5353, Protocol: corev1.ProtocolUDP}}
	plain := with(lbService("other", "k8s-gateway", "192.0.2.54"), label(k8sGatewayLabel, k8sGatewayLabelValue))
	pending := with(lbService("x", "k8s-gateway"), label(k8sGatewayLabel, k8sGatewayLabelValue))
	unlabelled := lbService("y", "k8s-gateway", "192.0.2.55")
	got := dnsServers([]*corev1.Service{kgw, plain, pending, unlabelled})
	want := []string{"192.0.2.53:5353", "192.0.2.54:53", "[2001:db8::53]:5353"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// Hostname-only ingress entries and Services with nil fields must not
// crash Collect, Targets or ServiceStates.
func TestOddServices(t *testing.T) {
	s := realisticSeed()
	hostOnly := lbService("apps", "aws")
	hostOnly.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{Hostname: "abc.elb.example.com"}, {Hostname: "abc.elb.example.com"}, {}}
	bare := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "bare"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer}}
	classed := lbService("apps", "bgp", "192.0.2.9")
	classed.Spec.LoadBalancerClass = ptr.To("io.cilium/bgp-control-plane")
	nilLease := lease("kube-system", "cilium-l2announce-apps-bare", "", 0, 0, 1, 0)
	nilLease.Spec.AcquireTime, nilLease.Spec.RenewTime, nilLease.Spec.LeaseDurationSeconds, nilLease.Spec.HolderIdentity, nilLease.Spec.LeaseTransitions = nil, nil, nil, nil, nil
	s.kube = append(s.kube, hostOnly, bare, classed, nilLease)
	d := startFake(t, fakeClients(s), Options{})

	want := `
# HELP loadbalancer_ingress_hostname_info 1 for each hostname-only ingress entry of a LoadBalancer Service (not probed).
# TYPE loadbalancer_ingress_hostname_info gauge
loadbalancer_ingress_hostname_info{hostname="abc.elb.example.com",namespace="apps",service="aws"} 1
# HELP loadbalancer_ip_assigned 1 when the LoadBalancer Service has at least one ingress IP, else 0 (pending).
# TYPE loadbalancer_ip_assigned gauge
loadbalancer_ip_assigned{namespace="apps",service="aws"} 0
loadbalancer_ip_assigned{namespace="apps",service="bare"} 0
loadbalancer_ip_assigned{namespace="apps",service="bgp"} 1
loadbalancer_ip_assigned{namespace="apps",service="pending"} 0
loadbalancer_ip_assigned{namespace="apps",service="web"} 1
loadbalancer_ip_assigned{namespace="infra",service="k8s-gateway"} 1
# HELP loadbalancer_l2_policies How many CiliumL2AnnouncementPolicies announce the Service's LoadBalancer IPs (selector incl. io.kubernetes.service.namespace/name, loadBalancerIPs: true, loadBalancerClass unset or io.cilium/l2-announcer). Absent when the policy CRD is not served, and for a Service that MetalLB or kube-vip announces.
# TYPE loadbalancer_l2_policies gauge
loadbalancer_l2_policies{namespace="apps",service="aws"} 1
loadbalancer_l2_policies{namespace="apps",service="bare"} 1
loadbalancer_l2_policies{namespace="apps",service="bgp"} 0
loadbalancer_l2_policies{namespace="apps",service="pending"} 1
loadbalancer_l2_policies{namespace="apps",service="web"} 2
loadbalancer_l2_policies{namespace="infra",service="k8s-gateway"} 1
`
	if err := testutil.CollectAndCompare(d, strings.NewReader(want), "loadbalancer_ingress_hostname_info", "loadbalancer_ip_assigned", "loadbalancer_l2_policies"); err != nil {
		t.Fatal(err)
	}
	// The lease without fields: no lease series for it, no panic.
	if n := testutil.CollectAndCount(d, "loadbalancer_l2_lease_age_seconds"); n != 2 {
		t.Fatalf("lease age series: %d", n)
	}
	for _, st := range d.ServiceStates() {
		if st.Name == "bare" && (st.Lease == nil || st.Lease.Live || st.Lease.Age != -1) {
			t.Fatalf("bare: %+v %+v", st, st.Lease)
		}
	}
	for _, lb := range d.Targets().LoadBalancers {
		if lb.Service == "aws" || lb.Service == "bare" {
			t.Fatalf("%s is not probed", lb.Service)
		}
	}
}
