// Package seed writes a copy of the reference cluster into an API server:
// the objects lbprobe reads in a small bare-metal cluster running Cilium
// LB-IPAM and L2 announcements, Gateway API and k8s_gateway. Integration
// tests, the lab and the `make run` sandbox share it.
//
// Nothing writes status in a bare API server, so Seed writes the status that
// Cilium and the Gateway controller would: Service ingress IPs, Gateway
// addresses and conditions, pool conditions, L2 leases.
package seed

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
)

// Addresses are the IPs of the reference cluster. Reference() gives the real
// ones (10.11.80.0/24, used only as data in the API); the sandbox uses
// loopback stand-ins that it can really serve.
type Addresses struct {
	External netip.Addr    // Gateway "external"
	Internal netip.Addr    // Gateway "internal"
	DNS      netip.Addr    // k8s_gateway
	Legacy   netip.Addr    // apps/legacy, a plain LoadBalancer Service
	Nodes    [3]netip.Addr // k8s-nuc, k8s-opti-01, k8s-opti-02
	Pool     netip.Prefix  // the LB-IPAM pool
}

// Reference returns the reference cluster's addresses.
func Reference() Addresses {
	return Addresses{
		External: netip.MustParseAddr("10.11.80.80"),
		Internal: netip.MustParseAddr("10.11.80.81"),
		DNS:      netip.MustParseAddr("10.11.80.82"),
		Legacy:   netip.MustParseAddr("10.11.80.83"),
		Nodes:    [3]netip.Addr{netip.MustParseAddr("10.11.80.11"), netip.MustParseAddr("10.11.80.12"), netip.MustParseAddr("10.11.80.13")},
		Pool:     netip.MustParsePrefix("10.11.80.80/28"),
	}
}

// Loopback returns loopback stand-ins for the reference addresses,
// 127.<second>.80.x for 10.11.80.x, for code that really probes them: they
// never leave this machine.
func Loopback(second byte) Addresses {
	ip := func(last byte) netip.Addr { return netip.AddrFrom4([4]byte{127, second, 80, last}) }
	return Addresses{
		External: ip(80), Internal: ip(81), DNS: ip(82), Legacy: ip(83),
		Nodes: [3]netip.Addr{ip(11), ip(12), ip(13)},
		Pool:  netip.PrefixFrom(ip(80), 28),
	}
}

// Names of the reference cluster's objects.
const (
	Domain          = "sbbh.cloud"
	CiliumNamespace = "kube-system"
	GatewayNS       = "gateway"
	AppsNS          = "apps"
	NetworkNS       = "network"
	PoolName        = "lb-pool"
	PolicyName      = "l2-policy"
)

// NodeNames are the reference cluster's nodes, in the order of Addresses.Nodes.
var NodeNames = [3]string{"k8s-nuc", "k8s-opti-01", "k8s-opti-02"}

// GVRs of the custom resources the seed writes.
var (
	GatewayGVR   = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gateways"}
	HTTPRouteGVR = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}
	ClassGVR     = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gatewayclasses"}
	PoolGVR      = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumloadbalancerippools"}
	PolicyGVR    = schema.GroupVersionResource{Group: "cilium.io", Version: "v2alpha1", Resource: "ciliuml2announcementpolicies"}
)

// Cluster writes to one API server.
type Cluster struct {
	Core    kubernetes.Interface
	Dynamic dynamic.Interface
	Addrs   Addresses
	Ports   Ports // set by Seed
	Now     func() time.Time
}

// New returns a Cluster writing through cfg.
func New(cfg *rest.Config, addrs Addresses) (*Cluster, error) {
	core, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("clientset: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("dynamic client: %w", err)
	}
	return &Cluster{Core: core, Dynamic: dyn, Addrs: addrs, Ports: ReferencePorts(), Now: time.Now}, nil
}

// Ports are the service ports of the reference cluster: 80, 443 and 53.
// Without root the sandbox cannot listen on them and uses others.
type Ports struct {
	HTTP, HTTPS, DNS int32
}

