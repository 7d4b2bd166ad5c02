package kube

import (
	"context"
	"log/slog"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/lbprobe/lbprobe/collector"
	"github.com/lbprobe/lbprobe/probe"
)

const ciliumController = "io.cilium/gateway-controller"

func routeStatus(controller string, ref gwv1.ParentReference, generation int64, conds ...metav1.Condition) gwv1.RouteParentStatus {
	for i := range conds {
		conds[i].ObservedGeneration = generation
		conds[i].LastTransitionTime = metav1.NewTime(testNow)
	}
	return gwv1.RouteParentStatus{ParentRef: ref, ControllerName: gwv1.GatewayController(controller), Conditions: conds}
}

func condition(typ string, ok bool, reason string) metav1.Condition {
	st := metav1.ConditionFalse
	if ok {
		st = metav1.ConditionTrue
	}
	return metav1.Condition{Type: typ, Status: st, Reason: reason}
}

func section(ref gwv1.ParentReference, name string) gwv1.ParentReference {
	ref.SectionName = ptr.To(gwv1.SectionName(name))
	return ref
}

// statusSeed is the seed's Gateway status story: two Gateways whose only
// listener is https, the seed's httpsredirect route naming their missing
// http section (NoMatchingParent), a route with a missing backend, a route
// whose status is a generation old, and a foreign controller's entry.
func statusSeed() seed {
	https := listener("https", 443, gwv1.HTTPSProtocolType, "*.sbbh.cloud")
	external := gateway("kube-system", "external", []string{"10.11.80.80"}, https)
	external.Status.Conditions = []metav1.Condition{condition("Accepted", true, "Accepted"), condition("Programmed", true, "Programmed")}
	external.Status.Listeners = []gwv1.ListenerStatus{{Name: "https", AttachedRoutes: 2, Conditions: []metav1.Condition{
		condition("Accepted", true, "Accepted"), condition("Programmed", true, "Programmed"),
		condition("ResolvedRefs", true, "ResolvedRefs"), condition("Conflicted", false, "NoConflicts"),
	}}}
	internal := gateway("kube-system", "internal", []string{"10.11.80.81"}, https)
	internal.Status.Conditions = []metav1.Condition{condition("Accepted", true, "Accepted"), condition("Programmed", false, "Invalid")}
	internal.Status.Listeners = []gwv1.ListenerStatus{{Name: "https", Conditions: []metav1.Condition{
		condition("Accepted", true, "Accepted"), condition("Programmed", false, "Invalid"),
		condition("ResolvedRefs", false, "InvalidCertificateRef"),
	}}}

	toInternal, toExternal := parentRef("kube-system", "internal"), parentRef("kube-system", "external")
	redirect := httpRoute("kube-system", "httpsredirect", nil, section(toInternal, "http"), section(toExternal, "http"))
	redirect.Generation = 1
	redirect.Status.Parents = []gwv1.RouteParentStatus{
		routeStatus(ciliumController, section(toInternal, "http"), 1, condition("Accepted", false, "NoMatchingParent"), condition("ResolvedRefs", true, "ResolvedRefs")),
		routeStatus(ciliumController, section(toExternal, "http"), 1, condition("Accepted", false, "NoMatchingParent"), condition("ResolvedRefs", true, "ResolvedRefs")),
	}
	public := httpRoute("apps", "public-app", []string{"app.sbbh.cloud"}, section(toExternal, "https"))
	public.Generation = 3
	public.Status.Parents = []gwv1.RouteParentStatus{
		// Another implementation's entry for the same parentRef is not ours.
		routeStatus("example.net/other", section(toExternal, "https"), 3, condition("Accepted", false, "NotAllowedByListeners")),
		routeStatus(ciliumController, section(toExternal, "https"), 2, condition("Accepted", true, "Accepted"), condition("ResolvedRefs", false, "BackendNotFound")),
	}
	// Refused by the internal Gateway, which k8s_gateway still answers for
	// the name.
	refused := httpRoute("apps", "internal-app", []string{"internal.sbbh.cloud"}, toInternal)
	refused.Generation = 1
	refused.Status.Parents = []gwv1.RouteParentStatus{
		routeStatus(ciliumController, toInternal, 1, condition("Accepted", false, "NotAllowedByListeners")),
	}
	// No controller has written a status yet.
	fresh := httpRoute("apps", "fresh", []string{"fresh.sbbh.cloud"}, toExternal)
	return seed{
		gateway: []runtime.Object{gatewayClass("cilium", ciliumController), external, internal, redirect, public, refused, fresh},
		gwAPI:   true,
	}
}

