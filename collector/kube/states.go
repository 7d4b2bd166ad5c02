package kube

import (
	"net/netip"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// ServiceState is what the landing page shows of one LoadBalancer Service.
type ServiceState struct {
	Namespace string
	Name      string
	IPs       []netip.Addr // ingress IPs, sorted
	Hostnames []string     // hostname-only ingress entries
	Assigned  bool         // at least one ingress IP
	Ignored   bool         // annotated lbprobe.io/ignore: "true"
	// Policies is how many CiliumL2AnnouncementPolicies announce the
	// Service's LoadBalancer IPs; -1 when the policy CRD is not served.
	Policies int
	// Lease is the Service's cilium-l2announce lease; nil when none exists.
	Lease *LeaseState
	// PerIP is one entry per ingress IP.
	PerIP []IPState

	// Requested are the IPs the Service asks LB-IPAM for, sorted; IPAM is
	// LB-IPAM's condition on the request ("False already_allocated"), empty
	// when none was written.
	Requested []netip.Addr
	IPAM      string
	// PolicyNames are the L2 policies that select the Service;
	// PolicyNodes how many Nodes at least one of them selects (-1: the
	// policy CRD is not served).
	PolicyNames []string
	PolicyNodes int
	// PolicyReadyNodes: how many of those Nodes are Ready.
	PolicyReadyNodes int
	// InterfaceMatch, only where lbprobe runs on a node (Options.NodeName)
	// selected by one of those policies: whether one of them matches one of
	// the node's up IPv4 interfaces; nil when not known. Interfaces are the
	// node's.
	InterfaceMatch *bool
	Node           string
	Interfaces     []string
	// Backends is loadbalancer_backends_ready; -1 when EndpointSlices are
	// not watched.
	Backends int

	// Announcer is who should answer ARP for the IPs, as the Service's L2
	// implementation (Cilium, MetalLB or kube-vip) says; nil when none is
	// known. MetalLB is what MetalLB says of it (nil unless MetalLB
	// announces it).
	Announcer *Announcer
	MetalLB   *MetalLBState
}

// LeaseState is a Service's L2 announcement lease, evaluated when read.
// A duration is negative when the lease lacks the field it comes from.
type LeaseState struct {
	Name        string
	Holder      string
	Age         time.Duration // since spec.acquireTime
	RenewAge    time.Duration // since spec.renewTime
	Duration    time.Duration // spec.leaseDurationSeconds
	Expired     bool          // RenewAge > Duration (false when either is unknown)
	Live        bool          // a holder and not expired
	HolderReady bool          // the holder is a Node whose Ready condition is True
	// ResourceVersion is the lease object's, as read: a delete can be made
	// conditional on it (delete only what was judged).
	ResourceVersion string
}

// IPState is the L2 announcement state of one ingress IP. One lease covers
// every IP of a Service, so Holder and the ages are the lease's.
type IPState struct {
	IP        netip.Addr
	Announced bool // the Service has a live lease
	// Expected: the Service is selected by at least one policy, so a live
	// lease should exist.
	Expected bool
	Holder   string
	LeaseAge time.Duration // negative when unknown or no lease
	RenewAge time.Duration // negative when unknown or no lease
	Expired  bool
	// SharedHolders are the distinct holders of live leases of all the
	// Services on this IP, when two or more Services share it.
	SharedHolders []string
}

// ServiceStates returns the state of every LoadBalancer Service, sorted by
// namespace and name, read from the caches (nil before Start).
func (d *Discovery) ServiceStates() []ServiceState {
	if !d.started.Load() {
		return nil
	}
	v := d.snapshot(true)
	shared := map[netip.Addr]sharedIP{}
	for _, e := range v.sharedIPs() {
		shared[e.ip] = e
	}
	var out []ServiceState
	for _, s := range v.services {
		if !isLoadBalancer(s) {
			continue
		}
		st := ServiceState{
			Namespace: s.Namespace,
			Name:      s.Name,
			IPs:       ingressIPs(s),
			Hostnames: ingressHostnames(s),
			Ignored:   annotationTrue(s, AnnotationIgnore),
			Policies:  -1,
		}
		st.Assigned = len(st.IPs) > 0
		st.Requested = requestedIPs(s)
		if c := ipamRequest(s); c != nil {
			st.IPAM = string(c.Status) + " " + c.Reason
		}
		st.PolicyNodes, st.Backends = -1, -1
		if v.polKnown {
			st.Policies = countL2Policies(s, v.policies)
			v.policyState(s, &st)
		}
		if v.endpoints != nil {
			st.Backends = v.backendsReady(s)
		}
		if li, ok := v.leaseOf(s); ok {
			ls := &LeaseState{Name: li.name, Holder: li.holder, Age: -1, RenewAge: -1, Duration: -1, Expired: li.expired, Live: li.live()}
			if li.hasAge {
				ls.Age = li.age
			}
			if li.hasRenewAge {
				ls.RenewAge = li.renewAge
			}
			if li.hasDuration {
				ls.Duration = li.duration
			}
			ls.HolderReady, _ = v.holderReady(li.holder)
			if l := v.lease(s.Namespace, s.Name); l != nil {
				ls.ResourceVersion = l.ResourceVersion
			}
			st.Lease = ls
		}
		st.Announcer = v.announcer(s)
		if st.Announcer != nil && st.Announcer.Implementation == ImplMetalLB {
			st.MetalLB = v.metallbState(s)
		}
		for _, ip := range st.IPs {
			is := IPState{IP: ip, Expected: st.Policies > 0, LeaseAge: -1, RenewAge: -1}
			if l := st.Lease; l != nil {
				is.Announced, is.Holder, is.LeaseAge, is.RenewAge, is.Expired = l.Live, l.Holder, l.Age, l.RenewAge, l.Expired
			}
			if e, ok := shared[ip]; ok {
				is.SharedHolders = e.holders
			}
			st.PerIP = append(st.PerIP, is)
		}
		out = append(out, st)
	}
	return out
}

// Announcement is one IP's L2 announcement in words (the landing page).
type Announcement struct {
	// Announced is "yes", "NO", "NO (no L2 policy selects it)", or empty
	// when unknown (the policy CRD is not served).
	Announced string
	Holder    string
	// Lease is how long the holder has held the lease and when it last
	// renewed it ("10m0s (renewed 2s ago)", ", EXPIRED" appended).
	Lease string
	// Failing: the IP is known not to be announced.
	Failing bool
}

// Announcement describes the L2 announcement of one of the Service's IPs.
func (s ServiceState) Announcement(ip netip.Addr) Announcement {
	var st IPState
	for _, p := range s.PerIP {
		if p.IP == ip {
			st = p
		}
	}
	var a Announcement
	if an := s.Announcer; an != nil && an.Implementation != ImplCilium {
		// MetalLB's and kube-vip's announcer, by their own word.
		a.Holder, a.Lease = an.Node, an.Source
		switch {
		case an.Node != "":
			a.Announced = "yes (" + an.Implementation + ")"
		case an.Expired:
			a.Announced, a.Failing, a.Holder, a.Lease = "NO ("+an.Implementation+": lease expired)", true, an.Holder, an.Source+", EXPIRED"
		default:
			a.Announced, a.Failing = "NO ("+an.Implementation+": nobody announces it)", true
		}
		return a
	}
	switch {
	case s.Policies < 0: // the policy CRD is not served: unknown
	case s.Policies == 0:
		a.Announced, a.Failing = "NO (no L2 policy selects it)", true
	case st.Announced:
		a.Announced = "yes"
	default:
		a.Announced, a.Failing = "NO", true
	}
	a.Holder = st.Holder
	if st.Holder != "" && st.LeaseAge >= 0 {
		a.Lease = st.LeaseAge.Round(time.Second).String() + " (renewed " + st.RenewAge.Round(time.Second).String() + " ago)"
		if st.Expired {
			a.Lease += ", EXPIRED"
		}
	}
	return a
}

// policyState fills in which L2 policies select s, how many nodes they
// select, and whether they match an interface of this node.
func (v *view) policyState(s *corev1.Service, st *ServiceState) {
	nodes := map[string]bool{}
	for _, p := range v.policies {
		if !p.loadBalancerIPs || !p.selectsService(s) {
			continue
		}
		st.PolicyNames = append(st.PolicyNames, p.name)
		for _, n := range v.nodes {
			if p.selectsNode(n) {
				nodes[n.Name] = true
			}
		}
		if v.self != nil && p.selectsNode(v.self) {
			match := len(p.matchInterfaces(v.selfInterfaces)) > 0
			if st.InterfaceMatch == nil || match {
				st.InterfaceMatch = &match
			}
		}
	}
	st.PolicyNodes = len(nodes)
	for name := range nodes {
		if ready, _ := v.holderReady(name); ready {
			st.PolicyReadyNodes++
		}
	}
	if v.self != nil {
		st.Node, st.Interfaces = v.self.Name, v.selfInterfaces
	}
}

// HostnameState is what the cluster says of the routes behind a hostname.
type HostnameState struct {
	Hostname string
	Parents  []RouteParentState
}

// RouteParentState is one Gateway parentRef of a route with the hostname:
// whether the Gateway's controller accepted the route and whether the
// Gateway is programmed (nil: no status written).
type RouteParentState struct {
	Route, Gateway   string // "namespace/name"
	Section          string
	Accepted         *bool
	AcceptedReason   string
	Programmed       *bool
	ProgrammedReason string
}

// HostnameStates returns the routes' parents of every route hostname, by
// hostname (as checked: lower case, a wildcard's check name); nil before
// Start.
func (d *Discovery) HostnameStates() map[string]HostnameState {
	if !d.started.Load() {
		return nil
	}
	v := d.snapshot(false)
	out := map[string]HostnameState{}
	for _, r := range v.routeList {
		for _, p := range routeParents(r, v.gateways, v.classes) {
			ps := RouteParentState{Route: r.Namespace + "/" + r.Name, Gateway: p.gateway.Namespace + "/" + p.gateway.Name, Section: p.section}
			if p.status != nil {
				if c := findCondition(p.status.Conditions, string(gwv1.RouteConditionAccepted)); c != nil {
					ok := c.Status == metav1.ConditionTrue
					ps.Accepted, ps.AcceptedReason = &ok, c.Reason
				}
			}
			if gw, found := v.gateways.byKey[p.gateway]; found {
				if c := findCondition(gw.Status.Conditions, string(gwv1.GatewayConditionProgrammed)); c != nil {
					ok := c.Status == metav1.ConditionTrue
					ps.Programmed, ps.ProgrammedReason = &ok, c.Reason
				}
			}
			for _, h := range r.Spec.Hostnames {
				name := checkName(strings.ToLower(string(h)))
				hs := out[name]
				hs.Hostname = name
				hs.Parents = append(hs.Parents, ps)
				out[name] = hs
			}
		}
	}
	return out
}

// OrphanedLease is a cilium-l2announce-* lease that belongs to no Service
// (loadbalancer_l2_lease_orphaned).
type OrphanedLease struct {
	Name, ResourceVersion string
}

// OrphanedLeases returns the L2 leases whose Service is gone, judged from
// the Services' side: the lease name is built from each Service, never
// parsed. Nil before Start.
func (d *Discovery) OrphanedLeases() []OrphanedLease {
	if !d.started.Load() {
		return nil
	}
	var out []OrphanedLease
	for _, l := range d.snapshot(true).orphanedLeases() {
		out = append(out, OrphanedLease{Name: l.Name, ResourceVersion: l.ResourceVersion})
	}
	return out
}

// orphanedLeases are the cilium-l2announce-* leases of no Service.
func (v *view) orphanedLeases() []*coordinationv1.Lease {
	owned := make(map[string]bool, len(v.services))
	for _, s := range v.services {
		owned[LeaseName(s.Namespace, s.Name)] = true
	}
	var out []*coordinationv1.Lease
	for _, l := range v.leases {
		if strings.HasPrefix(l.Name, l2LeasePrefix) && !owned[l.Name] {
			out = append(out, l)
		}
	}
	return out
}