// ReferencePorts returns 80, 443 and 53.
func ReferencePorts() Ports { return Ports{HTTP: 80, HTTPS: 443, DNS: 53} }

// Seed writes the whole reference cluster with the given service ports.
func (c *Cluster) Seed(ctx context.Context, ports Ports) error {
	c.Ports = ports
	for _, ns := range []string{GatewayNS, AppsNS, NetworkNS} {
		if err := c.Namespace(ctx, ns); err != nil {
			return err
		}
	}
	for i, name := range NodeNames {
		if err := c.Node(ctx, name, c.Addrs.Nodes[i]); err != nil {
			return err
		}
	}
	// Cilium gives a Gateway's Service one port per listener port: the
	// seed's Gateways listen on https only.
	https := func() []corev1.ServicePort {
		return []corev1.ServicePort{{Name: "https", Port: ports.HTTPS, Protocol: corev1.ProtocolTCP}}
	}
	services := []struct {
		ns, name string
		labels   map[string]string
		annots   map[string]string
		ports    []corev1.ServicePort
		ip       netip.Addr
	}{
		{GatewayNS, "cilium-gateway-external", map[string]string{"io.cilium.gateway/owning-gateway": "external"}, nil, https(), c.Addrs.External},
		{GatewayNS, "cilium-gateway-internal", map[string]string{"io.cilium.gateway/owning-gateway": "internal"}, nil, https(), c.Addrs.Internal},
		// Pinned, as the seed's HelmRelease does: the router forwards the
		// domain to this address.
		{NetworkNS, "k8s-gateway", map[string]string{"app.kubernetes.io/name": "k8s-gateway"}, map[string]string{RequestAnnotation: c.Addrs.DNS.String()},
			[]corev1.ServicePort{{Name: "dns", Port: ports.DNS, Protocol: corev1.ProtocolUDP}, {Name: "dns-tcp", Port: ports.DNS, Protocol: corev1.ProtocolTCP}}, c.Addrs.DNS},
		// A plain LoadBalancer Service whose hostname annotation collides with
		// a route: k8s_gateway answers the route's gateway address for it.
		{AppsNS, "legacy", nil, map[string]string{"coredns.io/hostname": "app." + Domain}, []corev1.ServicePort{{Name: "http", Port: ports.HTTP, Protocol: corev1.ProtocolTCP}}, c.Addrs.Legacy},
		// Pool exhausted: no IP ever assigned.
		{AppsNS, "pending", nil, nil, []corev1.ServicePort{{Name: "http", Port: 8080, Protocol: corev1.ProtocolTCP}}, netip.Addr{}},
	}
	for _, s := range services {
		if err := c.Service(ctx, s.ns, s.name, s.labels, s.annots, s.ports); err != nil {
			return err
		}
		if s.ip.IsValid() {
			if err := c.SetServiceIP(ctx, s.ns, s.name, s.ip); err != nil {
				return err
			}
		}
	}
	if err := c.SetIPAMCondition(ctx, NetworkNS, "k8s-gateway", true, "satisfied"); err != nil {
		return err
	}
	// What stands behind the Services. Cilium gives a Gateway's Service a
	// placeholder endpoint; the routes' backends serve. Nothing is ready
	// behind apps/legacy: its one pod is not ready.
	for _, b := range []struct {
		ns, name string
		ports    []corev1.ServicePort
		ready    []bool
	}{
		{GatewayNS, "cilium-gateway-external", nil, []bool{true}},
		{GatewayNS, "cilium-gateway-internal", nil, []bool{true}},
		{NetworkNS, "k8s-gateway", nil, []bool{true}},
		{AppsNS, "legacy", nil, []bool{false}},
		{AppsNS, "public-app", []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}, []bool{true, true}},
		{AppsNS, "internal-app", []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}, []bool{true}},
	} {
		if b.ports != nil {
			if err := c.ClusterIPService(ctx, b.ns, b.name, b.ports); err != nil {
				return err
			}
		}
		if err := c.EndpointSlice(ctx, b.ns, b.name, b.ready...); err != nil {
			return err
		}
	}
	if err := c.GatewayClass(ctx, "cilium"); err != nil {
		return err
	}
	// The seed's routes: the apps' on the https listeners, and its
	// httpsredirect, whose sectionName http matches no listener of the
	// seed's Gateways: the controller refuses it with NoMatchingParent, while
	// k8s_gateway still answers for the hostnames of the routes it names.
	for _, r := range []struct {
		ns, name, host, gw string
	}{
		{AppsNS, "public-app", "app." + Domain, "external"},
		{AppsNS, "internal-app", "internal." + Domain, "internal"},
	} {
		parent := ParentRef{Namespace: GatewayNS, Name: r.gw, Section: "https"}
		if err := c.HTTPRoute(ctx, r.ns, r.name, []string{r.host}, []ParentRef{parent}, r.name); err != nil {
			return err
		}
		if err := c.SetRouteStatus(ctx, r.ns, r.name, RouteParentStatus{ParentRef: parent, Accepted: "Accepted", ResolvedRefs: "ResolvedRefs"}); err != nil {
			return err
		}
	}
	redirect := []ParentRef{{Name: "internal", Section: "http"}, {Name: "external", Section: "http"}}
	if err := c.RedirectRoute(ctx, GatewayNS, "httpsredirect", redirect); err != nil {
		return err
	}
	var refused []RouteParentStatus
	for _, p := range redirect {
		refused = append(refused, RouteParentStatus{ParentRef: p, Accepted: "NoMatchingParent", ResolvedRefs: "ResolvedRefs"})
	}
	if err := c.SetRouteStatus(ctx, GatewayNS, "httpsredirect", refused...); err != nil {
		return err
	}
	// The Gateways after their routes: their listener status counts the
	// routes attached. Only external's listener names a certificate, as in
	// the seed.
	for _, g := range []struct {
		name, secret string
		ip           netip.Addr
	}{{"external", "sbbh-cloud-tls", c.Addrs.External}, {"internal", "", c.Addrs.Internal}} {
		if err := c.Gateway(ctx, GatewayNS, g.name, g.ip, g.secret); err != nil {
			return err
		}
	}
	if err := c.Pool(ctx, PoolName, c.Addrs.Pool, 4); err != nil {
		return err
	}
	if err := c.Policy(ctx, PolicyName); err != nil {
		return err
	}
	now := c.Now()
	leases := []struct {
		svcNS, svc, holder string
		renewed            time.Time
	}{
		{GatewayNS, "cilium-gateway-external", NodeNames[0], now},
		{GatewayNS, "cilium-gateway-internal", NodeNames[1], now},
		// Stale: the holder stopped renewing ten minutes ago.
		{NetworkNS, "k8s-gateway", NodeNames[2], now.Add(-10 * time.Minute)},
		{AppsNS, "legacy", NodeNames[0], now},
	}
	for _, l := range leases {
		if err := c.Lease(ctx, l.svcNS, l.svc, l.holder, now.Add(-time.Hour), l.renewed, 15, 1); err != nil {
			return err
		}
	}
	return nil
}

