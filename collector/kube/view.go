package kube

import (
	"cmp"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/lbprobe/lbprobe/collector"
	"github.com/lbprobe/lbprobe/probe"
)

// view is one consistent-enough read of the caches (each lister is read
// once), the input of Targets, Collect and ServiceStates. Fields for
// absent APIs are nil and their *Known flags false.
type view struct {
	now       time.Time
	services  []*corev1.Service // sorted by namespace, name
	servers   []string          // DNS servers to ask
	zone      string
	gateways  gatewayView
	routes    routeIndex
	routeList []*gwv1.HTTPRoute // sorted by namespace, name
	classes   controllers
	gwKnown   bool
	policies  []l2Policy
	polKnown  bool
	pools     []ipPool
	poolKnown bool
	// lease returns the L2 lease of a Service, or nil; leaseNamed any
	// lease of the lease namespace (kube-vip's).
	lease      func(namespace, name string) *coordinationv1.Lease
	leaseNamed func(name string) *coordinationv1.Lease
	leaseNS    string // the lease namespace (Options.CiliumNamespace)
	metallb    metallbView
	// leases are all cilium-l2announce-* leases (for orphans).
	leases []*coordinationv1.Lease
	// endpoints are the EndpointSlices, indexed by serviceIndex.
	endpoints cache.Indexer
	// node returns a Node by name, or nil.
	node  func(name string) *corev1.Node
	nodes []*corev1.Node // sorted by name
	// self is the Node lbprobe runs on (Options.NodeName), or nil;
	// selfInterfaces its up interfaces with an IPv4 address.
	self           *corev1.Node
	selfInterfaces []string
	logger         *slog.Logger
}

// snapshot reads the caches. Call only after Start.
func (d *Discovery) snapshot(withState bool) *view {
	set := d.settings.Load()
	v := &view{now: d.opts.Now(), zone: set.DNSDomain, logger: d.logger}
	v.services, _ = d.services.List(labels.Everything())
	sortServices(v.services)
	v.servers = set.DNSServers
	if len(v.servers) == 0 {
		v.servers = dnsServers(v.services)
	}
	if d.gateways != nil {
		gws, _ := d.gateways.List(labels.Everything())
		rts, _ := d.routes.List(labels.Everything())
		cls, _ := d.classes.List(labels.Everything())
		v.gwKnown = true
		v.classes = make(controllers, len(cls))
		for _, c := range cls {
			v.classes[c.Name] = c.Spec.ControllerName
		}
		v.gateways = newGatewayView(gws, d.logger)
		v.routeList = sortRoutes(rts)
		v.routes = newRouteIndex(v.routeList, v.gateways, v.classes)
	}
	// What says who announces each Service, for the targets' holders too.
	v.lease, v.leaseNS = d.leaseFor, d.opts.CiliumNamespace
	v.leaseNamed = func(name string) *coordinationv1.Lease {
		l, err := d.leases.Get(name)
		if err != nil {
			return nil
		}
		return l
	}
	v.node = func(name string) *corev1.Node {
		n, err := d.nodes.Get(name)
		if err != nil {
			return nil
		}
		return n
	}
	if d.l2Statuses != nil {
		v.metallb.known = true
		objs, _ := d.l2Statuses.List(labels.Everything())
		for _, o := range objs {
			if u, ok := o.(*unstructured.Unstructured); ok {
				v.metallb.statuses = append(v.metallb.statuses, parseServiceL2Status(u))
			}
		}
		slices.SortFunc(v.metallb.statuses, func(a, b serviceL2Status) int {
			return cmp.Or(cmp.Compare(a.namespace, b.namespace), cmp.Compare(a.name, b.name))
		})
	}
	if !withState {
		return v
	}
	if d.metallbPools != nil {
		objs, _ := d.metallbPools.List(labels.Everything())
		for _, o := range objs {
			if u, ok := o.(*unstructured.Unstructured); ok {
				v.metallb.pools = append(v.metallb.pools, parseMetalLBPool(u))
			}
		}
		slices.SortFunc(v.metallb.pools, func(a, b metallbPool) int { return cmp.Compare(a.name, b.name) })
		objs, _ = d.l2Adverts.List(labels.Everything())
		for _, o := range objs {
			if u, ok := o.(*unstructured.Unstructured); ok {
				v.metallb.adverts = append(v.metallb.adverts, parseL2Advertisement(u, d.logger))
			}
		}
	}
	if d.policies != nil {
		v.polKnown = true
		objs, _ := d.policies.List(labels.Everything())
		for _, o := range objs {
			if u, ok := o.(*unstructured.Unstructured); ok {
				v.policies = append(v.policies, parseL2Policy(u, d.logger))
			}
		}
	}
	if d.pools != nil {
		v.poolKnown = true
		objs, _ := d.pools.List(labels.Everything())
		for _, o := range objs {
			if u, ok := o.(*unstructured.Unstructured); ok {
				v.pools = append(v.pools, parsePool(u, d.logger))
			}
		}
		slices.SortFunc(v.pools, func(a, b ipPool) int { return cmp.Compare(a.name, b.name) })
	}
	v.endpoints = d.endpoints
	v.leases, _ = d.leases.List(labels.Everything())
	slices.SortFunc(v.leases, func(a, b *coordinationv1.Lease) int { return cmp.Compare(a.Name, b.Name) })
	v.nodes, _ = d.nodes.List(labels.Everything())
	slices.SortFunc(v.nodes, func(a, b *corev1.Node) int { return cmp.Compare(a.Name, b.Name) })
	if d.opts.NodeName != "" {
		v.self = v.node(d.opts.NodeName)
		ifaces, err := d.opts.Interfaces()
		if err != nil {
			d.logger.Warn("listing this node's interfaces for the L2 policy check", "err", err)
		}
		v.selfInterfaces = ifaces
	}
	return v
}

