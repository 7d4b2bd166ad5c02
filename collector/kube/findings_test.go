package kube

import (
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Each check the series make says in words what is wrong, about which
// object, for which targets; healthy objects give no finding.
func TestFindings(t *testing.T) {
	s := statusSeed()
	pinned := with(lbService("network", "k8s-gateway", "10.11.80.90"), annotate(annotationLBIPAMIPsOld, "10.11.80.82"))
	pinned.Status.Conditions = []metav1.Condition{{Type: "io.cilium/lb-ipam-request-satisfied", Status: metav1.ConditionFalse, Reason: "already_allocated"}}
	satisfied := with(lbService("apps", "legacy", "10.11.80.83"), annotate(annotationLBIPAMIPs, "10.11.80.83"))
	shared := func(name string) *corev1.Service {
		return with(lbService("apps", name, "10.11.80.91"), annotate("lbipam.cilium.io/sharing-key", "k"))
	}
	linux := map[string]any{"matchLabels": map[string]any{"kubernetes.io/os": "linux"}}
	s.kube = []runtime.Object{
		labelledNode("k8s-nuc", "kubernetes.io/os", "linux"),
		pinned, satisfied, shared("shared-a"), shared("shared-b"),
		endpointSlice("network", "k8s-gateway-x", "k8s-gateway", "IPv4", []string{"10.42.0.53"}, "k8s-gateway-0"),
		endpointSlice("apps", "legacy-x", "legacy", "IPv4", []string{"10.42.0.9"}, "legacy-0:false"),
		endpointSlice("apps", "shared-a-x", "shared-a", "IPv4", []string{"10.42.0.1"}, "a-0"),
		endpointSlice("apps", "shared-b-x", "shared-b", "IPv4", []string{"10.42.0.2"}, "b-0"),
		lease("kube-system", "cilium-l2announce-apps-shared-a", "k8s-nuc", time.Hour, time.Second, 15, 0),
		lease("kube-system", "cilium-l2announce-apps-shared-b", "k8s-opti-01", time.Hour, time.Second, 15, 0),
	}
	s.dynamic = []runtime.Object{
		policyObj("l2-policy", map[string]any{"loadBalancerIPs": true, "interfaces": []any{"^enp.*"}, "nodeSelector": linux}),
		policyObj("eth", map[string]any{"loadBalancerIPs": true, "interfaces": []any{"^eth0$"}, "nodeSelector": linux}),
		policyObj("workers", map[string]any{"loadBalancerIPs": true, "nodeSelector": map[string]any{"matchLabels": map[string]any{"role": "worker"}}}),
	}
	s.policies = "v2alpha1"
	d := startFake(t, fakeClients(s), Options{NodeName: "k8s-nuc", Interfaces: func() ([]string, error) { return []string{"eth0"}, nil }})

	type short struct{ check, object, targets string }
	var got []short
	for _, f := range d.Findings() {
		if f.Detail == "" {
			t.Errorf("%s %s: no detail", f.Check, f.Object)
		}
		got = append(got, short{f.Check, f.Object, strings.Join(f.Targets, ",")})
	}
	want := []short{
		{CheckListenerNotHealthy, "Gateway kube-system/internal listener https", ""},
		{CheckListenerNotHealthy, "Gateway kube-system/internal listener https", ""},
		{CheckNoReadyBackends, "Service apps/legacy", "10.11.80.83"},
		{CheckPolicyInterfaces, "CiliumL2AnnouncementPolicy l2-policy", ""},
		{CheckPolicyNoNode, "CiliumL2AnnouncementPolicy workers", ""},
		{CheckRequestedIP, "Service network/k8s-gateway", "10.11.80.82,10.11.80.90"},
		{CheckRouteNotAccepted, "HTTPRoute apps/internal-app", "internal.sbbh.cloud"},
		{CheckRouteNotAccepted, "HTTPRoute kube-system/httpsredirect", ""},
		{CheckRouteNotAccepted, "HTTPRoute kube-system/httpsredirect", ""},
		{CheckRouteRefs, "HTTPRoute apps/public-app", "app.sbbh.cloud"},
		{CheckRouteStatusStale, "HTTPRoute apps/public-app", "app.sbbh.cloud"},
		{CheckSplitBrain, "IP 10.11.80.91", "10.11.80.91"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("findings:\n got %v\nwant %v", got, want)
	}
	for _, f := range d.Findings() {
		if f.Check == CheckRequestedIP && !strings.Contains(f.Detail, "already_allocated") {
			t.Errorf("requested IP finding %q lacks LB-IPAM's reason", f.Detail)
		}
	}
}
