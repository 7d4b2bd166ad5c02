package kube

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	fakediscovery "k8s.io/client-go/discovery/fake"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayfake "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned/fake"
)

// testNow is the instant the fixtures are evaluated at.
var testNow = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, 0, len(s))
	for _, v := range s {
		out = append(out, netip.MustParseAddr(v))
	}
	return out
}

// lbService is a LoadBalancer Service with the given ingress IPs.
func lbService(ns, name string, ips ...string) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Type:  corev1.ServiceTypeLoadBalancer,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
		},
	}
	for _, ip := range ips {
		s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
	return s
}

func with[T any](obj T, muts ...func(T)) T {
	for _, m := range muts {
		m(obj)
	}
	return obj
}

func annotate(kv ...string) func(*corev1.Service) {
	return func(s *corev1.Service) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		for i := 0; i+1 < len(kv); i += 2 {
			s.Annotations[kv[i]] = kv[i+1]
		}
	}
}

func label(kv ...string) func(*corev1.Service) {
	return func(s *corev1.Service) {
		if s.Labels == nil {
			s.Labels = map[string]string{}
		}
		for i := 0; i+1 < len(kv); i += 2 {
			s.Labels[kv[i]] = kv[i+1]
		}
	}
}

// gateway is a Gateway with IPAddress status addresses and the listeners.
func gateway(ns, name string, ips []string, listeners ...gwv1.Listener) *gwv1.Gateway {
	gw := &gwv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       gwv1.GatewaySpec{GatewayClassName: "cilium", Listeners: listeners},
	}
	for _, ip := range ips {
		gw.Status.Addresses = append(gw.Status.Addresses, gwv1.GatewayStatusAddress{Type: ptr.To(gwv1.IPAddressType), Value: ip})
	}
	return gw
}

func gatewayClass(name, controller string) *gwv1.GatewayClass {
	return &gwv1.GatewayClass{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       gwv1.GatewayClassSpec{ControllerName: gwv1.GatewayController(controller)},
	}
}

func listener(name string, port int32, proto gwv1.ProtocolType, hostname string) gwv1.Listener {
	l := gwv1.Listener{Name: gwv1.SectionName(name), Port: port, Protocol: proto}
	if hostname != "" {
		l.Hostname = ptr.To(gwv1.Hostname(hostname))
	}
	return l
}

func parentRef(ns, name string) gwv1.ParentReference {
	r := gwv1.ParentReference{Name: gwv1.ObjectName(name)}
	if ns != "" {
		r.Namespace = ptr.To(gwv1.Namespace(ns))
	}
	return r
}

func httpRoute(ns, name string, hostnames []string, refs ...gwv1.ParentReference) *gwv1.HTTPRoute {
	r := &gwv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	for _, h := range hostnames {
		r.Spec.Hostnames = append(r.Spec.Hostnames, gwv1.Hostname(h))
	}
	r.Spec.ParentRefs = refs
	return r
}

// lease is a Cilium L2 lease renewed renewAgo before testNow.
func lease(ns, name, holder string, acquiredAgo, renewAgo time.Duration, durationSeconds, transitions int32) *coordinationv1.Lease {
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity:       ptr.To(holder),
			AcquireTime:          &metav1.MicroTime{Time: testNow.Add(-acquiredAgo)},
			RenewTime:            &metav1.MicroTime{Time: testNow.Add(-renewAgo)},
			LeaseDurationSeconds: ptr.To(durationSeconds),
			LeaseTransitions:     ptr.To(transitions),
		},
	}
}

var (
	policyGVRv2a1 = schema.GroupVersionResource{Group: ciliumGroup, Version: "v2alpha1", Resource: ResourceL2Policies}
)

func policyObj(name string, spec map[string]any) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cilium.io/v2alpha1",
		"kind":       "CiliumL2AnnouncementPolicy",
		"metadata":   map[string]any{"name": name},
		"spec":       spec,
	}}
}

func cond(typ, status, message string) map[string]any {
	return map[string]any{"type": typ, "status": status, "reason": "noreason", "message": message}
}

func poolObj(name string, disabled bool, conds ...map[string]any) *unstructured.Unstructured {
	cs := make([]any, 0, len(conds))
	for _, c := range conds {
		cs = append(cs, c)
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cilium.io/v2",
		"kind":       "CiliumLoadBalancerIPPool",
		"metadata":   map[string]any{"name": name},
		"spec":       map[string]any{"disabled": disabled, "blocks": []any{map[string]any{"cidr": "10.11.80.0/24"}}},
		"status":     map[string]any{"conditions": cs},
	}}
}

