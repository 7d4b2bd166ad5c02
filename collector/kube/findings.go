package kube

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/lbprobe/lbprobe/probe"
)

// Finding is one thing the cluster's objects say is wrong, in words: what
// the landing page and the debug view of /probe show next to the probes.
// The series of the same checks are the ones to alert on.
type Finding struct {
	Check  string // one of the Check* names below
	Object string // the object it is about, e.g. "Service apps/pinned"
	Detail string
	// Targets are the load balancer IPs and hostnames it concerns; empty
	// for a finding about the whole cluster (a policy).
	Targets []string
}

// The checks a Finding comes from.
const (
	CheckRequestedIP        = "requested_ip_not_assigned"
	CheckNoReadyBackends    = "no_ready_backends"
	CheckSplitBrain         = "split_brain"
	CheckPolicyNoNode       = "policy_no_node"
	CheckPolicyInterfaces   = "policy_interface_mismatch"
	CheckPolicyInvalid      = "policy_invalid"
	CheckRouteNotAccepted   = "route_not_accepted"
	CheckRouteRefs          = "route_refs_unresolved"
	CheckRouteStatusStale   = "route_status_stale"
	CheckListenerNotHealthy = "listener_invalid"
)

// Findings returns what the caches say is wrong, sorted by check and
// object; nil before Start.
func (d *Discovery) Findings() []Finding {
	if !d.started.Load() {
		return nil
	}
	return d.snapshot(true).findings()
}

func (v *view) findings() []Finding {
	var out []Finding
	for _, s := range v.services {
		if isLoadBalancer(s) {
			out = append(out, v.serviceFindings(s)...)
		}
	}
	for _, e := range v.sharedIPs() {
		if len(e.holders) > 1 {
			out = append(out, Finding{
				Check: CheckSplitBrain, Object: "IP " + e.ip.String(), Targets: []string{e.ip.String()},
				Detail: fmt.Sprintf("shared by %s, whose L2 leases are held by %s: each holder answers ARP for the IP", strings.Join(e.services, ", "), strings.Join(e.holders, " and ")),
			})
		}
	}
	out = append(out, v.policyFindings()...)
	out = append(out, v.gatewayFindings()...)
	slices.SortStableFunc(out, func(a, b Finding) int {
		if c := strings.Compare(a.Check, b.Check); c != 0 {
			return c
		}
		return strings.Compare(a.Object, b.Object)
	})
	return out
}

// serviceFindings: the requested IPs and the backends of a LoadBalancer
// Service.
func (v *view) serviceFindings(s *corev1.Service) []Finding {
	var out []Finding
	object := "Service " + s.Namespace + "/" + s.Name
	assigned := ingressIPs(s)
	targets := addrStrings(assigned)
	var missing []netip.Addr
	for _, ip := range requestedIPs(s) {
		if !slices.Contains(assigned, ip) {
			missing = append(missing, ip)
		}
	}
	if len(missing) > 0 {
		has := "none"
		if len(assigned) > 0 {
			has = strings.Join(targets, ", ")
		}
		detail := fmt.Sprintf("requests %s, has %s", strings.Join(addrStrings(missing), ", "), has)
		if c := ipamRequest(s); c != nil {
			detail += fmt.Sprintf(" (LB-IPAM: %s=%s, %s)", c.Type, c.Status, c.Reason)
		}
		out = append(out, Finding{Check: CheckRequestedIP, Object: object, Detail: detail, Targets: addrStrings(append(slices.Clone(assigned), missing...))})
	}
	if v.endpoints != nil && v.backendsReady(s) == 0 {
		detail := "no ready endpoint in its EndpointSlices: the IP may be announced while every connect fails"
		if gw, owned := owningGateway(s); owned && v.gwKnown {
			detail = fmt.Sprintf("no ready endpoint behind the routes attached to Gateway %s/%s", gw.Namespace, gw.Name)
		}
		out = append(out, Finding{Check: CheckNoReadyBackends, Object: object, Detail: detail, Targets: targets})
	}
	return out
}