// Namespace creates a namespace if missing.
func (c *Cluster) Namespace(ctx context.Context, name string) error {
	_, err := c.Core.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	return ignoreExists(err, "namespace "+name)
}

// Node creates a Node with an InternalIP.
func (c *Cluster) Node(ctx context.Context, name string, ip netip.Addr) error {
	n, err := c.Core.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name: name, Labels: map[string]string{"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"},
	}}, metav1.CreateOptions{})
	if err != nil {
		return ignoreExists(err, "node "+name)
	}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip.String()}, {Type: corev1.NodeHostName, Address: name}}
	n.Status.Conditions = []corev1.NodeCondition{{
		Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
		LastHeartbeatTime: metav1.NewTime(c.Now()), LastTransitionTime: metav1.NewTime(c.Now()),
	}}
	_, err = c.Core.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
	return wrap(err, "node status "+name)
}

// Service creates a LoadBalancer Service (selector-less: nothing runs here).
func (c *Cluster) Service(ctx context.Context, ns, name string, labels, annotations map[string]string, ports []corev1.ServicePort) error {
	for i := range ports {
		ports[i].TargetPort = intstr.FromInt32(ports[i].Port)
	}
	_, err := c.Core.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels, Annotations: annotations},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: ports},
	}, metav1.CreateOptions{})
	return ignoreExists(err, "service "+ns+"/"+name)
}

