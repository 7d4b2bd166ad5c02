package kube

import (
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func labelledNode(name string, kv ...string) *corev1.Node {
	n := readyNode(name, true)
	n.Labels = map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		n.Labels[kv[i]] = kv[i+1]
	}
	return n
}

// The seed's policy targets ^enp.* on nodes whose NIC is eth0: it selects
// this node and matches none of its interfaces.
func TestL2PolicySeries(t *testing.T) {
	linux := map[string]any{"matchLabels": map[string]any{"kubernetes.io/os": "linux"}}
	seedPolicy := policyObj("l2-policy", map[string]any{"loadBalancerIPs": true, "interfaces": []any{"^enp.*"}, "nodeSelector": linux})
	ethPolicy := policyObj("eth", map[string]any{"loadBalancerIPs": true, "interfaces": []any{"^eth[0-9]+$", "^bond0$"}, "nodeSelector": linux})
	allDevices := policyObj("all-devices", map[string]any{"loadBalancerIPs": true})
	noNode := policyObj("workers", map[string]any{"loadBalancerIPs": true, "nodeSelector": map[string]any{
		"matchLabels": map[string]any{"node-role.kubernetes.io/worker": "true"}}})
	badSelector := policyObj("bad", map[string]any{"loadBalancerIPs": true, "serviceSelector": map[string]any{
		"matchExpressions": []any{map[string]any{"key": "app", "operator": "In"}}}})
	badSelector.Object["status"] = map[string]any{"conditions": []any{map[string]any{
		"type": "io.cilium/bad-service-selector", "status": "True", "reason": "error",
		"message":            "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty",
		"lastTransitionTime": "2026-11-25T12:00:00Z",
	}}}
	s := seed{
		kube: []runtime.Object{
			labelledNode("k8s-nuc", "kubernetes.io/os", "linux"),
			labelledNode("k8s-opti-01", "kubernetes.io/os", "linux"),
			labelledNode("k8s-opti-02", "kubernetes.io/os", "linux"),
			lbService("apps", "web", "10.11.80.83"),
			&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "internal"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP}},
		},
		dynamic:  []runtime.Object{seedPolicy, ethPolicy, allDevices, noNode, badSelector},
		policies: "v2alpha1",
	}
	d := startFake(t, fakeClients(s), Options{
		NodeName:   "k8s-nuc",
		Interfaces: func() ([]string, error) { return []string{"eth0", "eth1", "tailscale0"}, nil },
	})
	want := `
# HELP loadbalancer_l2_policy_condition_info 1 for each condition Cilium wrote on the policy (io.cilium/bad-service-selector, io.cilium/bad-node-selector, io.cilium/bad-interface-regex; status True while the error lasts), with its status.
# TYPE loadbalancer_l2_policy_condition_info gauge
loadbalancer_l2_policy_condition_info{condition="io.cilium/bad-service-selector",policy="bad",status="True"} 1
# HELP loadbalancer_l2_policy_info 1 per CiliumL2AnnouncementPolicy, with its interface patterns (comma-separated, unanchored regular expressions; empty: every device).
# TYPE loadbalancer_l2_policy_info gauge
loadbalancer_l2_policy_info{interfaces="",policy="all-devices"} 1
loadbalancer_l2_policy_info{interfaces="",policy="bad"} 1
loadbalancer_l2_policy_info{interfaces="",policy="workers"} 1
loadbalancer_l2_policy_info{interfaces="^enp.*",policy="l2-policy"} 1
loadbalancer_l2_policy_info{interfaces="^eth[0-9]+$,^bond0$",policy="eth"} 1
# HELP loadbalancer_l2_policy_interfaces_matched Only where lbprobe runs on a node (--node.name): 1 when the policy, which selects this node, matches at least one of the node's up interfaces with an IPv4 address, with their names; 0 with interfaces="" when it matches none (the policy targets the wrong interface pattern).
# TYPE loadbalancer_l2_policy_interfaces_matched gauge
loadbalancer_l2_policy_interfaces_matched{interfaces="",node="k8s-nuc",policy="l2-policy"} 0
loadbalancer_l2_policy_interfaces_matched{interfaces="eth0,eth1",node="k8s-nuc",policy="eth"} 1
loadbalancer_l2_policy_interfaces_matched{interfaces="eth0,eth1,tailscale0",node="k8s-nuc",policy="all-devices"} 1
loadbalancer_l2_policy_interfaces_matched{interfaces="eth0,eth1,tailscale0",node="k8s-nuc",policy="bad"} 1
# HELP loadbalancer_l2_policy_nodes How many Nodes the CiliumL2AnnouncementPolicy's nodeSelector matches (0: nothing announces the IPs it selects).
# TYPE loadbalancer_l2_policy_nodes gauge
loadbalancer_l2_policy_nodes{policy="all-devices"} 3
loadbalancer_l2_policy_nodes{policy="bad"} 3
loadbalancer_l2_policy_nodes{policy="eth"} 3
loadbalancer_l2_policy_nodes{policy="l2-policy"} 3
loadbalancer_l2_policy_nodes{policy="workers"} 0
# HELP loadbalancer_l2_policy_services How many LoadBalancer Services the policy's serviceSelector matches.
# TYPE loadbalancer_l2_policy_services gauge
loadbalancer_l2_policy_services{policy="all-devices"} 1
loadbalancer_l2_policy_services{policy="bad"} 0
loadbalancer_l2_policy_services{policy="eth"} 1
loadbalancer_l2_policy_services{policy="l2-policy"} 1
loadbalancer_l2_policy_services{policy="workers"} 1
`
	names := []string{"loadbalancer_l2_policy_condition_info", "loadbalancer_l2_policy_info", "loadbalancer_l2_policy_interfaces_matched",
		"loadbalancer_l2_policy_nodes", "loadbalancer_l2_policy_services"}
	if err := testutil.CollectAndCompare(d, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}

	// Not on a node: no interface series. An interface listing that fails
	// leaves the policies unmatched rather than failing the scrape.
	d = startFake(t, fakeClients(s), Options{})
	if n := testutil.CollectAndCount(d, "loadbalancer_l2_policy_interfaces_matched"); n != 0 {
		t.Errorf("without --node.name: %d interface series", n)
	}
	d = startFake(t, fakeClients(s), Options{NodeName: "k8s-nuc", Interfaces: func() ([]string, error) { return nil, errors.New("netlink: boom") }})
	if n := testutil.CollectAndCount(d, "loadbalancer_l2_policy_interfaces_matched"); n != 4 {
		t.Errorf("with a failing interface listing: %d interface series, want 4 (one per policy that selects the node)", n)
	}
}
