package kube

import (
	"cmp"
	"log/slog"
	"net"
	"slices"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
)

// The L2 implementations whose announcer lbprobe reads: the
// `implementation` label.
const (
	ImplCilium  = "cilium"
	ImplMetalLB = "metallb"
	ImplKubeVIP = "kube-vip"
)

// MetalLB's resources (metallb.io/v1beta1) and the annotations MetalLB's
// controller writes on the Services it gives an IP.
const (
	ResourceMetalLBPools      = "ipaddresspools"
	ResourceL2Advertisements  = "l2advertisements"
	ResourceServiceL2Statuses = "servicel2statuses"
	metallbGroupVersion       = "metallb.io/v1beta1"
	annotationMetalLBPool     = "metallb.io/ip-allocated-from-pool"
	annotationMetalLBPoolOld  = "metallb.universe.tf/ip-allocated-from-pool"
)

// kube-vip's annotations, load balancer class and leases. kube-vip with
// service election holds one Lease per Service, kubevip-<service> (or the
// name in kube-vip.io/leaseName); without, all Services follow the one
// leader of plndr-svcs-lock. It writes the node that took the VIP in
// kube-vip.io/vipHost and, in DHCP mode, the VIP's MAC in kube-vip.io/hwaddr.
const (
	annotationKubeVIPHost      = "kube-vip.io/vipHost"
	annotationKubeVIPHWAddr    = "kube-vip.io/hwaddr"
	annotationKubeVIPLeaseName = "kube-vip.io/leaseName"
	annotationKubeVIPIPs       = "kube-vip.io/loadbalancerIPs"
	kubeVIPClass               = "kube-vip.io/kube-vip-class"
	kubeVIPSharedLease         = "plndr-svcs-lock"
)

// Announcer is who should answer ARP for a Service's IPs, as its L2
// implementation says.
type Announcer struct {
	Implementation string // ImplCilium, ImplMetalLB or ImplKubeVIP
	// Node is the node that should announce; "" when none does.
	Node string
	// Source is where that comes from ("lease kube-system/cilium-l2announce-apps-web",
	// "servicel2status metallb-system/l2-abcde", "annotation kube-vip.io/vipHost").
	Source string
	// MAC is the MAC that should answer, when the implementation says
	// (kube-vip.io/hwaddr); nil otherwise.
	MAC net.HardwareAddr
	// NodeReady: Node is a Node whose Ready condition is True.
	NodeReady bool
	// Lease is the lease the announcer is elected with (Cilium's, kube-vip's),
	// "" for MetalLB; Expired: its holder stopped renewing it, so Node is ""
	// and Holder names who held it.
	Lease   string
	Expired bool
	Holder  string
}

// metallbPool is what lbprobe needs of a MetalLB IPAddressPool.
type metallbPool struct {
	namespace, name     string
	labels              map[string]string
	assigned, available int64
	hasStatus           bool
	autoAssign          bool
}

// l2Advertisement is what lbprobe needs of a MetalLB L2Advertisement. A
// nil selector in a list selects nothing (it did not parse).
type l2Advertisement struct {
	namespace, name string
	pools           []string
	poolSelectors   []labels.Selector
	nodeSelectors   []labels.Selector
	interfaces      []string
}

// serviceL2Status is a MetalLB ServiceL2Status: the speaker that announces
// the Service.
type serviceL2Status struct {
	namespace, name string
	node            string
	svcNS, svcName  string
}

func parseMetalLBPool(u *unstructured.Unstructured) metallbPool {
	p := metallbPool{namespace: u.GetNamespace(), name: u.GetName(), labels: u.GetLabels(), autoAssign: true}
	if v, found, _ := unstructured.NestedBool(u.Object, "spec", "autoAssign"); found {
		p.autoAssign = v
	}
	var n int64
	for _, f := range []string{"assignedIPv4", "assignedIPv6"} {
		if v, found, _ := unstructured.NestedInt64(u.Object, "status", f); found {
			p.hasStatus, n = true, n+v
		}
	}
	p.assigned = n
	n = 0
	for _, f := range []string{"availableIPv4", "availableIPv6"} {
		if v, found, _ := unstructured.NestedInt64(u.Object, "status", f); found {
			p.hasStatus, n = true, n+v
		}
	}
	p.available = n
	return p
}

