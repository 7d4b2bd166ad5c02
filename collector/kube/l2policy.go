package kube

import (
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/lbprobe/lbprobe/collector"
)

// CiliumL2AnnouncementPolicy (cilium.io/v2alpha1): which Services' IPs it
// announces, from which nodes, on which interfaces. As Cilium's
// pkg/l2announcer reads it: a nil serviceSelector selects every Service, a
// nil nodeSelector every node, and interfaces are unanchored regular
// expressions matched against device names, none meaning every device.

// The conditions Cilium's agents write on a policy (reason always "error";
// True while the error lasts).
var l2PolicyConditionTypes = []string{"io.cilium/bad-service-selector", "io.cilium/bad-node-selector", "io.cilium/bad-interface-regex"}

// l2Policy is what lbprobe needs of a CiliumL2AnnouncementPolicy.
type l2Policy struct {
	name string
	// selector matches Service labels plus the two io.kubernetes.service.*
	// keys; nil = matches nothing (an invalid selector: Cilium marks the
	// policy io.cilium/bad-service-selector and announces nothing).
	selector labels.Selector
	// nodes matches Node labels; nil = matches nothing (an invalid
	// selector).
	nodes labels.Selector
	// loadBalancerIPs and externalIPs say which addresses it announces;
	// both default to false in the CRD.
	loadBalancerIPs bool
	externalIPs     bool
	// interfaces are the spec's regular expressions, as written; patterns
	// are those that compile (empty interfaces: every device).
	interfaces []string
	patterns   []*regexp.Regexp
	conditions []metav1.Condition // of l2PolicyConditionTypes
}

// parseL2Policy reads a policy from its unstructured form.
func parseL2Policy(u *unstructured.Unstructured, logger *slog.Logger) l2Policy {
	p := l2Policy{name: u.GetName()}
	logger = logger.With("policy", p.name)
	p.loadBalancerIPs, _, _ = unstructured.NestedBool(u.Object, "spec", "loadBalancerIPs")
	p.externalIPs, _, _ = unstructured.NestedBool(u.Object, "spec", "externalIPs")
	p.selector = parseSelector(u, "serviceSelector", logger)
	p.nodes = parseSelector(u, "nodeSelector", logger)
	p.interfaces, _, _ = unstructured.NestedStringSlice(u.Object, "spec", "interfaces")
	for _, expr := range p.interfaces {
		re, err := regexp.Compile(expr)
		if err != nil {
			logger.Debug("l2 policy: interface pattern does not compile; Cilium skips it", "pattern", expr, "err", err)
			continue
		}
		p.patterns = append(p.patterns, re)
	}
	raw, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range raw {
		m, ok := c.(map[string]any)
		if !ok {
			continue
		}
		var cond metav1.Condition
		if runtime.DefaultUnstructuredConverter.FromUnstructured(m, &cond) == nil && slices.Contains(l2PolicyConditionTypes, cond.Type) {
			p.conditions = append(p.conditions, cond)
		}
	}
	return p
}

// parseSelector reads a label selector at spec.<field>: absent or null
// selects everything, an invalid one nothing (nil).
func parseSelector(u *unstructured.Unstructured, field string, logger *slog.Logger) labels.Selector {
	v, found, _ := unstructured.NestedFieldNoCopy(u.Object, "spec", field)
	if !found || v == nil {
		return labels.Everything()
	}
	sel, err := selectorOf(v)
	if err != nil {
		logger.Debug("l2 policy: bad selector; it selects nothing", "field", field, "err", err)
		return nil
	}
	return sel
}

// selectorOf reads a label selector from its unstructured form.
func selectorOf(v any) (labels.Selector, error) {
	raw, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("not an object but %T", v)
	}
	var ls metav1.LabelSelector
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &ls); err != nil {
		return nil, err
	}
	return metav1.LabelSelectorAsSelector(&ls)
}