// Targets implements collector.Source: LoadBalancer Services with IPs,
// HTTPRoute and Service hostnames, Gateway listeners, read from the caches.
// Before Start it returns no targets.
func (d *Discovery) Targets() collector.Targets {
	if !d.started.Load() {
		return collector.Targets{}
	}
	v := d.snapshot(false)
	t := v.targets()
	for i, lb := range t.LoadBalancers {
		s := v.service(lb.Namespace, lb.Service)
		if s == nil {
			continue
		}
		// The node its implementation says announces it: Cilium's lease
		// holder (expired or not: the holder match names it), MetalLB's
		// ServiceL2Status node, kube-vip's lease holder or vipHost.
		if impl := v.implementation(s); impl == ImplCilium || impl == "" {
			if l := d.leaseFor(lb.Namespace, lb.Service); l != nil && l.Spec.HolderIdentity != nil {
				t.LoadBalancers[i].Holder = *l.Spec.HolderIdentity
			}
			continue
		}
		if a := v.announcer(s); a != nil {
			t.LoadBalancers[i].Holder, t.LoadBalancers[i].HolderMAC = a.Node, a.MAC
		}
	}
	nodes, _ := d.nodes.List(labels.Everything())
	for _, n := range nodes {
		for _, a := range n.Status.Addresses {
			if a.Type != corev1.NodeInternalIP {
				continue
			}
			if ip, err := netip.ParseAddr(a.Address); err == nil && ip.Is4() {
				t.Nodes = append(t.Nodes, collector.Node{Name: n.Name, IP: ip})
				break
			}
		}
	}
	slices.SortFunc(t.Nodes, func(a, b collector.Node) int { return cmp.Compare(a.Name, b.Name) })
	if tls := d.settings.Load().TLS; tls != (probe.TLSOptions{}) {
		for i := range t.Hostnames {
			for k := range t.Hostnames[i].TLS {
				t.Hostnames[i].TLS[k].Options = tls
			}
		}
	}
	return t
}

// service returns the Service namespace/name of the view, or nil.
func (v *view) service(namespace, name string) *corev1.Service {
	i, ok := slices.BinarySearchFunc(v.services, [2]string{namespace, name}, func(s *corev1.Service, k [2]string) int {
		return cmp.Or(cmp.Compare(s.Namespace, k[0]), cmp.Compare(s.Name, k[1]))
	})
	if !ok {
		return nil
	}
	return v.services[i]
}

func (v *view) targets() collector.Targets {
	var t collector.Targets
	for _, s := range v.services {
		if lb, ok := loadBalancerTarget(s); ok {
			t.LoadBalancers = append(t.LoadBalancers, lb)
		}
	}
	if v.gwKnown {
		t.Hostnames = routeHostnames(v.routes, v.gateways, v.servers, v.zone, v.logger)
		t.GatewayListeners = gatewayListeners(v.gateways)
	}
	t.Hostnames = append(t.Hostnames, serviceHostnames(v.services, v.zone, v.servers)...)
	return t
}

// leaseOf evaluates the Service's L2 lease at the view's instant; false
// when the Service has none.
func (v *view) leaseOf(s *corev1.Service) (leaseInfo, bool) {
	l := v.lease(s.Namespace, s.Name)
	if l == nil {
		return leaseInfo{}, false
	}
	return evalLease(l, v.now), true
}

// holderReady reports whether the lease holder is a Node whose Ready
// condition is True; known is false when no such Node exists.
func (v *view) holderReady(holder string) (ready, known bool) {
	if holder == "" {
		return false, false
	}
	n := v.node(holder)
	if n == nil {
		return false, false
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue, true
		}
	}
	return false, true
}
