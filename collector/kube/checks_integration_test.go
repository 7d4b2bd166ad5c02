package kube

// Integration tests of the checks the seed's troubleshooting did by hand,
// against the real kube-apiserver: each drives the API objects into the
// broken state and back, and fails when the check is removed.

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// setLBIPAMStatus writes a Service's ingress IP and LB-IPAM's condition on
// it, as LB-IPAM does.
func setLBIPAMStatus(t *testing.T, cl testClients, s *corev1.Service, ip string, ok bool, reason string) {
	t.Helper()
	cur, err := cl.kube.CoreV1().Services(s.Namespace).Get(t.Context(), s.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	status := metav1.ConditionFalse
	if ok {
		status = metav1.ConditionTrue
	}
	cur.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip}}
	cur.Status.Conditions = []metav1.Condition{{Type: "cilium.io/IPAMRequestSatisfied", Status: status, Reason: reason, Message: "m", LastTransitionTime: metav1.Now()}}
	if _, err := cl.kube.CoreV1().Services(s.Namespace).UpdateStatus(t.Context(), cur, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("updating Service status: %v", err)
	}
}

// The seed pins k8s_gateway to 10.11.80.82; LB-IPAM assigns another IP.
func TestIntegrationRequestedIP(t *testing.T) {
	c := cluster(t)
	cl := newTestClients(t, c.RESTConfig())
	ns := c.Namespace(t)
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "k8s-gateway", Annotations: map[string]string{annotationLBIPAMIPsOld: "10.11.80.82"}},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}}},
	}
	svc, err := cl.kube.CoreV1().Services(ns).Create(t.Context(), svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	setLBIPAMStatus(t, cl, svc, "10.11.80.90", false, "already_allocated")
	_, reg := startReal(t, c.RESTConfig(), Options{CiliumNamespace: ns})
	pinned := []string{"namespace", ns, "service", "k8s-gateway", "ip", "10.11.80.82"}

	eventually(t, 10*time.Second, "another IP assigned", wantValue(t, reg, 0, "loadbalancer_requested_ip_assigned", pinned...))
	eventually(t, 10*time.Second, "LB-IPAM's reason", wantValue(t, reg, 1, "loadbalancer_ipam_request_info",
		"namespace", ns, "service", "k8s-gateway", "status", "False", "reason", "already_allocated"))

	setLBIPAMStatus(t, cl, svc, "10.11.80.82", true, "satisfied")
	eventually(t, 10*time.Second, "the requested IP assigned", wantValue(t, reg, 1, "loadbalancer_requested_ip_assigned", pinned...))
	eventually(t, 10*time.Second, "satisfied", wantValue(t, reg, 1, "loadbalancer_ipam_request_info",
		"namespace", ns, "service", "k8s-gateway", "status", "True", "reason", "satisfied"))
}

func createSlice(t *testing.T, cl testClients, ns, name, service string, ready ...bool) {
	t.Helper()
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: service}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for i, r := range ready {
		// Pod addresses are data here: nothing connects to them.
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{fmt.Sprintf("10.42.7.%d", i+1)},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(r)},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: fmt.Sprintf("%s-%d", name, i)},
		})
	}
	if _, err := cl.kube.DiscoveryV1().EndpointSlices(ns).Create(t.Context(), s, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating EndpointSlice: %v", err)
	}
}