func TestGatewayStatusSeries(t *testing.T) {
	d := startFake(t, fakeClients(statusSeed()), Options{})
	want := `
# HELP gateway_accepted 1 when the Gateway's Accepted condition is True, else 0.
# TYPE gateway_accepted gauge
gateway_accepted{gateway="external",namespace="kube-system"} 1
gateway_accepted{gateway="internal",namespace="kube-system"} 1
# HELP gateway_listener_attached_routes How many routes the Gateway controller attached to the listener (status.listeners[].attachedRoutes).
# TYPE gateway_listener_attached_routes gauge
gateway_listener_attached_routes{gateway="external",listener="https",namespace="kube-system"} 2
gateway_listener_attached_routes{gateway="internal",listener="https",namespace="kube-system"} 0
# HELP gateway_listener_status_condition_info 1 for each Accepted, Programmed, ResolvedRefs and Conflicted condition of a Gateway listener (status.listeners), with its status and reason.
# TYPE gateway_listener_status_condition_info gauge
gateway_listener_status_condition_info{condition="Accepted",gateway="external",listener="https",namespace="kube-system",reason="Accepted",status="True"} 1
gateway_listener_status_condition_info{condition="Accepted",gateway="internal",listener="https",namespace="kube-system",reason="Accepted",status="True"} 1
gateway_listener_status_condition_info{condition="Conflicted",gateway="external",listener="https",namespace="kube-system",reason="NoConflicts",status="False"} 1
gateway_listener_status_condition_info{condition="Programmed",gateway="external",listener="https",namespace="kube-system",reason="Programmed",status="True"} 1
gateway_listener_status_condition_info{condition="Programmed",gateway="internal",listener="https",namespace="kube-system",reason="Invalid",status="False"} 1
gateway_listener_status_condition_info{condition="ResolvedRefs",gateway="external",listener="https",namespace="kube-system",reason="ResolvedRefs",status="True"} 1
gateway_listener_status_condition_info{condition="ResolvedRefs",gateway="internal",listener="https",namespace="kube-system",reason="InvalidCertificateRef",status="False"} 1
# HELP gateway_route_accepted 1 when the Gateway's controller accepted the HTTPRoute for this parentRef (Accepted=True), else 0; absent while that controller has written no status for it.
# TYPE gateway_route_accepted gauge
gateway_route_accepted{gateway="external",gateway_namespace="kube-system",namespace="apps",route="public-app",section="https"} 1
gateway_route_accepted{gateway="external",gateway_namespace="kube-system",namespace="kube-system",route="httpsredirect",section="http"} 0
gateway_route_accepted{gateway="internal",gateway_namespace="kube-system",namespace="apps",route="internal-app",section=""} 0
gateway_route_accepted{gateway="internal",gateway_namespace="kube-system",namespace="kube-system",route="httpsredirect",section="http"} 0
# HELP gateway_route_resolved_refs 1 when the HTTPRoute's references (backendRefs) resolved for this parentRef (ResolvedRefs=True), else 0; absent while the controller has written no such condition.
# TYPE gateway_route_resolved_refs gauge
gateway_route_resolved_refs{gateway="external",gateway_namespace="kube-system",namespace="apps",route="public-app",section="https"} 0
gateway_route_resolved_refs{gateway="external",gateway_namespace="kube-system",namespace="kube-system",route="httpsredirect",section="http"} 1
gateway_route_resolved_refs{gateway="internal",gateway_namespace="kube-system",namespace="kube-system",route="httpsredirect",section="http"} 1
# HELP gateway_route_status_condition_info 1 for each Accepted and ResolvedRefs condition the Gateway's controller wrote for the HTTPRoute's parentRef, with its status and reason.
# TYPE gateway_route_status_condition_info gauge
gateway_route_status_condition_info{condition="Accepted",gateway="external",gateway_namespace="kube-system",namespace="apps",reason="Accepted",route="public-app",section="https",status="True"} 1
gateway_route_status_condition_info{condition="Accepted",gateway="external",gateway_namespace="kube-system",namespace="kube-system",reason="NoMatchingParent",route="httpsredirect",section="http",status="False"} 1
gateway_route_status_condition_info{condition="Accepted",gateway="internal",gateway_namespace="kube-system",namespace="apps",reason="NotAllowedByListeners",route="internal-app",section="",status="False"} 1
gateway_route_status_condition_info{condition="Accepted",gateway="internal",gateway_namespace="kube-system",namespace="kube-system",reason="NoMatchingParent",route="httpsredirect",section="http",status="False"} 1
gateway_route_status_condition_info{condition="ResolvedRefs",gateway="external",gateway_namespace="kube-system",namespace="apps",reason="BackendNotFound",route="public-app",section="https",status="False"} 1
gateway_route_status_condition_info{condition="ResolvedRefs",gateway="external",gateway_namespace="kube-system",namespace="kube-system",reason="ResolvedRefs",route="httpsredirect",section="http",status="True"} 1
gateway_route_status_condition_info{condition="ResolvedRefs",gateway="internal",gateway_namespace="kube-system",namespace="kube-system",reason="ResolvedRefs",route="httpsredirect",section="http",status="True"} 1
# HELP gateway_route_status_stale 1 when the controller's conditions for the parentRef were written for an older generation of the HTTPRoute (observedGeneration < metadata.generation), else 0.
# TYPE gateway_route_status_stale gauge
gateway_route_status_stale{gateway="external",gateway_namespace="kube-system",namespace="apps",route="public-app",section="https"} 1
gateway_route_status_stale{gateway="external",gateway_namespace="kube-system",namespace="kube-system",route="httpsredirect",section="http"} 0
gateway_route_status_stale{gateway="internal",gateway_namespace="kube-system",namespace="apps",route="internal-app",section=""} 0
gateway_route_status_stale{gateway="internal",gateway_namespace="kube-system",namespace="kube-system",route="httpsredirect",section="http"} 0
# HELP gateway_status_condition_info 1 for each Accepted and Programmed condition of the Gateway, with its status and reason.
# TYPE gateway_status_condition_info gauge
gateway_status_condition_info{condition="Accepted",gateway="external",namespace="kube-system",reason="Accepted",status="True"} 1
gateway_status_condition_info{condition="Accepted",gateway="internal",namespace="kube-system",reason="Accepted",status="True"} 1
gateway_status_condition_info{condition="Programmed",gateway="external",namespace="kube-system",reason="Programmed",status="True"} 1
gateway_status_condition_info{condition="Programmed",gateway="internal",namespace="kube-system",reason="Invalid",status="False"} 1
`
	names := []string{
		"gateway_accepted", "gateway_status_condition_info", "gateway_listener_status_condition_info",
		"gateway_listener_attached_routes", "gateway_route_accepted", "gateway_route_resolved_refs",
		"gateway_route_status_condition_info", "gateway_route_status_stale",
	}
	if err := testutil.CollectAndCompare(d, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}

	// The refused route's hostname carries the refusing Gateway's address;
	// the accepted one and the one without status carry none.
	refused := map[string][]netip.Addr{}
	for _, h := range d.Targets().Hostnames {
		if h.Source == "httproute" {
			refused[h.Name] = h.NotAcceptedBy
		}
	}
	wantRefused := map[string][]netip.Addr{
		"public-app":   nil,
		"internal-app": {netip.MustParseAddr("10.11.80.81")},
		"fresh":        nil,
	}
	if !reflect.DeepEqual(refused, wantRefused) {
		t.Errorf("NotAcceptedBy by route = %v, want %v", refused, wantRefused)
	}
}

