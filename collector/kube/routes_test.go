package kube

import (
	"log/slog"
	"reflect"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/lbprobe/lbprobe/collector"
)

var discard = slog.New(slog.DiscardHandler)

// hostResult is the part of a hostname target the route tests check.
type hostResult struct {
	Hostname, Namespace, Name string
	Expect                    []string
}

func summarize(hs []collector.Hostname) []hostResult {
	var out []hostResult
	for _, h := range hs {
		r := hostResult{Hostname: h.Hostname, Namespace: h.Namespace, Name: h.Name}
		for _, a := range h.Expect {
			r.Expect = append(r.Expect, a.String())
		}
		out = append(out, r)
	}
	return out
}

func TestRouteExpect(t *testing.T) {
	gwA := gateway("apps", "gw-a", []string{"192.0.2.1"})
	gwInfra := gateway("infra", "gw-infra", []string{"192.0.2.2", "2001:db8::2"})
	gwInfraA := gateway("infra", "gw-a", []string{"192.0.2.3"})
	noAddr := gateway("infra", "pending", nil)
	hostnameAddr := gateway("infra", "by-name", []string{"192.0.2.4"})
	hostnameAddr.Status.Addresses = append(hostnameAddr.Status.Addresses,
		gwv1.GatewayStatusAddress{Type: ptr.To(gwv1.HostnameAddressType), Value: "lb.example.net"},
		gwv1.GatewayStatusAddress{Value: "192.0.2.5"}, // unset type = IPAddress
		gwv1.GatewayStatusAddress{Type: ptr.To(gwv1.IPAddressType), Value: "not-an-ip"})
	all := []*gwv1.Gateway{gwA, gwInfra, gwInfraA, noAddr, hostnameAddr}

	svcRef := parentRef("apps", "gw-a")
	svcRef.Kind = ptr.To(gwv1.Kind("Service"))
	otherGroup := parentRef("apps", "gw-a")
	otherGroup.Group = ptr.To(gwv1.Group("example.com"))
	explicitGroup := parentRef("", "gw-a")
	explicitGroup.Group = ptr.To(gwv1.Group(gwv1.GroupName))
	explicitGroup.Kind = ptr.To(gwv1.Kind("Gateway"))

	tests := []struct {
		name      string
		routes    []*gwv1.HTTPRoute
		want      []hostResult
		conflicts map[string]bool
	}{{
		name:   "namespace defaults to the route's",
		routes: []*gwv1.HTTPRoute{httpRoute("apps", "r", []string{"a.example.com"}, parentRef("", "gw-a"))},
		want:   []hostResult{{"a.example.com", "apps", "r", []string{"192.0.2.1"}}},
	}, {
		name: "explicit namespace does not leak into later parentRefs",
		routes: []*gwv1.HTTPRoute{httpRoute("apps", "r4", []string{"a.example.com"},
			parentRef("infra", "gw-infra"), parentRef("", "gw-a"))},
		want:      []hostResult{{"a.example.com", "apps", "r4", []string{"192.0.2.1", "192.0.2.2", "2001:db8::2"}}},
		conflicts: map[string]bool{"a.example.com": true},
	}, {
		name:   "cross-namespace parentRef",
		routes: []*gwv1.HTTPRoute{httpRoute("apps", "r", []string{"a.example.com"}, parentRef("infra", "gw-a"))},
		want:   []hostResult{{"a.example.com", "apps", "r", []string{"192.0.2.3"}}},
	}, {
		name:   "gateway without addresses: skipped",
		routes: []*gwv1.HTTPRoute{httpRoute("apps", "r", []string{"a.example.com"}, parentRef("infra", "pending"))},
	}, {
		name:   "missing gateway: skipped",
		routes: []*gwv1.HTTPRoute{httpRoute("apps", "r", []string{"a.example.com"}, parentRef("infra", "nope"))},
	}, {
		name:   "Hostname-type and invalid addresses skipped, untyped kept",
		routes: []*gwv1.HTTPRoute{httpRoute("apps", "r", []string{"a.example.com"}, parentRef("infra", "by-name"))},
		want:   []hostResult{{"a.example.com", "apps", "r", []string{"192.0.2.4", "192.0.2.5"}}},
	}, {
		name:   "Service kind and foreign group parentRefs ignored, explicit group/kind kept",
		routes: []*gwv1.HTTPRoute{httpRoute("apps", "r", []string{"a.example.com"}, svcRef, otherGroup, explicitGroup)},
		want:   []hostResult{{"a.example.com", "apps", "r", []string{"192.0.2.1"}}},
	}, {
		name:   "wildcard: a generated name under it",
		routes: []*gwv1.HTTPRoute{httpRoute("apps", "r", []string{"*.example.com", "exact.example.com"}, parentRef("", "gw-a"))},
		want: []hostResult{
			{"lbprobe-wildcard-check.example.com", "apps", "r", []string{"192.0.2.1"}},
			{"exact.example.com", "apps", "r", []string{"192.0.2.1"}},
		},
	}, {
		name: "same hostname, different gateways: union on every claim, conflict",
		routes: []*gwv1.HTTPRoute{
			httpRoute("apps", "one", []string{"dup.example.com"}, parentRef("", "gw-a")),
			httpRoute("team", "two", []string{"dup.example.com"}, parentRef("infra", "gw-infra")),
		},
		want: []hostResult{
			{"dup.example.com", "apps", "one", []string{"192.0.2.1", "192.0.2.2", "2001:db8::2"}},
			{"dup.example.com", "team", "two", []string{"192.0.2.1", "192.0.2.2", "2001:db8::2"}},
		},
		conflicts: map[string]bool{"dup.example.com": true},
	}, {
		name: "same hostname, same gateway: no conflict",
		routes: []*gwv1.HTTPRoute{
			httpRoute("apps", "one", []string{"dup.example.com"}, parentRef("", "gw-a")),
			httpRoute("apps", "two", []string{"dup.example.com"}, parentRef("apps", "gw-a")),
		},
		want: []hostResult{
			{"dup.example.com", "apps", "one", []string{"192.0.2.1"}},
			{"dup.example.com", "apps", "two", []string{"192.0.2.1"}},
		},
		conflicts: map[string]bool{"dup.example.com": false},
	}, {
		name: "second claim on a gateway without addresses still conflicts",
		routes: []*gwv1.HTTPRoute{
			httpRoute("apps", "one", []string{"dup.example.com"}, parentRef("", "gw-a")),
			httpRoute("apps", "two", []string{"dup.example.com"}, parentRef("infra", "pending")),
		},
		want: []hostResult{
			{"dup.example.com", "apps", "one", []string{"192.0.2.1"}},
			{"dup.example.com", "apps", "two", []string{"192.0.2.1"}},
		},
		conflicts: map[string]bool{"dup.example.com": true},
	}, {
		name:   "route without hostnames: nothing (k8s_gateway does not index it)",
		routes: []*gwv1.HTTPRoute{httpRoute("apps", "r", nil, parentRef("", "gw-a"))},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gws := newGatewayView(all, discard)
			idx := newRouteIndex(sortRoutes(tt.routes), gws, nil)
			got := summarize(routeHostnames(idx, gws, []string{"192.0.2.53:53"}, "", discard))
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
			for _, hc := range idx.hosts {
				if want, ok := tt.conflicts[hc.hostname]; ok && hc.conflict() != want {
					t.Errorf("%s: conflict %v, want %v", hc.hostname, hc.conflict(), want)
				}
			}
		})
	}
}

