package kube

import (
	"cmp"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/tools/cache"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/lbprobe/lbprobe/collector"
)

// Backends: how many ready endpoints stand behind a LoadBalancer Service.
// An IP can be assigned and announced while every connect to it is refused or
// hangs, because nothing serves behind it.

// serviceIndex indexes EndpointSlices by "namespace/service" (their
// kubernetes.io/service-name label).
const serviceIndex = "service"

// The labels Cilium puts on the LoadBalancer Service it creates for a Gateway
// (cilium-gateway-<name>), naming the Gateway (shortened past 63 characters);
// the second is deprecated.
const (
	gatewayNameLabel   = "gateway.networking.k8s.io/gateway-name"
	owningGatewayLabel = "io.cilium.gateway/owning-gateway"
)

var (
	descBackendsReady = desc("loadbalancer_backends_ready",
		"Ready endpoints behind the LoadBalancer Service (EndpointSlices; an endpoint without a ready condition counts as ready). For a Service owned by a Gateway, the ready endpoints of the Services that the backendRefs of the routes attached to the Gateway name (Cilium's Gateway Services carry a placeholder endpoint, 192.192.192.192:9999). 0: the IP may be announced while every connect fails.",
		"namespace", "service")
	descRouteBackendsReady = desc("gateway_route_backends_ready",
		"Ready endpoints of a Service that an HTTPRoute's backendRefs name.",
		"namespace", "route", "backend_namespace", "backend")
)

func endpointSliceService(obj any) ([]string, error) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil, nil
	}
	name := s.Labels[discoveryv1.LabelServiceName]
	if name == "" {
		return nil, nil
	}
	return []string{s.Namespace + "/" + name}, nil
}

// readyEndpoints counts the distinct ready endpoints of a Service's
// EndpointSlices. An endpoint is one pod (its targetRef) or, without a
// targetRef, one address: a dual-stack pod listed in an IPv4 and an IPv6
// slice counts once.
func readyEndpoints(indexer cache.Indexer, namespace, name string) int {
	objs, err := indexer.ByIndex(serviceIndex, namespace+"/"+name)
	if err != nil {
		return 0
	}
	seen := make(map[string]bool)
	for _, o := range objs {
		s, ok := o.(*discoveryv1.EndpointSlice)
		if !ok {
			continue
		}
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			key := ""
			switch {
			case ep.TargetRef != nil:
				key = "ref " + ep.TargetRef.Kind + " " + ep.TargetRef.Namespace + "/" + ep.TargetRef.Name
			case len(ep.Addresses) > 0:
				key = "addr " + ep.Addresses[0]
			default:
				continue
			}
			seen[key] = true
		}
	}
	return len(seen)
}

// owningGateway returns the Gateway a Service belongs to: an owner reference
// of kind Gateway (group gateway.networking.k8s.io, any version), else one of
// Cilium's labels naming it.
func owningGateway(s *corev1.Service) (gatewayKey, bool) {
	for _, ref := range s.OwnerReferences {
		if ref.Kind == "Gateway" && groupOf(ref.APIVersion) == gwv1.GroupName {
			return gatewayKey{s.Namespace, ref.Name}, true
		}
	}
	for _, l := range []string{gatewayNameLabel, owningGatewayLabel} {
		if name := s.Labels[l]; name != "" {
			return gatewayKey{s.Namespace, name}, true
		}
	}
	return gatewayKey{}, false
}

// groupOf returns the group of an apiVersion ("" for the core group).
func groupOf(apiVersion string) string {
	group, _, found := strings.Cut(apiVersion, "/")
	if !found {
		return ""
	}
	return group
}

// serviceKey names a Service.
type serviceKey struct{ Namespace, Name string }

// routeBackends returns the distinct Services a route's backendRefs name
// (kind Service in the core group; without a namespace, the route's).
func routeBackends(r *gwv1.HTTPRoute) []serviceKey {
	var out []serviceKey
	for _, rule := range r.Spec.Rules {
		for _, b := range rule.BackendRefs {
			if b.Group != nil && *b.Group != "" && *b.Group != "core" {
				continue
			}
			if b.Kind != nil && *b.Kind != "Service" {
				continue
			}
			k := serviceKey{r.Namespace, string(b.Name)}
			if b.Namespace != nil && *b.Namespace != "" {
				k.Namespace = string(*b.Namespace)
			}
			if !slices.Contains(out, k) {
				out = append(out, k)
			}
		}
	}
	slices.SortFunc(out, func(a, b serviceKey) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return out
}

// gatewayBackends returns the backend Services of the routes attached to a
// Gateway: the routes whose parentRefs name it and that its controller did
// not refuse.
func (v *view) gatewayBackends(gw gatewayKey) []serviceKey {
	var out []serviceKey
	for _, r := range v.routeList {
		parents := routeParents(r, v.gateways, v.classes)
		if !slices.ContainsFunc(parents, func(p routeParent) bool { return p.gateway == gw }) ||
			slices.Contains(refusedBy(parents), gw) {
			continue
		}
		for _, b := range routeBackends(r) {
			if !slices.Contains(out, b) {
				out = append(out, b)
			}
		}
	}
	return out
}

// backendsReady is the value of loadbalancer_backends_ready for a Service.
func (v *view) backendsReady(s *corev1.Service) int {
	gw, owned := owningGateway(s)
	if !owned || !v.gwKnown {
		return readyEndpoints(v.endpoints, s.Namespace, s.Name)
	}
	n := 0
	for _, b := range v.gatewayBackends(gw) {
		n += readyEndpoints(v.endpoints, b.Namespace, b.Name)
	}
	return n
}

// collectBackends emits the backend series (only when EndpointSlices are
// watched).
func (v *view) collectBackends(ch chan<- prometheus.Metric) {
	if v.endpoints == nil {
		return
	}
	for _, s := range v.services {
		if isLoadBalancer(s) {
			collector.Gauge(ch, descBackendsReady, float64(v.backendsReady(s)), s.Namespace, s.Name)
		}
	}
	for _, r := range v.routeList {
		for _, b := range routeBackends(r) {
			collector.Gauge(ch, descRouteBackendsReady, float64(readyEndpoints(v.endpoints, b.Namespace, b.Name)), r.Namespace, r.Name, b.Namespace, b.Name)
		}
	}
}