func TestRefusedBy(t *testing.T) {
	gw := gatewayKey{"ns", "gw"}
	other := gatewayKey{"ns", "other"}
	accepted := &gwv1.RouteParentStatus{Conditions: []metav1.Condition{condition("Accepted", true, "Accepted")}}
	refused := &gwv1.RouteParentStatus{Conditions: []metav1.Condition{condition("Accepted", false, "NoMatchingParent")}}
	noAccepted := &gwv1.RouteParentStatus{Conditions: []metav1.Condition{condition("ResolvedRefs", true, "ResolvedRefs")}}
	tests := []struct {
		name    string
		parents []routeParent
		want    []gatewayKey
	}{
		{"refused", []routeParent{{gateway: gw, status: refused}}, []gatewayKey{gw}},
		{"accepted", []routeParent{{gateway: gw, status: accepted}}, nil},
		{"no status yet", []routeParent{{gateway: gw}}, nil},
		{"no Accepted condition", []routeParent{{gateway: gw, status: noAccepted}}, nil},
		{"one section accepted, another refused: the Gateway serves the route", []routeParent{
			{gateway: gw, section: "http", status: refused}, {gateway: gw, section: "https", status: accepted}}, nil},
		{"two Gateways, one refuses", []routeParent{{gateway: gw, status: accepted}, {gateway: other, status: refused}}, []gatewayKey{other}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := refusedBy(tt.parents); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("refusedBy = %v, want %v", got, tt.want)
			}
		})
	}
}