// selectsNode reports whether the policy's nodeSelector matches the node.
func (p l2Policy) selectsNode(n *corev1.Node) bool {
	return p.nodes != nil && p.nodes.Matches(labels.Set(n.Labels))
}

// selectsService reports whether the policy's serviceSelector matches the
// Service, and Cilium's L2 announcer considers it at all (its class).
func (p l2Policy) selectsService(s *corev1.Service) bool {
	return l2Announceable(s) && p.selector != nil && p.selector.Matches(serviceLabels(s))
}

// matchInterfaces returns the names among ifaces that the policy would
// announce on: all of them without interface patterns.
func (p l2Policy) matchInterfaces(ifaces []string) []string {
	if len(p.interfaces) == 0 {
		return slices.Clone(ifaces)
	}
	var out []string
	for _, name := range ifaces {
		if slices.ContainsFunc(p.patterns, func(re *regexp.Regexp) bool { return re.MatchString(name) }) {
			out = append(out, name)
		}
	}
	return out
}

// countL2Policies counts the policies that announce the Service's
// LoadBalancer IPs: the class allows it, the selector matches, and the
// policy has loadBalancerIPs: true (a policy announcing only externalIPs
// does not count).
func countL2Policies(s *corev1.Service, policies []l2Policy) int {
	n := 0
	for _, p := range policies {
		if p.loadBalancerIPs && p.selectsService(s) {
			n++
		}
	}
	return n
}

var (
	descPolicyNodes = desc("loadbalancer_l2_policy_nodes",
		"How many Nodes the CiliumL2AnnouncementPolicy's nodeSelector matches (0: nothing announces the IPs it selects).", "policy")
	descPolicyInfo = desc("loadbalancer_l2_policy_info",
		"1 per CiliumL2AnnouncementPolicy, with its interface patterns (comma-separated, unanchored regular expressions; empty: every device).", "policy", "interfaces")
	descPolicyServices = desc("loadbalancer_l2_policy_services",
		"How many LoadBalancer Services the policy's serviceSelector matches.", "policy")
	descPolicyCondition = desc("loadbalancer_l2_policy_condition_info",
		"1 for each condition Cilium wrote on the policy (io.cilium/bad-service-selector, io.cilium/bad-node-selector, io.cilium/bad-interface-regex; status True while the error lasts), with its status.", "policy", "condition", "status")
	descPolicyInterfaces = desc("loadbalancer_l2_policy_interfaces_matched",
		"Only where lbprobe runs on a node (--node.name): 1 when the policy, which selects this node, matches at least one of the node's up interfaces with an IPv4 address, with their names; 0 with interfaces=\"\" when it matches none (the policy targets the wrong interface pattern).", "policy", "node", "interfaces")
)

var l2PolicyDescs = []*prometheus.Desc{descPolicyNodes, descPolicyInfo, descPolicyServices, descPolicyCondition, descPolicyInterfaces}

// collectPolicies emits the series of every policy.
func (v *view) collectPolicies(ch chan<- prometheus.Metric) {
	for _, p := range v.policies {
		collector.Gauge(ch, descPolicyNodes, float64(v.policyNodes(p)), p.name)
		collector.Gauge(ch, descPolicyInfo, 1, p.name, strings.Join(p.interfaces, ","))
		services := 0
		for _, s := range v.services {
			if isLoadBalancer(s) && p.selectsService(s) {
				services++
			}
		}
		collector.Gauge(ch, descPolicyServices, float64(services), p.name)
		for _, c := range p.conditions {
			collector.Gauge(ch, descPolicyCondition, 1, p.name, c.Type, string(c.Status))
		}
		if v.self != nil && p.selectsNode(v.self) {
			matched := p.matchInterfaces(v.selfInterfaces)
			collector.Gauge(ch, descPolicyInterfaces, collector.BoolValue(len(matched) > 0), p.name, v.self.Name, strings.Join(matched, ","))
		}
	}
}