// SetServiceIP writes the Service's ingress IP, as LB-IPAM would; an
// invalid ip clears it.
func (c *Cluster) SetServiceIP(ctx context.Context, ns, name string, ip netip.Addr) error {
	svc, err := c.Core.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return wrap(err, "service "+ns+"/"+name)
	}
	svc.Status.LoadBalancer.Ingress = nil
	if ip.IsValid() {
		svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip.String()}}
	}
	_, err = c.Core.CoreV1().Services(ns).UpdateStatus(ctx, svc, metav1.UpdateOptions{})
	return wrap(err, "service status "+ns+"/"+name)
}

// RequestAnnotation is the annotation the seed pins k8s_gateway's IP with
// (the older alias of lbipam.cilium.io/ips, which Cilium still reads).
const RequestAnnotation = "io.cilium/lb-ipam-ips"

// IPAMConditionType is the Service condition through which Cilium's LB-IPAM
// (the version that reads RequestAnnotation) says whether the IPs requested
// were given.
const IPAMConditionType = "io.cilium/lb-ipam-request-satisfied"

// SetIPAMCondition writes the LB-IPAM request condition of a Service with
// reason (e.g. "satisfied", "already_allocated"), as Cilium's operator does.
func (c *Cluster) SetIPAMCondition(ctx context.Context, ns, name string, satisfied bool, reason string) error {
	svc, err := c.Core.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return wrap(err, "service "+ns+"/"+name)
	}
	status := metav1.ConditionFalse
	if satisfied {
		status = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&svc.Status.Conditions, metav1.Condition{
		Type: IPAMConditionType, Status: status, Reason: reason, ObservedGeneration: svc.Generation,
		LastTransitionTime: metav1.NewTime(c.Now()),
	})
	_, err = c.Core.CoreV1().Services(ns).UpdateStatus(ctx, svc, metav1.UpdateOptions{})
	return wrap(err, "service status "+ns+"/"+name)
}

// ClusterIPService creates a selector-less ClusterIP Service, such as a
// route's backend.
func (c *Cluster) ClusterIPService(ctx context.Context, ns, name string, ports []corev1.ServicePort) error {
	_, err := c.Core.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Ports: ports},
	}, metav1.CreateOptions{})
	return ignoreExists(err, "service "+ns+"/"+name)
}

// EndpointSlice writes the EndpointSlice of the Service ns/name with one
// endpoint per entry of ready, pod addresses 10.42.x.y (data only, never
// probed). A Gateway's Service gets Cilium's placeholder instead,
// 192.192.192.192:9999.
func (c *Cluster) EndpointSlice(ctx context.Context, ns, name string, ready ...bool) error {
	svc, err := c.Core.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return wrap(err, "service "+ns+"/"+name)
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: name + "-seed", Namespace: ns,
			Labels: map[string]string{discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "seed"},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for _, p := range svc.Spec.Ports {
		slice.Ports = append(slice.Ports, discoveryv1.EndpointPort{Name: ptr.To(p.Name), Port: ptr.To(p.TargetPort.IntVal), Protocol: ptr.To(p.Protocol)})
	}
	_, placeholder := svc.Labels["io.cilium.gateway/owning-gateway"]
	if placeholder {
		slice.Ports = []discoveryv1.EndpointPort{{Port: ptr.To[int32](9999)}}
	}
	for i, r := range ready {
		addr := fmt.Sprintf("10.42.%d.%d", len(ns)%200, 10+i)
		if placeholder {
			addr = "192.192.192.192"
		}
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{addr},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(r)},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: fmt.Sprintf("%s-%d", name, i)},
		})
	}
	if placeholder {
		slice.Endpoints[0].TargetRef = nil
	}
	_, err = c.Core.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice, metav1.CreateOptions{})
	return ignoreExists(err, "endpointslice "+ns+"/"+slice.Name)
}