// A refused route's DNS answer is route_not_accepted, even when it is the
// address set k8s_gateway should answer.
func TestDNSVerdictOfARefusedRoute(t *testing.T) {
	refusing := netip.MustParseAddr("10.11.80.81")
	serving := netip.MustParseAddr("10.11.80.80")
	dns := func(res probe.DNSResult) collector.Probers {
		return collector.Probers{DNS: func(_ context.Context, _, _ string, _ []netip.Addr, _ probe.DNSOptions, _ *slog.Logger) probe.DNSResult {
			return res
		}}
	}
	correct := probe.DNSResult{Result: probe.Result{Success: true}, Verdict: probe.DNSCorrect, Rcode: "NOERROR", Addresses: []netip.Addr{refusing}}
	nx := probe.DNSResult{Result: probe.Result{Reason: probe.ReasonNXDomain}, Verdict: probe.DNSNXDomain, Rcode: "NXDOMAIN"}
	tests := []struct {
		name    string
		answer  probe.DNSResult
		refused []netip.Addr
		want    probe.DNSVerdict
	}{
		{"answer is the refusing Gateway", correct, []netip.Addr{refusing}, collector.VerdictRouteNotAccepted},
		{"answer is a serving Gateway", correct, []netip.Addr{serving}, probe.DNSCorrect},
		{"route accepted everywhere", correct, nil, probe.DNSCorrect},
		{"no answer stays nxdomain", nx, []netip.Addr{refusing}, probe.DNSNXDomain},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			targets := collector.Targets{Hostnames: []collector.Hostname{{
				Hostname: "internal.sbbh.cloud", Expect: []netip.Addr{refusing}, Servers: []string{"10.11.80.82:53"},
				Source: "httproute", Namespace: "apps", Name: "internal-app", NotAcceptedBy: tt.refused,
			}}}
			e := collector.NewEngine(collector.Config{Concurrency: 1, Probers: dns(tt.answer)},
				collector.SourceFunc(func() collector.Targets { return targets }))
			got := e.Probe(t.Context(), time.Minute).Hostnames()[0].DNS[0].Result
			if got.Verdict != tt.want || got.Success != (tt.want == probe.DNSCorrect) {
				t.Errorf("verdict %q (success %v), want %q", got.Verdict, got.Success, tt.want)
			}
		})
	}
}

