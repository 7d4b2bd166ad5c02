package kube

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func TestRequestedIPs(t *testing.T) {
	tests := []struct {
		name   string
		annots map[string]string
		spec   string
		want   []string
	}{
		{"none", nil, "", nil},
		{"new annotation", map[string]string{annotationLBIPAMIPs: "10.11.80.82"}, "", []string{"10.11.80.82"}},
		{"old annotation", map[string]string{annotationLBIPAMIPsOld: "10.11.80.82"}, "", []string{"10.11.80.82"}},
		{"comma-separated with spaces, dual-stack, repeated", map[string]string{annotationLBIPAMIPs: " 10.11.80.82, fd00::82 ,10.11.80.82"}, "", []string{"10.11.80.82", "fd00::82"}},
		{"new wins over old", map[string]string{annotationLBIPAMIPs: "10.11.80.83", annotationLBIPAMIPsOld: "10.11.80.82"}, "", []string{"10.11.80.83"}},
		{"a present but empty new annotation hides the old", map[string]string{annotationLBIPAMIPs: "", annotationLBIPAMIPsOld: "10.11.80.82"}, "", nil},
		{"spec.loadBalancerIP", nil, "10.11.80.84", []string{"10.11.80.84"}},
		{"annotation and spec together", map[string]string{annotationLBIPAMIPsOld: "10.11.80.82"}, "10.11.80.84", []string{"10.11.80.82", "10.11.80.84"}},
		{"garbage skipped", map[string]string{annotationLBIPAMIPs: "10.11.80.x,,10.11.80.85"}, "", []string{"10.11.80.85"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := with(lbService("ns", "svc"), annotate(flatten(tt.annots)...))
			s.Spec.LoadBalancerIP = tt.spec
			got := requestedIPs(s)
			var gotS []string
			for _, ip := range got {
				gotS = append(gotS, ip.String())
			}
			if !reflect.DeepEqual(gotS, tt.want) {
				t.Errorf("requestedIPs = %v, want %v", gotS, tt.want)
			}
		})
	}
}

func flatten(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k, v)
	}
	return out
}

// The seed pins k8s_gateway to 10.11.80.82: an assignment of another IP shows,
// and so does the condition LB-IPAM wrote.
func TestRequestedIPSeries(t *testing.T) {
	pinned := with(lbService("network", "k8s-gateway", "10.11.80.90"), annotate(annotationLBIPAMIPsOld, "10.11.80.82"))
	pinned.Status.Conditions = []metav1.Condition{{Type: "cilium.io/IPAMRequestSatisfied", Status: metav1.ConditionFalse, Reason: "already_allocated"}}
	ok := with(lbService("apps", "legacy", "10.11.80.83"), annotate(annotationLBIPAMIPs, "10.11.80.83"))
	ok.Status.Conditions = []metav1.Condition{{Type: "cilium.io/IPAMRequestSatisfied", Status: metav1.ConditionTrue, Reason: "satisfied"}}
	noPool := with(lbService("apps", "nopool"), annotate(annotationLBIPAMIPs, "192.0.2.1"))
	noPool.Status.Conditions = []metav1.Condition{{Type: "io.cilium/lb-ipam-request-satisfied", Status: metav1.ConditionFalse, Reason: "no_pool"}}
	d := startFake(t, fakeClients(seed{kube: []runtime.Object{pinned, ok, noPool, lbService("apps", "plain", "10.11.80.84")}}), Options{})
	want := `
# HELP loadbalancer_ipam_request_info 1, with the status and reason of the condition LB-IPAM wrote on the Service about its request (cilium.io/IPAMRequestSatisfied, formerly io.cilium/lb-ipam-request-satisfied; reasons satisfied, no_pool, pool_selector_mismatch, already_allocated, already_allocated_incompatible_service, out_of_ips).
# TYPE loadbalancer_ipam_request_info gauge
loadbalancer_ipam_request_info{namespace="apps",reason="no_pool",service="nopool",status="False"} 1
loadbalancer_ipam_request_info{namespace="apps",reason="satisfied",service="legacy",status="True"} 1
loadbalancer_ipam_request_info{namespace="network",reason="already_allocated",service="k8s-gateway",status="False"} 1
# HELP loadbalancer_requested_ip_assigned 1 when an IP the Service requests (annotations lbipam.cilium.io/ips, io.cilium/lb-ipam-ips, or spec.loadBalancerIP) is among its ingress IPs, else 0.
# TYPE loadbalancer_requested_ip_assigned gauge
loadbalancer_requested_ip_assigned{ip="10.11.80.82",namespace="network",service="k8s-gateway"} 0
loadbalancer_requested_ip_assigned{ip="10.11.80.83",namespace="apps",service="legacy"} 1
loadbalancer_requested_ip_assigned{ip="192.0.2.1",namespace="apps",service="nopool"} 0
`
	if err := testutil.CollectAndCompare(d, strings.NewReader(want), "loadbalancer_requested_ip_assigned", "loadbalancer_ipam_request_info"); err != nil {
		t.Fatal(err)
	}
}

