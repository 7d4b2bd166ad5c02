package kube

import (
	"reflect"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
)

func TestCountL2Policies(t *testing.T) {
	all := policyObj("all", map[string]any{"loadBalancerIPs": true})
	empty := policyObj("empty", map[string]any{"loadBalancerIPs": true, "serviceSelector": map[string]any{}})
	byName := policyObj("by-name", map[string]any{"loadBalancerIPs": true, "serviceSelector": map[string]any{
		"matchLabels": map[string]any{labelServiceNamespace: "apps", labelServiceName: "web"}}})
	byLabel := policyObj("by-label", map[string]any{"loadBalancerIPs": true, "serviceSelector": map[string]any{
		"matchExpressions": []any{map[string]any{"key": "tier", "operator": "In", "values": []any{"front"}}}}})
	noLB := policyObj("no-lb", map[string]any{"externalIPs": true})
	lbFalse := policyObj("lb-false", map[string]any{"loadBalancerIPs": false, "externalIPs": true})
	bad := policyObj("bad", map[string]any{"loadBalancerIPs": true, "serviceSelector": map[string]any{
		"matchExpressions": []any{map[string]any{"key": "tier", "operator": "Bogus"}}}})
	notObject := policyObj("not-object", map[string]any{"loadBalancerIPs": true, "serviceSelector": "tier=front"})
	noSpec := &unstructured.Unstructured{Object: map[string]any{"metadata": map[string]any{"name": "no-spec"}}}

	web := with(lbService("apps", "web", "192.0.2.1"), label("tier", "front"))
	other := lbService("team", "web", "192.0.2.2")
	l2Class := with(lbService("apps", "web", "192.0.2.1"), func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr.To(l2AnnouncerClass) })
	bgpClass := with(lbService("apps", "web", "192.0.2.1"), func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr.To("io.cilium/bgp-control-plane") })
	// A Service label cannot fake the special keys: they are overwritten.
	spoof := with(lbService("team", "spoof", "192.0.2.3"), label(labelServiceName, "web", labelServiceNamespace, "apps"))

	tests := []struct {
		name     string
		svc      *corev1.Service
		policies []*unstructured.Unstructured
		want     int
	}{
		{"nil selector selects all", other, []*unstructured.Unstructured{all}, 1},
		{"empty selector selects all", other, []*unstructured.Unstructured{empty}, 1},
		{"special keys", web, []*unstructured.Unstructured{byName}, 1},
		{"special keys, other namespace", other, []*unstructured.Unstructured{byName}, 0},
		{"special keys not spoofable", spoof, []*unstructured.Unstructured{byName}, 0},
		{"label expression", web, []*unstructured.Unstructured{byLabel}, 1},
		{"label expression, no label", other, []*unstructured.Unstructured{byLabel}, 0},
		{"loadBalancerIPs unset (default false)", web, []*unstructured.Unstructured{noLB}, 0},
		{"loadBalancerIPs false", web, []*unstructured.Unstructured{lbFalse}, 0},
		{"invalid selector selects nothing", web, []*unstructured.Unstructured{bad, notObject}, 0},
		{"no spec", web, []*unstructured.Unstructured{noSpec}, 0},
		{"counts every match", web, []*unstructured.Unstructured{all, empty, byName, byLabel, noLB, bad}, 4},
		{"class l2-announcer", l2Class, []*unstructured.Unstructured{all, byName}, 2},
		{"other class: none", bgpClass, []*unstructured.Unstructured{all, byName}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ps []l2Policy
			for _, p := range tt.policies {
				ps = append(ps, parseL2Policy(p, discard))
			}
			if got := countL2Policies(tt.svc, ps); got != tt.want {
				t.Fatalf("got %d, want %d", got, tt.want)
			}
		})
	}
}