// Backends from EndpointSlices; a Gateway's Service counts its routes'
// backends, not its placeholder endpoint.
func TestIntegrationBackends(t *testing.T) {
	c := cluster(t)
	cl := newTestClients(t, c.RESTConfig())
	ns := c.Namespace(t)
	web := setIngress(t, cl.kube, createLB(t, cl.kube, ns, "web", nil), "10.11.80.83")
	gw, err := cl.gw.GatewayV1().Gateways(ns).Create(t.Context(), &gwv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "external"},
		Spec: gwv1.GatewaySpec{GatewayClassName: "cilium", Listeners: []gwv1.Listener{
			{Name: "http", Port: 80, Protocol: gwv1.HTTPProtocolType},
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gwSvc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cilium-gateway-external", OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "gateway.networking.k8s.io/v1", Kind: "Gateway", Name: gw.Name, UID: gw.UID, Controller: ptr.To(true),
		}}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
	}
	gwSvc, err = cl.kube.CoreV1().Services(ns).Create(t.Context(), gwSvc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	setIngress(t, cl.kube, gwSvc, "10.11.80.80")
	// Cilium's placeholder: one ready endpoint, whatever the routes.
	createSlice(t, cl, ns, "cilium-gateway-external", "cilium-gateway-external", true)
	route := &gwv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "public-app"},
		Spec: gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{Name: "external"}}},
			Hostnames:       []gwv1.Hostname{gwv1.Hostname(ns + ".sbbh.cloud")},
			Rules: []gwv1.HTTPRouteRule{{BackendRefs: []gwv1.HTTPBackendRef{{BackendRef: gwv1.BackendRef{
				BackendObjectReference: gwv1.BackendObjectReference{Name: "app", Port: ptr.To(gwv1.PortNumber(8080))},
			}}}}},
		},
	}
	if _, err := cl.gw.GatewayV1().HTTPRoutes(ns).Create(t.Context(), route, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, reg := startReal(t, c.RESTConfig(), Options{CiliumNamespace: ns})
	webLabels := []string{"namespace", ns, "service", "web"}
	gwLabels := []string{"namespace", ns, "service", "cilium-gateway-external"}

	eventually(t, 10*time.Second, "no EndpointSlice", wantValue(t, reg, 0, "loadbalancer_backends_ready", webLabels...))
	eventually(t, 10*time.Second, "the Gateway's backends are missing", wantValue(t, reg, 0, "loadbalancer_backends_ready", gwLabels...))

	createSlice(t, cl, ns, "web-1", web.Name, true, false, true)
	createSlice(t, cl, ns, "app-1", "app", true, true, true, false)
	eventually(t, 10*time.Second, "two ready", wantValue(t, reg, 2, "loadbalancer_backends_ready", webLabels...))
	eventually(t, 10*time.Second, "the route's backends", wantValue(t, reg, 3, "loadbalancer_backends_ready", gwLabels...))
	eventually(t, 10*time.Second, "per route", wantValue(t, reg, 3, "gateway_route_backends_ready",
		"namespace", ns, "route", "public-app", "backend_namespace", ns, "backend", "app"))
}