// Two Services sharing an IP have a lease each: different live holders are
// two nodes answering ARP for one IP.
func TestSharedIPSeries(t *testing.T) {
	shared := func(name string) *corev1.Service {
		return with(lbService("apps", name, "10.11.80.90"), annotate("lbipam.cilium.io/sharing-key", "k"))
	}
	s := seed{kube: []runtime.Object{
		shared("dns-udp"), shared("dns-tcp"), shared("web-extra"),
		with(lbService("apps", "pair-a", "10.11.80.91"), annotate("lbipam.cilium.io/sharing-key", "p")),
		with(lbService("apps", "pair-b", "10.11.80.91"), annotate("lbipam.cilium.io/sharing-key", "p")),
		lbService("apps", "alone", "10.11.80.92"),
		lease("kube-system", "cilium-l2announce-apps-dns-udp", "node-a", time.Hour, time.Second, 15, 0),
		lease("kube-system", "cilium-l2announce-apps-dns-tcp", "node-b", time.Hour, time.Second, 15, 0),
		// Expired: its holder no longer answers.
		lease("kube-system", "cilium-l2announce-apps-web-extra", "node-c", time.Hour, time.Hour, 15, 0),
		lease("kube-system", "cilium-l2announce-apps-pair-a", "node-a", time.Hour, time.Second, 15, 0),
		lease("kube-system", "cilium-l2announce-apps-pair-b", "node-a", time.Hour, time.Second, 15, 0),
		lease("kube-system", "cilium-l2announce-apps-alone", "node-a", time.Hour, time.Second, 15, 0),
	}}
	d := startFake(t, fakeClients(s), Options{})
	want := `
# HELP loadbalancer_shared_ip_holders How many distinct nodes hold a live L2 lease of a Service on the shared IP. Cilium elects a holder per Service, and every holder answers ARP for the IP: more than 1 is a split brain.
# TYPE loadbalancer_shared_ip_holders gauge
loadbalancer_shared_ip_holders{ip="10.11.80.90"} 2
loadbalancer_shared_ip_holders{ip="10.11.80.91"} 1
# HELP loadbalancer_shared_ip_services How many LoadBalancer Services have the IP among their ingress IPs; only for IPs shared by two or more (lbipam.cilium.io/sharing-key).
# TYPE loadbalancer_shared_ip_services gauge
loadbalancer_shared_ip_services{ip="10.11.80.90"} 3
loadbalancer_shared_ip_services{ip="10.11.80.91"} 2
`
	if err := testutil.CollectAndCompare(d, strings.NewReader(want), "loadbalancer_shared_ip_services", "loadbalancer_shared_ip_holders"); err != nil {
		t.Fatal(err)
	}
}