func TestEvalLease(t *testing.T) {
	tests := []struct {
		name         string
		acquired     time.Duration
		renewed      time.Duration
		duration     int32
		holder       string
		wantRenewAge float64
		wantExpired  bool
		wantLive     bool
	}{
		{"fresh", time.Hour, 2 * time.Second, 15, "node-a", 2, false, true},
		{"at the limit", time.Hour, 15 * time.Second, 15, "node-a", 15, false, true},
		{"just past", time.Hour, 15*time.Second + time.Millisecond, 15, "node-a", 15.001, true, false},
		{"stale", time.Hour, time.Minute, 15, "node-a", 60, true, false},
		{"released", time.Hour, 0, 1, "", 0, false, false},
		{"renewed in the future (clock skew)", time.Hour, -3 * time.Second, 15, "node-a", -3, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			li := evalLease(lease("kube-system", "l", tt.holder, tt.acquired, tt.renewed, tt.duration, 2), testNow)
			if li.renewAge.Seconds() != tt.wantRenewAge || li.expired != tt.wantExpired || li.live() != tt.wantLive || !li.hasExpired {
				t.Fatalf("got %+v live=%v", li, li.live())
			}
			if li.age != tt.acquired || li.duration != time.Duration(tt.duration)*time.Second || li.transitions != 2 {
				t.Fatalf("got %+v", li)
			}
		})
	}
	t.Run("missing fields", func(t *testing.T) {
		l := lease("kube-system", "l", "node-a", time.Hour, time.Second, 15, 1)
		l.Spec.RenewTime = nil
		li := evalLease(l, testNow)
		if li.hasRenewAge || li.hasExpired || li.live() || !li.hasAge {
			t.Fatalf("no renewTime: %+v", li)
		}
		l.Spec = coordinationv1.LeaseSpec{}
		li = evalLease(l, testNow)
		if li.hasAge || li.hasRenewAge || li.hasDuration || li.hasTransitions || li.hasExpired || li.live() || li.holder != "" {
			t.Fatalf("empty spec: %+v", li)
		}
	})
}

func TestParsePool(t *testing.T) {
	tests := []struct {
		name string
		pool *unstructured.Unstructured
		want ipPool
	}{
		{"current", poolObj("p", false,
			cond("cilium.io/PoolConflict", "False", ""),
			cond("cilium.io/IPsTotal", "Unknown", "256"),
			cond("cilium.io/IPsAvailable", "Unknown", "253"),
			cond("cilium.io/IPsUsed", "Unknown", "3")),
			ipPool{name: "p", counts: []poolCount{{"available", 253}, {"total", 256}, {"used", 3}}}},
		{"conflict, disabled, ipv6 size", poolObj("p", true,
			cond("cilium.io/PoolConflict", "True", "Pool conflicts since range ..."),
			cond("cilium.io/IPsTotal", "Unknown", "18446744073709551616")),
			ipPool{name: "p", disabled: true, conflict: true, counts: []poolCount{{"total", 18446744073709551616}}}},
		{"garbage skipped", poolObj("p", false,
			cond("cilium.io/IPsTotal", "Unknown", "abc"),
			cond("cilium.io/IPsAvailable", "Unknown", "-1"),
			cond("cilium.io/IPsUsed", "Unknown", "1e3"),
			cond("cilium.io/IPsUsed", "Unknown", ""),
			cond("cilium.io/IPsUsed", "Unknown", " 7 "),
			cond("cilium.io/Other", "True", "9")),
			ipPool{name: "p", counts: []poolCount{{"used", 7}}}},
		{"first of a duplicated condition wins", poolObj("p", false,
			cond("cilium.io/IPsTotal", "Unknown", "10"),
			cond("cilium.io/IPsTotal", "Unknown", "20")),
			ipPool{name: "p", counts: []poolCount{{"total", 10}}}},
		{"old condition names", poolObj("p", false,
			cond("io.cilium/conflict", "True", ""),
			cond("io.cilium/ips-total", "Unknown", "254"),
			cond("io.cilium/ips-available", "Unknown", "254"),
			cond("io.cilium/ips-used", "Unknown", "0")),
			ipPool{name: "p", conflict: true, counts: []poolCount{{"available", 254}, {"total", 254}, {"used", 0}}}},
		{"no status", &unstructured.Unstructured{Object: map[string]any{"metadata": map[string]any{"name": "p"}}}, ipPool{name: "p"}},
		{"conditions not a list", &unstructured.Unstructured{Object: map[string]any{"metadata": map[string]any{"name": "p"},
			"status": map[string]any{"conditions": "nope"}}}, ipPool{name: "p"}},
		{"condition not an object", &unstructured.Unstructured{Object: map[string]any{"metadata": map[string]any{"name": "p"},
			"spec": map[string]any{"disabled": "yes"}, "status": map[string]any{"conditions": []any{"x", 3, nil}}}}, ipPool{name: "p"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parsePool(tt.pool, discard)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