func parseL2Advertisement(u *unstructured.Unstructured, logger *slog.Logger) l2Advertisement {
	a := l2Advertisement{namespace: u.GetNamespace(), name: u.GetName()}
	a.pools, _, _ = unstructured.NestedStringSlice(u.Object, "spec", "ipAddressPools")
	a.interfaces, _, _ = unstructured.NestedStringSlice(u.Object, "spec", "interfaces")
	a.poolSelectors = parseSelectorList(u, "ipAddressPoolSelectors", logger)
	a.nodeSelectors = parseSelectorList(u, "nodeSelectors", logger)
	return a
}

// parseSelectorList reads spec.<field>, a list of label selectors; an
// entry that does not parse is nil (it selects nothing).
func parseSelectorList(u *unstructured.Unstructured, field string, logger *slog.Logger) []labels.Selector {
	raw, _, _ := unstructured.NestedSlice(u.Object, "spec", field)
	out := make([]labels.Selector, 0, len(raw))
	for _, r := range raw {
		sel, err := selectorOf(r)
		if err != nil {
			logger.Debug("L2Advertisement: bad selector; it selects nothing", "name", u.GetName(), "field", field, "err", err)
			sel = nil
		}
		out = append(out, sel)
	}
	return out
}

func parseServiceL2Status(u *unstructured.Unstructured) serviceL2Status {
	s := serviceL2Status{namespace: u.GetNamespace(), name: u.GetName()}
	s.node, _, _ = unstructured.NestedString(u.Object, "status", "node")
	s.svcNS, _, _ = unstructured.NestedString(u.Object, "status", "serviceNamespace")
	s.svcName, _, _ = unstructured.NestedString(u.Object, "status", "serviceName")
	return s
}

// selectsPool: the advertisement announces the pool's IPs. With neither
// ipAddressPools nor ipAddressPoolSelectors it announces every pool.
func (a l2Advertisement) selectsPool(p metallbPool) bool {
	if len(a.pools) == 0 && len(a.poolSelectors) == 0 {
		return true
	}
	if slices.Contains(a.pools, p.name) {
		return true
	}
	for _, s := range a.poolSelectors {
		if s != nil && s.Matches(labels.Set(p.labels)) {
			return true
		}
	}
	return false
}

// selectsNode: the node may announce for the advertisement; no
// nodeSelectors is every node.
func (a l2Advertisement) selectsNode(n *corev1.Node) bool {
	if len(a.nodeSelectors) == 0 {
		return true
	}
	for _, s := range a.nodeSelectors {
		if s != nil && s.Matches(labels.Set(n.Labels)) {
			return true
		}
	}
	return false
}

// metallbView is the MetalLB objects of a view; known is false when the
// cluster does not serve them.
type metallbView struct {
	known    bool
	pools    []metallbPool // sorted by name
	adverts  []l2Advertisement
	statuses []serviceL2Status
}

// metallbPoolOf is the pool MetalLB took the Service's IP from, from the
// annotation its controller writes.
func metallbPoolOf(s *corev1.Service) string {
	if p := s.Annotations[annotationMetalLBPool]; p != "" {
		return p
	}
	return s.Annotations[annotationMetalLBPoolOld]
}

// statusOf returns the ServiceL2Statuses of the Service (one per announcing
// speaker: more than one is a split brain).
func (m metallbView) statusOf(s *corev1.Service) []serviceL2Status {
	var out []serviceL2Status
	for _, st := range m.statuses {
		if st.svcNS == s.Namespace && st.svcName == s.Name {
			out = append(out, st)
		}
	}
	return out
}

func (m metallbView) pool(name string) (metallbPool, bool) {
	for _, p := range m.pools {
		if p.name == name {
			return p, true
		}
	}
	return metallbPool{}, false
}

// MetalLBState is what MetalLB says of a Service.
type MetalLBState struct {
	// Pool is the IPAddressPool its IP came from ("" when not annotated).
	Pool string
	// Advertisements are the L2Advertisements that announce the pool;
	// AdvertisedNodes how many Nodes at least one of them lets announce.
	Advertisements  []string
	AdvertisedNodes int
	// Speakers are the nodes of its ServiceL2Statuses.
	Speakers []string
}