func backendRule(names ...string) gwv1.HTTPRouteRule {
	var rule gwv1.HTTPRouteRule
	for _, n := range names {
		rule.BackendRefs = append(rule.BackendRefs, gwv1.HTTPBackendRef{BackendRef: gwv1.BackendRef{
			BackendObjectReference: gwv1.BackendObjectReference{Name: gwv1.ObjectName(n), Port: ptr.To(gwv1.PortNumber(80))},
		}})
	}
	return rule
}

// Cilium's Gateway Services carry a placeholder endpoint: their backends
// are the routes' backendRefs, routes a Gateway refused do not count.
func TestGatewayBackends(t *testing.T) {
	s := statusSeed()
	for _, o := range s.gateway {
		if r, ok := o.(*gwv1.HTTPRoute); ok {
			switch r.Name {
			case "public-app":
				r.Spec.Rules = []gwv1.HTTPRouteRule{backendRule("app", "app"), backendRule("empty")}
			case "internal-app":
				r.Spec.Rules = []gwv1.HTTPRouteRule{backendRule("internal-svc")}
			}
		}
	}
	owned := func(name string) *corev1.Service {
		svc := lbService("kube-system", "cilium-gateway-"+name, "10.11.80.80")
		svc.OwnerReferences = []metav1.OwnerReference{{APIVersion: "gateway.networking.k8s.io/v1", Kind: "Gateway", Name: name, UID: "u-" + types.UID(name)}}
		return svc
	}
	labelled := with(lbService("kube-system", "cilium-gateway-internal", "10.11.80.81"), label(owningGatewayLabel, "internal"))
	placeholder := func(svc string) *discoveryv1.EndpointSlice {
		s := endpointSlice("kube-system", svc, svc, discoveryv1.AddressTypeIPv4, []string{"192.192.192.192"}, "x")
		s.Endpoints[0].TargetRef = nil
		return s
	}
	s.kube = []runtime.Object{
		owned("external"), labelled, placeholder("cilium-gateway-external"), placeholder("cilium-gateway-internal"),
		endpointSlice("apps", "app-1", "app", discoveryv1.AddressTypeIPv4, []string{"10.42.0.1", "10.42.0.2"}, "app-a", "app-b"),
		endpointSlice("apps", "internal-1", "internal-svc", discoveryv1.AddressTypeIPv4, []string{"10.42.1.1"}, "int-a"),
	}
	d := startFake(t, fakeClients(s), Options{})
	want := `
# HELP gateway_route_backends_ready Ready endpoints of a Service that an HTTPRoute's backendRefs name.
# TYPE gateway_route_backends_ready gauge
gateway_route_backends_ready{backend="app",backend_namespace="apps",namespace="apps",route="public-app"} 2
gateway_route_backends_ready{backend="empty",backend_namespace="apps",namespace="apps",route="public-app"} 0
gateway_route_backends_ready{backend="internal-svc",backend_namespace="apps",namespace="apps",route="internal-app"} 1
# HELP loadbalancer_backends_ready Ready endpoints behind the LoadBalancer Service (EndpointSlices; an endpoint without a ready condition counts as ready). For a Service owned by a Gateway, the ready endpoints of the Services that the backendRefs of the routes attached to the Gateway name (Cilium's Gateway Services carry a placeholder endpoint, 192.192.192.192:9999). 0: the IP may be announced while every connect fails.
# TYPE loadbalancer_backends_ready gauge
loadbalancer_backends_ready{namespace="kube-system",service="cilium-gateway-external"} 2
loadbalancer_backends_ready{namespace="kube-system",service="cilium-gateway-internal"} 0
`
	if err := testutil.CollectAndCompare(d, strings.NewReader(want), "loadbalancer_backends_ready", "gateway_route_backends_ready"); err != nil {
		t.Fatal(err)
	}
}
