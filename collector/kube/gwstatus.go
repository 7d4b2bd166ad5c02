package kube

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/lbprobe/lbprobe/collector"
)

// What the Gateway controller wrote: Gateway, listener and route conditions.
// Only the condition types below are reported (a fixed set keeps the label
// values bounded); their reasons are the controller's.
var (
	gatewayConditionTypes  = []string{string(gwv1.GatewayConditionAccepted), string(gwv1.GatewayConditionProgrammed)}
	listenerConditionTypes = []string{
		string(gwv1.ListenerConditionAccepted), string(gwv1.ListenerConditionProgrammed),
		string(gwv1.ListenerConditionResolvedRefs), string(gwv1.ListenerConditionConflicted),
	}
	routeConditionTypes = []string{string(gwv1.RouteConditionAccepted), string(gwv1.RouteConditionResolvedRefs)}
)

// maxReasonLength caps a condition reason used as a label value: reasons are
// CamelCase words, but a controller may write anything.
const maxReasonLength = 64

var routeParentLabels = []string{"namespace", "route", "gateway_namespace", "gateway", "section"}

var (
	descGatewayAccepted = desc("gateway_accepted",
		"1 when the Gateway's Accepted condition is True, else 0.", "namespace", "gateway")
	descGatewayCondition = desc("gateway_status_condition_info",
		"1 for each Accepted and Programmed condition of the Gateway, with its status and reason.",
		"namespace", "gateway", "condition", "status", "reason")
	descListenerCondition = desc("gateway_listener_status_condition_info",
		"1 for each Accepted, Programmed, ResolvedRefs and Conflicted condition of a Gateway listener (status.listeners), with its status and reason.",
		"namespace", "gateway", "listener", "condition", "status", "reason")
	descListenerAttachedRoutes = desc("gateway_listener_attached_routes",
		"How many routes the Gateway controller attached to the listener (status.listeners[].attachedRoutes).",
		"namespace", "gateway", "listener")
	descRouteAccepted = desc("gateway_route_accepted",
		"1 when the Gateway's controller accepted the HTTPRoute for this parentRef (Accepted=True), else 0; absent while that controller has written no status for it.",
		routeParentLabels...)
	descRouteResolvedRefs = desc("gateway_route_resolved_refs",
		"1 when the HTTPRoute's references (backendRefs) resolved for this parentRef (ResolvedRefs=True), else 0; absent while the controller has written no such condition.",
		routeParentLabels...)
	descRouteCondition = desc("gateway_route_status_condition_info",
		"1 for each Accepted and ResolvedRefs condition the Gateway's controller wrote for the HTTPRoute's parentRef, with its status and reason.",
		append(slices.Clone(routeParentLabels), "condition", "status", "reason")...)
	descRouteStale = desc("gateway_route_status_stale",
		"1 when the controller's conditions for the parentRef were written for an older generation of the HTTPRoute (observedGeneration < metadata.generation), else 0.",
		routeParentLabels...)
)

var gatewayStatusDescs = []*prometheus.Desc{
	descGatewayAccepted, descGatewayCondition, descListenerCondition, descListenerAttachedRoutes,
	descRouteAccepted, descRouteResolvedRefs, descRouteCondition, descRouteStale,
}

// findCondition returns the condition of the type, or nil.
func findCondition(conds []metav1.Condition, typ string) *metav1.Condition {
	for i := range conds {
		if conds[i].Type == typ {
			return &conds[i]
		}
	}
	return nil
}

func reasonLabel(reason string) string {
	if len(reason) > maxReasonLength {
		return reason[:maxReasonLength]
	}
	return reason
}

// controllers maps GatewayClass names to their controllerName.
type controllers map[string]gwv1.GatewayController

// routeParent is one Gateway parentRef of a route and the status the
// Gateway's controller wrote for it.
type routeParent struct {
	ref     gwv1.ParentReference
	gateway gatewayKey
	section string
	// status is the controller's entry for the ref; nil while it wrote none.
	status *gwv1.RouteParentStatus
}

// accepted reports the Accepted condition; known is false without one.
func (p routeParent) accepted() (accepted, known bool) {
	if p.status == nil {
		return false, false
	}
	c := findCondition(p.status.Conditions, string(gwv1.RouteConditionAccepted))
	if c == nil {
		return false, false
	}
	return c.Status == metav1.ConditionTrue, true
}