func TestRouteZone(t *testing.T) {
	gws := newGatewayView([]*gwv1.Gateway{gateway("apps", "gw", []string{"192.0.2.1"}, listener("https", 443, gwv1.HTTPSProtocolType, ""))}, discard)
	idx := newRouteIndex([]*gwv1.HTTPRoute{httpRoute("apps", "r", []string{"in.sbbh.cloud", "out.example.com"}, parentRef("", "gw"))}, gws, nil)
	hs := routeHostnames(idx, gws, []string{"192.0.2.53:53"}, "sbbh.cloud", discard)
	if len(hs) != 2 || hs[0].Hostname != "in.sbbh.cloud" || len(hs[0].Servers) != 1 {
		t.Fatalf("in zone: %+v", hs)
	}
	if hs[1].Hostname != "out.example.com" || len(hs[1].Servers) != 0 || len(hs[1].TLS) != 1 {
		t.Fatalf("out of zone: DNS off, TLS kept: %+v", hs[1])
	}
}

func TestTLSChecks(t *testing.T) {
	ext := gateway("infra", "ext", []string{"192.0.2.1"},
		listener("http", 80, gwv1.HTTPProtocolType, ""),
		listener("https", 443, gwv1.HTTPSProtocolType, "*.example.com"),
		listener("https-other", 8443, gwv1.HTTPSProtocolType, "other.example.org"),
		listener("tls", 9443, gwv1.TLSProtocolType, ""))
	second := gateway("infra", "second", []string{"192.0.2.2"}, listener("https", 443, gwv1.HTTPSProtocolType, ""))
	bare := gateway("infra", "bare", nil, listener("https", 443, gwv1.HTTPSProtocolType, ""))
	gws := newGatewayView([]*gwv1.Gateway{ext, second, bare}, discard)

	section := parentRef("infra", "ext")
	section.SectionName = ptr.To(gwv1.SectionName("https-other"))
	port := parentRef("infra", "ext")
	port.Port = ptr.To(gwv1.PortNumber(8443))

	tests := []struct {
		name     string
		hostname string
		refs     []gwv1.ParentReference
		want     []collector.TLSCheck
	}{
		{"wildcard listener matches", "app.example.com", []gwv1.ParentReference{parentRef("infra", "ext")},
			[]collector.TLSCheck{{Port: 443, IPs: addrs("192.0.2.1")}}},
		{"wildcard route on wildcard listener", "*.example.com", []gwv1.ParentReference{parentRef("infra", "ext")},
			[]collector.TLSCheck{{Port: 443, IPs: addrs("192.0.2.1")}}},
		{"listener hostname matches literally", "other.example.org", []gwv1.ParentReference{parentRef("infra", "ext")},
			[]collector.TLSCheck{{Port: 8443, IPs: addrs("192.0.2.1")}}},
		{"no HTTPS listener matches", "app.example.net", []gwv1.ParentReference{parentRef("infra", "ext")}, nil},
		{"sectionName selects the listener", "app.example.com", []gwv1.ParentReference{section}, nil},
		{"port selects the listener", "other.example.org", []gwv1.ParentReference{port},
			[]collector.TLSCheck{{Port: 8443, IPs: addrs("192.0.2.1")}}},
		{"same port on two gateways merges IPs", "app.example.com", []gwv1.ParentReference{parentRef("infra", "ext"), parentRef("infra", "second")},
			[]collector.TLSCheck{{Port: 443, IPs: addrs("192.0.2.1", "192.0.2.2")}}},
		{"gateway without addresses", "app.example.com", []gwv1.ParentReference{parentRef("infra", "bare")}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tlsChecks(httpRoute("apps", "r", []string{tt.hostname}, tt.refs...), tt.hostname, gws)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestHostnamesIntersect(t *testing.T) {
	tests := []struct {
		listener, route string
		want            bool
	}{
		{"", "a.example.com", true},
		{"a.example.com", "a.example.com", true},
		{"a.example.com", "b.example.com", false},
		{"*.example.com", "a.example.com", true},
		{"*.example.com", "a.b.example.com", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", "aexample.com", false},
		{"a.example.com", "*.example.com", true},
		{"example.com", "*.example.com", false},
		{"*.example.com", "*.example.com", true},
		{"*.example.com", "*.a.example.com", true},
		{"*.a.example.com", "*.example.com", true},
		{"*.example.org", "*.example.com", false},
	}
	for _, tt := range tests {
		if got := hostnamesIntersect(tt.listener, tt.route); got != tt.want {
			t.Errorf("hostnamesIntersect(%q, %q) = %v, want %v", tt.listener, tt.route, got, tt.want)
		}
	}
}

func TestCheckName(t *testing.T) {
	for in, want := range map[string]string{
		"*.sbbh.cloud":   "lbprobe-wildcard-check.sbbh.cloud",
		"*.a.sbbh.cloud": "lbprobe-wildcard-check.a.sbbh.cloud",
		"app.sbbh.cloud": "app.sbbh.cloud",
	} {
		if got := checkName(in); got != want {
			t.Errorf("checkName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAddressMismatch(t *testing.T) {
	tests := []struct {
		name     string
		spec     []gwv1.GatewaySpecAddress
		status   []string
		mismatch bool
		ok       bool
	}{
		{"no spec addresses", nil, []string{"192.0.2.1"}, false, false},
		{"only typed requests", []gwv1.GatewaySpecAddress{{Type: ptr.To(gwv1.IPAddressType)}}, nil, false, false},
		{"equal", []gwv1.GatewaySpecAddress{{Value: "192.0.2.1"}}, []string{"192.0.2.1"}, false, true},
		{"different", []gwv1.GatewaySpecAddress{{Value: "192.0.2.1"}}, []string{"192.0.2.2"}, true, true},
		{"missing status", []gwv1.GatewaySpecAddress{{Value: "192.0.2.1"}}, nil, true, true},
		{"extra status", []gwv1.GatewaySpecAddress{{Value: "192.0.2.1"}}, []string{"192.0.2.1", "192.0.2.9"}, true, true},
		{"ipv6 forms", []gwv1.GatewaySpecAddress{{Value: "2001:db8:0::1"}}, []string{"2001:db8::1"}, false, true},
		{"value plus any: extra allowed", []gwv1.GatewaySpecAddress{{Value: "192.0.2.1"}, {Type: ptr.To(gwv1.IPAddressType)}}, []string{"192.0.2.1", "192.0.2.9"}, false, true},
		{"value plus any: value missing", []gwv1.GatewaySpecAddress{{Value: "192.0.2.1"}, {}}, []string{"192.0.2.9"}, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gw := gateway("ns", "gw", tt.status)
			gw.Spec.Addresses = tt.spec
			mismatch, ok := addressMismatch(gw)
			if mismatch != tt.mismatch || ok != tt.ok {
				t.Fatalf("got (%v, %v), want (%v, %v)", mismatch, ok, tt.mismatch, tt.ok)
			}
		})
	}
}

func TestProgrammed(t *testing.T) {
	gw := gateway("ns", "gw", nil)
	if programmed(gw) {
		t.Fatal("no condition: not programmed")
	}
	gw.Status.Conditions = []metav1.Condition{{Type: "Accepted", Status: metav1.ConditionTrue}, {Type: "Programmed", Status: metav1.ConditionFalse}}
	if programmed(gw) {
		t.Fatal("Programmed False")
	}
	gw.Status.Conditions[1].Status = metav1.ConditionTrue
	if !programmed(gw) {
		t.Fatal("Programmed True")
	}
}
