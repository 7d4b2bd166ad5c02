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

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
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