// routeParents returns the Gateway parentRefs of a route with the status
// entry that the referenced Gateway's controller wrote for each. Entries of
// other controllers are ignored; when the Gateway or its class is unknown,
// any controller's entry for the ref is taken.
func routeParents(r *gwv1.HTTPRoute, gws gatewayView, classes controllers) []routeParent {
	var out []routeParent
	for _, ref := range r.Spec.ParentRefs {
		if !isGatewayRef(ref) {
			continue
		}
		p := routeParent{ref: ref, gateway: refKey(r.Namespace, ref)}
		if ref.SectionName != nil {
			p.section = string(*ref.SectionName)
		}
		var want gwv1.GatewayController
		if gw, ok := gws.byKey[p.gateway]; ok {
			want = classes[string(gw.Spec.GatewayClassName)]
		}
		for i := range r.Status.Parents {
			st := &r.Status.Parents[i]
			if (want == "" || st.ControllerName == want) && sameParentRef(r.Namespace, st.ParentRef, ref) {
				p.status = st
				break
			}
		}
		out = append(out, p)
	}
	return out
}

// sameParentRef reports whether two parentRefs of a route in namespace ns
// name the same parent, section and port.
func sameParentRef(ns string, a, b gwv1.ParentReference) bool {
	if !isGatewayRef(a) || !isGatewayRef(b) || refKey(ns, a) != refKey(ns, b) {
		return false
	}
	str := func(s *gwv1.SectionName) string {
		if s == nil {
			return ""
		}
		return string(*s)
	}
	port := func(p *gwv1.PortNumber) int32 {
		if p == nil {
			return 0
		}
		return *p
	}
	return str(a.SectionName) == str(b.SectionName) && port(a.Port) == port(b.Port)
}

// refusedBy returns the Gateways whose controller refused the route for
// every parentRef that names them (Accepted=False): k8s_gateway answers
// their addresses for the route's hostnames all the same.
func refusedBy(parents []routeParent) []gatewayKey {
	verdict := map[gatewayKey]bool{} // true: refused by every known entry
	for _, p := range parents {
		accepted, known := p.accepted()
		if !known {
			continue
		}
		refused, seen := verdict[p.gateway]
		verdict[p.gateway] = !accepted && (!seen || refused)
	}
	var out []gatewayKey
	for k, refused := range verdict {
		if refused {
			out = append(out, k)
		}
	}
	slices.SortFunc(out, gatewayKey.less)
	return out
}

// collectGatewayStatus emits the conditions of every Gateway, its listeners
// and the HTTPRoutes attached to it.
func (v *view) collectGatewayStatus(ch chan<- prometheus.Metric) {
	for _, gw := range v.gateways.list {
		accepted := findCondition(gw.Status.Conditions, string(gwv1.GatewayConditionAccepted))
		collector.Gauge(ch, descGatewayAccepted, collector.BoolValue(accepted != nil && accepted.Status == metav1.ConditionTrue), gw.Namespace, gw.Name)
		for _, typ := range gatewayConditionTypes {
			if c := findCondition(gw.Status.Conditions, typ); c != nil {
				collector.Gauge(ch, descGatewayCondition, 1, gw.Namespace, gw.Name, typ, string(c.Status), reasonLabel(c.Reason))
			}
		}
		for _, l := range gw.Status.Listeners {
			name := string(l.Name)
			collector.Gauge(ch, descListenerAttachedRoutes, float64(l.AttachedRoutes), gw.Namespace, gw.Name, name)
			for _, typ := range listenerConditionTypes {
				if c := findCondition(l.Conditions, typ); c != nil {
					collector.Gauge(ch, descListenerCondition, 1, gw.Namespace, gw.Name, name, typ, string(c.Status), reasonLabel(c.Reason))
				}
			}
		}
	}
	for _, r := range v.routeList {
		type parentKey struct {
			gw      gatewayKey
			section string
		}
		var seen []parentKey
		for _, p := range routeParents(r, v.gateways, v.classes) {
			if p.status == nil {
				continue
			}
			// Two refs to one section on different ports share the labels:
			// the first wins.
			k := parentKey{p.gateway, p.section}
			if slices.Contains(seen, k) {
				continue
			}
			seen = append(seen, k)
			labels := []string{r.Namespace, r.Name, p.gateway.Namespace, p.gateway.Name, p.section}
			stale := false
			for _, typ := range routeConditionTypes {
				c := findCondition(p.status.Conditions, typ)
				if c == nil {
					continue
				}
				ok := collector.BoolValue(c.Status == metav1.ConditionTrue)
				switch typ {
				case string(gwv1.RouteConditionAccepted):
					collector.Gauge(ch, descRouteAccepted, ok, labels...)
				case string(gwv1.RouteConditionResolvedRefs):
					collector.Gauge(ch, descRouteResolvedRefs, ok, labels...)
				}
				collector.Gauge(ch, descRouteCondition, 1, append(slices.Clone(labels), typ, string(c.Status), reasonLabel(c.Reason))...)
				stale = stale || c.ObservedGeneration < r.Generation
			}
			collector.Gauge(ch, descRouteStale, collector.BoolValue(stale), labels...)
		}
	}
}