// LeaseName is the name of Cilium's L2 announcement lease for a Service.
func LeaseName(svcNS, svc string) string { return "cilium-l2announce-" + svcNS + "-" + svc }

// Lease writes (creates or replaces) the L2 announcement lease of a Service.
func (c *Cluster) Lease(ctx context.Context, svcNS, svc, holder string, acquired, renewed time.Time, durationSeconds, transitions int32) error {
	name := LeaseName(svcNS, svc)
	spec := coordinationv1.LeaseSpec{
		HolderIdentity:       &holder,
		LeaseDurationSeconds: &durationSeconds,
		AcquireTime:          &metav1.MicroTime{Time: acquired},
		RenewTime:            &metav1.MicroTime{Time: renewed},
		LeaseTransitions:     &transitions,
	}
	leases := c.Core.CoordinationV1().Leases(CiliumNamespace)
	existing, err := leases.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = leases.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: CiliumNamespace}, Spec: spec}, metav1.CreateOptions{})
		return wrap(err, "lease "+name)
	}
	if err != nil {
		return wrap(err, "lease "+name)
	}
	existing.Spec = spec
	_, err = leases.Update(ctx, existing, metav1.UpdateOptions{})
	return wrap(err, "lease "+name)
}

// DeleteLease removes a Service's L2 lease.
func (c *Cluster) DeleteLease(ctx context.Context, svcNS, svc string) error {
	err := c.Core.CoordinationV1().Leases(CiliumNamespace).Delete(ctx, LeaseName(svcNS, svc), metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return wrap(err, "deleting lease "+LeaseName(svcNS, svc))
}

// GatewayClass creates a GatewayClass.
func (c *Cluster) GatewayClass(ctx context.Context, name string) error {
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
		"metadata": map[string]any{"name": name},
		"spec":     map[string]any{"controllerName": ControllerName},
	}}
	_, err := c.Dynamic.Resource(ClassGVR).Create(ctx, obj, metav1.CreateOptions{})
	return ignoreExists(err, "gatewayclass "+name)
}

// Gateway creates a Gateway as the seed writes its two: its address asked
// for in spec.addresses and one HTTPS listener for *.Domain, naming the
// certificate Secret secret when not empty. Then it writes the status the
// Gateway controller would: the address, Accepted and Programmed, and the
// listener's conditions with the routes attached.
func (c *Cluster) Gateway(ctx context.Context, ns, name string, ip netip.Addr, secret string) error {
	listener := map[string]any{"name": "https", "port": int64(c.Ports.HTTPS), "protocol": "HTTPS", "hostname": "*." + Domain}
	if secret != "" {
		listener["tls"] = map[string]any{"certificateRefs": []any{map[string]any{"kind": "Secret", "name": secret}}}
	}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec": map[string]any{
			"gatewayClassName": "cilium",
			"addresses":        []any{map[string]any{"type": "IPAddress", "value": ip.String()}},
			"listeners":        []any{listener},
		},
	}}
	if _, err := c.Dynamic.Resource(GatewayGVR).Namespace(ns).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
		if err := ignoreExists(err, "gateway "+ns+"/"+name); err != nil {
			return err
		}
	}
	return c.SetGatewayAddress(ctx, ns, name, ip, true)
}