// The seed's httpsredirect names section http on Gateways whose only
// listener is https: the controller refuses it, and the DNS check of a
// refused route's hostname carries the refusing Gateway.
func TestIntegrationRouteStatus(t *testing.T) {
	c := cluster(t)
	cl := newTestClients(t, c.RESTConfig())
	ns := c.Namespace(t)
	class := "cilium-" + ns // cluster-scoped: a fresh name
	if _, err := cl.gw.GatewayV1().GatewayClasses().Create(t.Context(), &gwv1.GatewayClass{
		ObjectMeta: metav1.ObjectMeta{Name: class},
		Spec:       gwv1.GatewayClassSpec{ControllerName: "io.cilium/gateway-controller"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cl.gw.GatewayV1().GatewayClasses().Delete(context.Background(), class, metav1.DeleteOptions{})
	})
	gw, err := cl.gw.GatewayV1().Gateways(ns).Create(t.Context(), &gwv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "internal"},
		Spec: gwv1.GatewaySpec{GatewayClassName: gwv1.ObjectName(class), Listeners: []gwv1.Listener{
			{Name: "https", Port: 443, Protocol: gwv1.HTTPSProtocolType, Hostname: ptr.To(gwv1.Hostname("*.sbbh.cloud")),
				TLS: &gwv1.ListenerTLSConfig{CertificateRefs: []gwv1.SecretObjectReference{{Name: "cert"}}}},
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gw.Status.Addresses = []gwv1.GatewayStatusAddress{{Type: ptr.To(gwv1.IPAddressType), Value: "10.11.80.81"}}
	gw.Status.Listeners = []gwv1.ListenerStatus{{Name: "https", AttachedRoutes: 0, SupportedKinds: []gwv1.RouteGroupKind{{Kind: "HTTPRoute"}},
		Conditions: []metav1.Condition{{Type: "Programmed", Status: metav1.ConditionTrue, Reason: "Programmed", LastTransitionTime: metav1.Now()}}}}
	if _, err := cl.gw.GatewayV1().Gateways(ns).UpdateStatus(t.Context(), gw, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	parent := gwv1.ParentReference{Name: "internal", SectionName: ptr.To(gwv1.SectionName("http"))}
	route, err := cl.gw.GatewayV1().HTTPRoutes(ns).Create(t.Context(), &gwv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "httpsredirect"},
		Spec: gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{parent}},
			Hostnames:       []gwv1.Hostname{gwv1.Hostname(ns + ".sbbh.cloud")},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d, reg := startReal(t, c.RESTConfig(), Options{CiliumNamespace: ns, DNSDomain: "sbbh.cloud", DNSServers: []string{"127.0.0.1:1053"}})
	labels := []string{"namespace", ns, "route", "httpsredirect", "gateway_namespace", ns, "gateway", "internal", "section", "http"}
	eventually(t, 10*time.Second, "no status yet: absent", wantAbsent(t, reg, "gateway_route_accepted", labels...))

	setStatus := func(ok bool, reason string, generation int64) {
		t.Helper()
		cur, err := cl.gw.GatewayV1().HTTPRoutes(ns).Get(t.Context(), route.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		status := metav1.ConditionFalse
		if ok {
			status = metav1.ConditionTrue
		}
		cur.Status.Parents = []gwv1.RouteParentStatus{{ParentRef: parent, ControllerName: "io.cilium/gateway-controller", Conditions: []metav1.Condition{
			{Type: "Accepted", Status: status, Reason: reason, ObservedGeneration: generation, LastTransitionTime: metav1.Now()},
			{Type: "ResolvedRefs", Status: metav1.ConditionTrue, Reason: "ResolvedRefs", ObservedGeneration: generation, LastTransitionTime: metav1.Now()},
		}}}
		if _, err := cl.gw.GatewayV1().HTTPRoutes(ns).UpdateStatus(t.Context(), cur, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	refusedBy := func(want ...string) func() error {
		return func() error {
			for _, h := range d.Targets().Hostnames {
				if h.Source == "httproute" && h.Namespace == ns && h.Name == "httpsredirect" {
					if !slices.Equal(h.NotAcceptedBy, addrs(want...)) {
						return fmt.Errorf("NotAcceptedBy %v, want %v", h.NotAcceptedBy, want)
					}
					return nil
				}
			}
			return fmt.Errorf("no hostname target for the route")
		}
	}
	setStatus(false, "NoMatchingParent", route.Generation)
	eventually(t, 10*time.Second, "refused", wantValue(t, reg, 0, "gateway_route_accepted", labels...))
	eventually(t, 10*time.Second, "the reason", wantValue(t, reg, 1, "gateway_route_status_condition_info",
		append(slices.Clone(labels), "condition", "Accepted", "status", "False", "reason", "NoMatchingParent")...))
	eventually(t, 10*time.Second, "the DNS check knows", refusedBy("10.11.80.81"))
	eventually(t, 10*time.Second, "not stale", wantValue(t, reg, 0, "gateway_route_status_stale", labels...))

	// The route is fixed (a spec change: a new generation) and accepted,
	// but the status is of the old generation until the controller looks.
	cur, err := cl.gw.GatewayV1().HTTPRoutes(ns).Get(t.Context(), route.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Spec.Hostnames = append(cur.Spec.Hostnames, gwv1.Hostname("www-"+ns+".sbbh.cloud"))
	cur, err = cl.gw.GatewayV1().HTTPRoutes(ns).Update(t.Context(), cur, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "stale", wantValue(t, reg, 1, "gateway_route_status_stale", labels...))
	setStatus(true, "Accepted", cur.Generation)
	eventually(t, 10*time.Second, "accepted", wantValue(t, reg, 1, "gateway_route_accepted", labels...))
	eventually(t, 10*time.Second, "current", wantValue(t, reg, 0, "gateway_route_status_stale", labels...))
	eventually(t, 10*time.Second, "the DNS check is plain again", refusedBy())
	eventually(t, 10*time.Second, "listener condition", wantValue(t, reg, 1, "gateway_listener_status_condition_info",
		"namespace", ns, "gateway", "internal", "listener", "https", "condition", "Programmed", "status", "True", "reason", "Programmed"))
}

// A policy's nodeSelector, interfaces and Cilium's conditions; on a node,
// the interfaces matched (the netns lab checks this with real interfaces).
func TestIntegrationL2Policy(t *testing.T) {
	c := cluster(t)
	cl := newTestClients(t, c.RESTConfig())
	ns := c.Namespace(t)
	setIngress(t, cl.kube, createLB(t, cl.kube, ns, "web", nil), "10.11.80.83")
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: ns + "-node", Labels: map[string]string{"lbprobe-test": ns}}}
	if _, err := cl.kube.CoreV1().Nodes().Create(t.Context(), node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.kube.CoreV1().Nodes().Delete(context.Background(), node.Name, metav1.DeleteOptions{}) })
	create := func(name string, spec map[string]any) {
		t.Helper()
		spec["serviceSelector"] = map[string]any{"matchLabels": map[string]any{labelServiceNamespace: ns}}
		spec["loadBalancerIPs"] = true
		p := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "cilium.io/v2alpha1", "kind": "CiliumL2AnnouncementPolicy",
			"metadata": map[string]any{"name": name}, "spec": spec,
		}}
		if _, err := cl.dyn.Resource(policyGVRv2a1).Create(t.Context(), p, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating policy %s: %v", name, err)
		}
		t.Cleanup(func() { _ = cl.dyn.Resource(policyGVRv2a1).Delete(context.Background(), name, metav1.DeleteOptions{}) })
	}
	enp, eth, nobody := ns+"-enp", ns+"-eth", ns+"-nobody"
	create(enp, map[string]any{"interfaces": []any{"^enp.*"}, "nodeSelector": map[string]any{"matchLabels": map[string]any{"lbprobe-test": ns}}})
	create(eth, map[string]any{"interfaces": []any{"^eth[0-9]+$"}, "nodeSelector": map[string]any{"matchLabels": map[string]any{"lbprobe-test": ns}}})
	create(nobody, map[string]any{"nodeSelector": map[string]any{"matchLabels": map[string]any{"lbprobe-test": "nobody"}}})
	_, reg := startReal(t, c.RESTConfig(), Options{CiliumNamespace: ns, NodeName: node.Name,
		Interfaces: func() ([]string, error) { return []string{"eth0"}, nil }})

	eventually(t, 10*time.Second, "selects the node", wantValue(t, reg, 1, "loadbalancer_l2_policy_nodes", "policy", enp))
	eventually(t, 10*time.Second, "selects no node", wantValue(t, reg, 0, "loadbalancer_l2_policy_nodes", "policy", nobody))
	eventually(t, 10*time.Second, "selects the Service", wantValue(t, reg, 1, "loadbalancer_l2_policy_services", "policy", enp))
	eventually(t, 10*time.Second, "^enp.* on eth0", wantValue(t, reg, 0, "loadbalancer_l2_policy_interfaces_matched", "policy", enp, "node", node.Name, "interfaces", ""))
	eventually(t, 10*time.Second, "^eth[0-9]+$ on eth0", wantValue(t, reg, 1, "loadbalancer_l2_policy_interfaces_matched", "policy", eth, "node", node.Name, "interfaces", "eth0"))
	eventually(t, 10*time.Second, "not on a node it does not select", wantAbsent(t, reg, "loadbalancer_l2_policy_interfaces_matched", "policy", nobody))

	// Cilium's agents mark a selector they cannot parse.
	p, err := cl.dyn.Resource(policyGVRv2a1).Get(t.Context(), nobody, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_ = unstructured.SetNestedSlice(p.Object, []any{map[string]any{
		"type": "io.cilium/bad-node-selector", "status": "True", "reason": "error", "message": "bad", "lastTransitionTime": "2026-12-01T00:00:00Z",
	}}, "status", "conditions")
	if _, err := cl.dyn.Resource(policyGVRv2a1).UpdateStatus(t.Context(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("updating policy status: %v", err)
	}
	eventually(t, 10*time.Second, "Cilium's condition", wantValue(t, reg, 1, "loadbalancer_l2_policy_condition_info",
		"policy", nobody, "condition", "io.cilium/bad-node-selector", "status", "True"))
}

// Two Services sharing an IP with leases on two nodes: a split brain that
// shows before any ARP probe.
func TestIntegrationSharedIP(t *testing.T) {
	c := cluster(t)
	cl := newTestClients(t, c.RESTConfig())
	ns := c.Namespace(t)
	for _, name := range []string{"dns-udp", "dns-tcp"} {
		setIngress(t, cl.kube, createLB(t, cl.kube, ns, name, nil), "10.11.80.84")
	}
	now := metav1.NewMicroTime(time.Now())
	lease := func(svc, holder string) *coordinationv1.Lease {
		return &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: LeaseName(ns, svc)},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To(holder), LeaseDurationSeconds: ptr.To[int32](3600), AcquireTime: &now, RenewTime: &now},
		}
	}
	if _, err := cl.kube.CoordinationV1().Leases(ns).Create(t.Context(), lease("dns-udp", "k8s-nuc"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	l, err := cl.kube.CoordinationV1().Leases(ns).Create(t.Context(), lease("dns-tcp", "k8s-nuc"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, reg := startReal(t, c.RESTConfig(), Options{CiliumNamespace: ns})
	eventually(t, 10*time.Second, "two Services", wantValue(t, reg, 2, "loadbalancer_shared_ip_services", "ip", "10.11.80.84"))
	eventually(t, 10*time.Second, "one holder", wantValue(t, reg, 1, "loadbalancer_shared_ip_holders", "ip", "10.11.80.84"))
	l.Spec.HolderIdentity = ptr.To("k8s-opti-01")
	if _, err := cl.kube.CoordinationV1().Leases(ns).Update(t.Context(), l, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "split brain", wantValue(t, reg, 2, "loadbalancer_shared_ip_holders", "ip", "10.11.80.84"))
}