// policyFindings: policies that select no node, that Cilium could not
// parse, or whose interfaces match none of this node's.
func (v *view) policyFindings() []Finding {
	var out []Finding
	for _, p := range v.policies {
		object := "CiliumL2AnnouncementPolicy " + p.name
		if v.policyNodes(p) == 0 {
			out = append(out, Finding{Check: CheckPolicyNoNode, Object: object, Detail: "its nodeSelector matches no Node: nothing announces the IPs it selects"})
		}
		for _, c := range p.conditions {
			if c.Status == metav1.ConditionTrue {
				out = append(out, Finding{Check: CheckPolicyInvalid, Object: object, Detail: fmt.Sprintf("%s: %s", c.Type, c.Message)})
			}
		}
		if v.self != nil && p.selectsNode(v.self) && len(p.matchInterfaces(v.selfInterfaces)) == 0 {
			out = append(out, Finding{Check: CheckPolicyInterfaces, Object: object, Detail: fmt.Sprintf(
				"interfaces %s match none of node %s's up IPv4 interfaces (%s)", strings.Join(p.interfaces, ","), v.self.Name, strings.Join(v.selfInterfaces, ", "))})
		}
	}
	return out
}

// gatewayFindings: listeners whose conditions are not healthy, and routes
// a Gateway's controller refused, could not resolve or has not caught up
// with.
func (v *view) gatewayFindings() []Finding {
	var out []Finding
	for _, gw := range v.gateways.list {
		for _, l := range gw.Status.Listeners {
			for _, typ := range listenerConditionTypes {
				c := findCondition(l.Conditions, typ)
				bad := typ == string(gwv1.ListenerConditionConflicted)
				if c == nil || (c.Status == metav1.ConditionTrue) != bad {
					continue
				}
				out = append(out, Finding{
					Check: CheckListenerNotHealthy, Object: fmt.Sprintf("Gateway %s/%s listener %s", gw.Namespace, gw.Name, l.Name),
					Detail: fmt.Sprintf("%s=%s (%s) %s", c.Type, c.Status, c.Reason, c.Message),
				})
			}
		}
	}
	for _, r := range v.routeList {
		hosts := make([]string, len(r.Spec.Hostnames))
		for i, h := range r.Spec.Hostnames {
			hosts[i] = strings.ToLower(string(h))
		}
		object := "HTTPRoute " + r.Namespace + "/" + r.Name
		for _, p := range routeParents(r, v.gateways, v.classes) {
			if p.status == nil {
				continue
			}
			parent := p.gateway.Namespace + "/" + p.gateway.Name
			if p.section != "" {
				parent += " section " + p.section
			}
			if c := findCondition(p.status.Conditions, string(gwv1.RouteConditionAccepted)); c != nil && c.Status != metav1.ConditionTrue {
				out = append(out, Finding{Check: CheckRouteNotAccepted, Object: object, Targets: hosts,
					Detail: fmt.Sprintf("Gateway %s refused it (%s)%s; k8s_gateway still answers its hostnames with that Gateway's address", parent, c.Reason, suffix(c.Message))})
			}
			if c := findCondition(p.status.Conditions, string(gwv1.RouteConditionResolvedRefs)); c != nil && c.Status != metav1.ConditionTrue {
				out = append(out, Finding{Check: CheckRouteRefs, Object: object, Targets: hosts,
					Detail: fmt.Sprintf("on Gateway %s: %s%s", parent, c.Reason, suffix(c.Message))})
			}
			for _, c := range p.status.Conditions {
				if c.ObservedGeneration < r.Generation {
					out = append(out, Finding{Check: CheckRouteStatusStale, Object: object, Targets: hosts,
						Detail: fmt.Sprintf("the status for Gateway %s was written for generation %d, the route is at %d: its controller has not caught up", parent, c.ObservedGeneration, r.Generation)})
					break
				}
			}
		}
	}
	return out
}

// policyNodes counts the Nodes a policy's nodeSelector matches.
func (v *view) policyNodes(p l2Policy) int {
	n := 0
	for _, node := range v.nodes {
		if p.selectsNode(node) {
			n++
		}
	}
	return n
}

// addrStrings returns the distinct IPs as strings, sorted.
func addrStrings(ips []netip.Addr) []string {
	sorted := probe.SortAddrs(slices.Clone(ips))
	out := make([]string, len(sorted))
	for i, ip := range sorted {
		out[i] = ip.String()
	}
	return out
}

// suffix returns ": message", or "" for an empty message.
func suffix(message string) string {
	if message == "" {
		return ""
	}
	return ": " + message
}