// SetGatewayAddress writes a Gateway's status: its address, the Accepted
// and Programmed conditions, and per listener Accepted, Programmed,
// ResolvedRefs and Conflicted with the count of accepted routes attached.
func (c *Cluster) SetGatewayAddress(ctx context.Context, ns, name string, ip netip.Addr, programmed bool) error {
	gw, err := c.Dynamic.Resource(GatewayGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return wrap(err, "gateway "+ns+"/"+name)
	}
	status, reason := "True", "Programmed"
	if !programmed {
		status, reason = "False", "Invalid"
	}
	var addrs []any
	if ip.IsValid() {
		addrs = []any{map[string]any{"type": "IPAddress", "value": ip.String()}}
	}
	gen, now := gw.GetGeneration(), c.Now()
	specListeners, _, _ := unstructured.NestedSlice(gw.Object, "spec", "listeners")
	var listeners []any
	for _, l := range specListeners {
		lname, _ := l.(map[string]any)["name"].(string)
		attached, err := c.attachedRoutes(ctx, ns, name, lname)
		if err != nil {
			return err
		}
		listeners = append(listeners, map[string]any{
			"name":           lname,
			"supportedKinds": []any{map[string]any{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}},
			"attachedRoutes": int64(attached),
			"conditions": []any{
				condition("Accepted", "True", "Accepted", gen, now),
				condition("Programmed", status, reason, gen, now),
				condition("ResolvedRefs", "True", "ResolvedRefs", gen, now),
				condition("Conflicted", "False", "NoConflicts", gen, now),
			},
		})
	}
	gw.Object["status"] = map[string]any{
		"addresses": addrs,
		"conditions": []any{
			condition("Accepted", "True", "Accepted", gen, now),
			condition("Programmed", status, reason, gen, now),
		},
		"listeners": listeners,
	}
	_, err = c.Dynamic.Resource(GatewayGVR).Namespace(ns).UpdateStatus(ctx, gw, metav1.UpdateOptions{})
	return wrap(err, "gateway status "+ns+"/"+name)
}

// attachedRoutes counts the HTTPRoutes whose status says the Gateway
// ns/name accepted them on the listener (or on every listener, for a
// parentRef without a sectionName).
func (c *Cluster) attachedRoutes(ctx context.Context, ns, name, listener string) (int, error) {
	routes, err := c.Dynamic.Resource(HTTPRouteGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, wrap(err, "listing httproutes")
	}
	n := 0
	for _, r := range routes.Items {
		parents, _, _ := unstructured.NestedSlice(r.Object, "status", "parents")
		for _, p := range parents {
			pm, _ := p.(map[string]any)
			ref, _ := pm["parentRef"].(map[string]any)
			pns, _ := ref["namespace"].(string)
			if pns == "" {
				pns = r.GetNamespace()
			}
			section, _ := ref["sectionName"].(string)
			if ref["name"] != name || pns != ns || (section != "" && section != listener) || !accepted(pm) {
				continue
			}
			n++
			break
		}
	}
	return n, nil
}

// accepted reports whether a route parent status has Accepted=True.
func accepted(parent map[string]any) bool {
	conds, _ := parent["conditions"].([]any)
	for _, c := range conds {
		if m, _ := c.(map[string]any); m["type"] == "Accepted" {
			return m["status"] == "True"
		}
	}
	return false
}

func condition(typ, status, reason string, generation int64, now time.Time) map[string]any {
	return map[string]any{
		"type": typ, "status": status, "reason": reason, "message": "",
		"observedGeneration": generation, "lastTransitionTime": now.UTC().Format(time.RFC3339),
	}
}

// ParentRef names a Gateway, and optionally one of its listeners, in an
// HTTPRoute; an empty Namespace means the route's.
type ParentRef struct {
	Namespace, Name, Section string
}