// endpointSlice is an EndpointSlice of a Service; each endpoint is "pod"
// (ready), "pod:false" (not ready) or "pod:nil" (no ready condition), and
// gets one address from addrs in order.
func endpointSlice(ns, name, service string, family discoveryv1.AddressType, addrs []string, endpoints ...string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: service}},
		AddressType: family,
	}
	for i, e := range endpoints {
		pod, ready, _ := strings.Cut(e, ":")
		ep := discoveryv1.Endpoint{Addresses: []string{addrs[i]}, TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: pod}}
		switch ready {
		case "":
			ep.Conditions.Ready = ptr.To(true)
		case "false":
			ep.Conditions.Ready = ptr.To(false)
		}
		s.Endpoints = append(s.Endpoints, ep)
	}
	return s
}

func readyNode(name string, ready bool) *corev1.Node {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Status:     corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}}},
	}
}

// seed is the realistic cluster of the exposition tests.
type seed struct {
	kube     []runtime.Object
	gateway  []runtime.Object
	dynamic  []runtime.Object
	gwAPI    bool // serve gateway.networking.k8s.io/v1
	pools    string
	policies string
}

func realisticSeed() seed {
	k8sgw := with(lbService("infra", "k8s-gateway", "10.11.80.53"),
		label("app.kubernetes.io/name", "k8s-gateway"),
		func(s *corev1.Service) {
			s.Spec.Ports = []corev1.ServicePort{{Name: "dns-udp", Port: 53, Protocol: corev1.ProtocolUDP}}
		})
	web := with(lbService("apps", "web", "10.11.80.10"), annotate(AnnotationICMP, "true"), func(s *corev1.Service) {
		s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP})
	})
	pending := lbService("apps", "pending")
	cluster := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "backend"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP}}

	external := gateway("infra", "external", []string{"10.11.80.80"},
		listener("http", 80, gwv1.HTTPProtocolType, ""),
		listener("https", 443, gwv1.HTTPSProtocolType, "*.sbbh.cloud"))
	external.Status.Conditions = []metav1.Condition{{Type: "Programmed", Status: metav1.ConditionTrue, Reason: "Programmed", LastTransitionTime: metav1.NewTime(testNow)}}
	internal := gateway("infra", "internal", []string{"10.11.80.81"}, listener("http", 80, gwv1.HTTPProtocolType, ""))
	internal.Spec.Addresses = []gwv1.GatewaySpecAddress{{Type: ptr.To(gwv1.IPAddressType), Value: "10.11.80.82"}}

	return seed{
		kube: []runtime.Object{
			k8sgw, web, pending, cluster,
			lease("kube-system", "cilium-l2announce-apps-web", "node-a", time.Hour, 2*time.Second, 15, 3),
			lease("kube-system", "cilium-l2announce-infra-k8s-gateway", "node-b", 2*time.Hour, time.Minute, 15, 1),
			lease("kube-system", "cilium-l2announce-old-gone", "node-a", time.Hour, time.Hour, 15, 0),
			readyNode("node-a", true),
			// Two ready pods of web (one in both families), one not ready, one
			// without a ready condition.
			endpointSlice("apps", "web-v4", "web", discoveryv1.AddressTypeIPv4, []string{"10.42.0.1", "10.42.0.2", "10.42.0.3"}, "web-a", "web-b:false", "web-c:nil"),
			endpointSlice("apps", "web-v6", "web", discoveryv1.AddressTypeIPv6, []string{"fd00:42::1"}, "web-a"),
		},
		gateway: []runtime.Object{
			gatewayClass("cilium", "io.cilium/gateway-controller"),
			external, internal,
			httpRoute("apps", "public-app", []string{"app.sbbh.cloud"}, parentRef("infra", "external")),
			httpRoute("apps", "internal-app", []string{"internal.sbbh.cloud"}, parentRef("infra", "internal")),
		},
		dynamic: []runtime.Object{
			policyObj("all-lb", map[string]any{"loadBalancerIPs": true}),
			policyObj("web-only", map[string]any{"loadBalancerIPs": true, "serviceSelector": map[string]any{
				"matchLabels": map[string]any{labelServiceName: "web"}}}),
			policyObj("external-only", map[string]any{"externalIPs": true}),
			poolObj("main", false,
				cond("cilium.io/PoolConflict", "False", ""),
				cond("cilium.io/IPsTotal", "Unknown", "256"),
				cond("cilium.io/IPsAvailable", "Unknown", "254"),
				cond("cilium.io/IPsUsed", "Unknown", "2")),
		},
		gwAPI:    true,
		pools:    "v2",
		policies: "v2alpha1",
	}
}