func (v *view) metallbState(s *corev1.Service) *MetalLBState {
	st := &MetalLBState{Pool: metallbPoolOf(s)}
	for _, ls := range v.metallb.statusOf(s) {
		if ls.node != "" && !slices.Contains(st.Speakers, ls.node) {
			st.Speakers = append(st.Speakers, ls.node)
		}
	}
	slices.Sort(st.Speakers)
	pool, ok := v.metallb.pool(st.Pool)
	if !ok {
		return st
	}
	nodes := map[string]bool{}
	for _, a := range v.metallb.adverts {
		if !a.selectsPool(pool) {
			continue
		}
		st.Advertisements = append(st.Advertisements, a.namespace+"/"+a.name)
		for _, n := range v.nodes {
			if a.selectsNode(n) {
				nodes[n.Name] = true
			}
		}
	}
	st.AdvertisedNodes = len(nodes)
	return st
}

// implementation says which L2 implementation announces the Service: kube-vip
// when its class, annotations or lease say so, MetalLB when its controller
// annotated the Service or a speaker wrote its status, else Cilium when its
// L2 policy CRD is served or the Service has a cilium-l2announce lease; ""
// when none of them.
func (v *view) implementation(s *corev1.Service) string {
	switch {
	case s.Annotations[annotationKubeVIPHost] != "" || s.Annotations[annotationKubeVIPIPs] != "" || s.Annotations[annotationKubeVIPLeaseName] != "" ||
		(s.Spec.LoadBalancerClass != nil && *s.Spec.LoadBalancerClass == kubeVIPClass) ||
		// A kubevip-<name> lease names the Service only in its own
		// namespace (elsewhere it may be another Service's of that name).
		(s.Namespace == v.leaseNS && v.kubeVIPLease(s) != nil && v.lease(s.Namespace, s.Name) == nil):
		return ImplKubeVIP
	case v.metallb.known && (metallbPoolOf(s) != "" || len(v.metallb.statusOf(s)) > 0):
		return ImplMetalLB
	case v.polKnown || v.lease(s.Namespace, s.Name) != nil:
		return ImplCilium
	}
	return ""
}

// kubeVIPLease is the Lease kube-vip elects the Service's announcer with:
// its own (kubevip-<service>, or kube-vip.io/leaseName) when it exists,
// else the shared plndr-svcs-lock for a Service kube-vip announces. Leases
// are read in the lease namespace (--cilium.namespace, where kube-vip runs
// too by default, and where kube-vip versions that do not keep the lease in
// the Service's own namespace write it); elsewhere kube-vip.io/vipHost
// names the node.
func (v *view) kubeVIPLease(s *corev1.Service) *coordinationv1.Lease {
	if v.leaseNamed == nil {
		return nil
	}
	name := cmp.Or(s.Annotations[annotationKubeVIPLeaseName], "kubevip-"+s.Name)
	if l := v.leaseNamed(name); l != nil {
		return l
	}
	return nil
}

// announcer is who should announce the Service, as its implementation
// says; nil when no implementation is known.
func (v *view) announcer(s *corev1.Service) *Announcer {
	impl := v.implementation(s)
	a := &Announcer{Implementation: impl}
	switch impl {
	case ImplCilium:
		if li, ok := v.leaseOf(s); ok && li.holder != "" {
			a.Node, a.Source, a.Lease, a.Holder = li.holder, "lease "+li.name, li.name, li.holder
			if !li.live() {
				a.Node, a.Expired = "", true // an expired lease names nobody who announces
			}
		}
	case ImplMetalLB:
		if st := v.metallb.statusOf(s); len(st) > 0 {
			a.Node, a.Source = st[0].node, "servicel2status "+st[0].namespace+"/"+st[0].name
		}
	case ImplKubeVIP:
		// Its own lease with service election, else the one leader of
		// the shared plndr-svcs-lock announces every Service.
		l := v.kubeVIPLease(s)
		if l == nil && v.leaseNamed != nil {
			l = v.leaseNamed(kubeVIPSharedLease)
		}
		switch {
		case l != nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "":
			li := evalLease(l, v.now)
			a.Node, a.Source, a.Lease, a.Holder = li.holder, "lease "+l.Name, l.Name, li.holder
			if !li.live() {
				a.Node, a.Expired = "", true
			}
		case s.Annotations[annotationKubeVIPHost] != "":
			a.Node, a.Source = s.Annotations[annotationKubeVIPHost], "annotation "+annotationKubeVIPHost
		}
		if mac, err := net.ParseMAC(s.Annotations[annotationKubeVIPHWAddr]); err == nil {
			a.MAC = mac
		}
	default:
		return nil
	}
	a.NodeReady, _ = v.holderReady(a.Node)
	return a
}