func (p ParentRef) object() map[string]any {
	m := map[string]any{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": p.Name}
	if p.Namespace != "" {
		m["namespace"] = p.Namespace
	}
	if p.Section != "" {
		m["sectionName"] = p.Section
	}
	return m
}

func parentRefs(parents []ParentRef) []any {
	out := make([]any, len(parents))
	for i, p := range parents {
		out[i] = p.object()
	}
	return out
}

// HTTPRoute creates an HTTPRoute for hostnames on parents, forwarding to
// port 80 of the Service backend in its namespace.
func (c *Cluster) HTTPRoute(ctx context.Context, ns, name string, hostnames []string, parents []ParentRef, backend string) error {
	hosts := make([]any, len(hostnames))
	for i, h := range hostnames {
		hosts[i] = h
	}
	return c.createRoute(ctx, ns, name, map[string]any{
		"hostnames":  hosts,
		"parentRefs": parentRefs(parents),
		"rules":      []any{map[string]any{"backendRefs": []any{map[string]any{"name": backend, "port": int64(80)}}}},
	})
}

// RedirectRoute creates the seed's httpsredirect: no hostnames, one rule
// redirecting to https with a 301.
func (c *Cluster) RedirectRoute(ctx context.Context, ns, name string, parents []ParentRef) error {
	return c.createRoute(ctx, ns, name, map[string]any{
		"parentRefs": parentRefs(parents),
		"rules": []any{map[string]any{"filters": []any{map[string]any{
			"type":            "RequestRedirect",
			"requestRedirect": map[string]any{"scheme": "https", "statusCode": int64(301)},
		}}}},
	})
}

func (c *Cluster) createRoute(ctx context.Context, ns, name string, spec map[string]any) error {
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec":     spec,
	}}
	_, err := c.Dynamic.Resource(HTTPRouteGVR).Namespace(ns).Create(ctx, obj, metav1.CreateOptions{})
	return ignoreExists(err, "httproute "+ns+"/"+name)
}

// RouteParentStatus is what the Gateway controller writes for one parentRef
// of a route: the reasons of its Accepted and ResolvedRefs conditions
// ("Accepted" and "ResolvedRefs" are True, any other reason False).
type RouteParentStatus struct {
	ParentRef
	Accepted, ResolvedRefs string
}

// ControllerName is the Cilium Gateway controller's name.
const ControllerName = "io.cilium/gateway-controller"

// SetRouteStatus writes an HTTPRoute's status.parents as Cilium's Gateway
// controller would.
func (c *Cluster) SetRouteStatus(ctx context.Context, ns, name string, parents ...RouteParentStatus) error {
	r, err := c.Dynamic.Resource(HTTPRouteGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return wrap(err, "httproute "+ns+"/"+name)
	}
	gen, now := r.GetGeneration(), c.Now()
	status := func(typ, reason string) map[string]any {
		if reason == typ {
			return condition(typ, "True", reason, gen, now)
		}
		return condition(typ, "False", reason, gen, now)
	}
	var out []any
	for _, p := range parents {
		out = append(out, map[string]any{
			"parentRef":      p.object(),
			"controllerName": ControllerName,
			"conditions":     []any{status("Accepted", p.Accepted), status("ResolvedRefs", p.ResolvedRefs)},
		})
	}
	r.Object["status"] = map[string]any{"parents": out}
	_, err = c.Dynamic.Resource(HTTPRouteGVR).Namespace(ns).UpdateStatus(ctx, r, metav1.UpdateOptions{})
	return wrap(err, "httproute status "+ns+"/"+name)
}

// Pool creates a CiliumLoadBalancerIPPool over prefix and writes its status
// conditions with used IPs in use, as Cilium's operator does.
func (c *Cluster) Pool(ctx context.Context, name string, prefix netip.Prefix, used int) error {
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cilium.io/v2", "kind": "CiliumLoadBalancerIPPool",
		"metadata": map[string]any{"name": name},
		"spec":     map[string]any{"blocks": []any{map[string]any{"cidr": prefix.String()}}},
	}}
	created, err := c.Dynamic.Resource(PoolGVR).Create(ctx, obj, metav1.CreateOptions{})
	if err != nil {
		if err := ignoreExists(err, "pool "+name); err != nil {
			return err
		}
		if created, err = c.Dynamic.Resource(PoolGVR).Get(ctx, name, metav1.GetOptions{}); err != nil {
			return wrap(err, "pool "+name)
		}
	}
	total := 1 << (prefix.Addr().BitLen() - prefix.Bits())
	num := func(typ string, n int) map[string]any {
		m := condition(typ, "Unknown", "noreason", created.GetGeneration(), c.Now())
		m["message"] = fmt.Sprint(n)
		return m
	}
	conflict := condition("cilium.io/PoolConflict", "False", "resolved", created.GetGeneration(), c.Now())
	created.Object["status"] = map[string]any{"conditions": []any{
		conflict, num("cilium.io/IPsTotal", total), num("cilium.io/IPsAvailable", total-used), num("cilium.io/IPsUsed", used),
	}}
	_, err = c.Dynamic.Resource(PoolGVR).UpdateStatus(ctx, created, metav1.UpdateOptions{})
	return wrap(err, "pool status "+name)
}