// fakeClients builds fake clients serving the seed; the discovery fake
// lists only the APIs the seed serves.
func fakeClients(s seed) clients {
	kube := kubefake.NewClientset(s.kube...)
	fd := kube.Discovery().(*fakediscovery.FakeDiscovery)
	if s.gwAPI {
		fd.Resources = append(fd.Resources, &metav1.APIResourceList{GroupVersion: gatewayGroupVersion, APIResources: []metav1.APIResource{
			{Name: ResourceGatewayClass, Kind: "GatewayClass"},
			{Name: ResourceGateways, Namespaced: true, Kind: "Gateway"}, {Name: ResourceHTTPRoutes, Namespaced: true, Kind: "HTTPRoute"},
		}})
	}
	listKinds := map[schema.GroupVersionResource]string{}
	if s.pools != "" {
		fd.Resources = append(fd.Resources, &metav1.APIResourceList{GroupVersion: ciliumGroup + "/" + s.pools, APIResources: []metav1.APIResource{
			{Name: ResourcePools, Kind: "CiliumLoadBalancerIPPool"},
		}})
	}
	if s.policies != "" {
		fd.Resources = append(fd.Resources, &metav1.APIResourceList{GroupVersion: ciliumGroup + "/" + s.policies, APIResources: []metav1.APIResource{
			{Name: ResourceL2Policies, Kind: "CiliumL2AnnouncementPolicy"},
		}})
	}
	for _, v := range []string{"v2", "v2alpha1"} {
		listKinds[schema.GroupVersionResource{Group: ciliumGroup, Version: v, Resource: ResourcePools}] = "CiliumLoadBalancerIPPoolList"
		listKinds[schema.GroupVersionResource{Group: ciliumGroup, Version: v, Resource: ResourceL2Policies}] = "CiliumL2AnnouncementPolicyList"
	}
	// v1beta1 Gateway is an alias of v1 Gateway, so the fake's object
	// tracker files seeded Gateways under v1beta1: create through v1.
	gw := gatewayfake.NewSimpleClientset() //nolint:staticcheck // NewClientset has no type converter for v1 Gateways
	for _, o := range s.gateway {
		var err error
		switch o := o.(type) {
		case *gwv1.Gateway:
			_, err = gw.GatewayV1().Gateways(o.Namespace).Create(context.Background(), o, metav1.CreateOptions{})
		case *gwv1.HTTPRoute:
			_, err = gw.GatewayV1().HTTPRoutes(o.Namespace).Create(context.Background(), o, metav1.CreateOptions{})
		case *gwv1.GatewayClass:
			_, err = gw.GatewayV1().GatewayClasses().Create(context.Background(), o, metav1.CreateOptions{})
		default:
			err = fmt.Errorf("unexpected %T", o)
		}
		if err != nil {
			panic(err)
		}
	}
	return clients{
		kube:      kube,
		gateway:   gw,
		dynamic:   dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), listKinds, s.dynamic...),
		discovery: fd,
	}
}

// startFake starts a Discovery over fake clients and waits for its caches.
func startFake(tb testing.TB, c clients, opts Options) *Discovery {
	tb.Helper()
	if opts.Now == nil {
		opts.Now = func() time.Time { return testNow }
	}
	if opts.DNSDomain == "" {
		opts.DNSDomain = "sbbh.cloud"
	}
	d := newDiscovery(c, opts, nil)
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	if err := d.Start(ctx); err != nil {
		tb.Fatalf("Start: %v", err)
	}
	if err := d.WaitForSync(ctx); err != nil {
		tb.Fatalf("WaitForSync: %v", err)
	}
	return d
}

var errEOF = io.EOF

// errDiscovery fails every group-version lookup.
type errDiscovery struct {
	discovery.DiscoveryInterface
	err error
}

func (e errDiscovery) ServerResourcesForGroupVersion(string) (*metav1.APIResourceList, error) {
	return nil, e.err
}