// SetPoolConflict sets a pool's PoolConflict condition, as Cilium's operator
// does when two pools overlap.
func (c *Cluster) SetPoolConflict(ctx context.Context, name string, conflict bool) error {
	pool, err := c.Dynamic.Resource(PoolGVR).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return wrap(err, "pool "+name)
	}
	conds, _, _ := unstructured.NestedSlice(pool.Object, "status", "conditions")
	status, reason, msg := "False", "resolved", ""
	if conflict {
		status, reason, msg = "True", "cidr_overlap", "Pool's CIDR overlaps with another pool"
	}
	for i, cnd := range conds {
		if m, ok := cnd.(map[string]any); ok && m["type"] == "cilium.io/PoolConflict" {
			m["status"], m["reason"], m["message"] = status, reason, msg
			conds[i] = m
		}
	}
	if err := unstructured.SetNestedSlice(pool.Object, conds, "status", "conditions"); err != nil {
		return wrap(err, "pool "+name)
	}
	_, err = c.Dynamic.Resource(PoolGVR).UpdateStatus(ctx, pool, metav1.UpdateOptions{})
	return wrap(err, "pool status "+name)
}

// Policy creates the seed's CiliumL2AnnouncementPolicy: every Service's LB
// IP, announced on interfaces matching ^enp.* of every Linux node. (A node
// whose NIC is eth0 matches no interface: the seed's own mismatch.)
func (c *Cluster) Policy(ctx context.Context, name string) error {
	return c.PolicyWith(ctx, name, map[string]any{"matchLabels": map[string]any{"kubernetes.io/os": "linux"}}, "^enp.*")
}

// PolicyWith creates a CiliumL2AnnouncementPolicy for every Service's LB IP
// with a node selector and interface regexes.
func (c *Cluster) PolicyWith(ctx context.Context, name string, nodeSelector map[string]any, interfaces ...string) error {
	ifaces := make([]any, len(interfaces))
	for i, s := range interfaces {
		ifaces[i] = s
	}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cilium.io/v2alpha1", "kind": "CiliumL2AnnouncementPolicy",
		"metadata": map[string]any{"name": name},
		"spec": map[string]any{
			"loadBalancerIPs": true,
			"interfaces":      ifaces,
			"nodeSelector":    nodeSelector,
		},
	}}
	_, err := c.Dynamic.Resource(PolicyGVR).Create(ctx, obj, metav1.CreateOptions{})
	return ignoreExists(err, "policy "+name)
}

// SetPolicyCondition writes a condition on a CiliumL2AnnouncementPolicy, as
// Cilium's agent does for a selector or regex it cannot parse (type e.g.
// io.cilium/bad-interface-regex, reason "error").
func (c *Cluster) SetPolicyCondition(ctx context.Context, name, typ, message string) error {
	pol, err := c.Dynamic.Resource(PolicyGVR).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return wrap(err, "policy "+name)
	}
	cond := condition(typ, "True", "error", pol.GetGeneration(), c.Now())
	cond["message"] = message
	pol.Object["status"] = map[string]any{"conditions": []any{cond}}
	_, err = c.Dynamic.Resource(PolicyGVR).UpdateStatus(ctx, pol, metav1.UpdateOptions{})
	return wrap(err, "policy status "+name)
}

func ignoreExists(err error, what string) error {
	if err == nil || apierrors.IsAlreadyExists(err) {
		return nil
	}
	return fmt.Errorf("creating %s: %w", what, err)
}

func wrap(err error, what string) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}
