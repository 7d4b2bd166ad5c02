package kube

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/lbprobe/lbprobe/collector"
	"github.com/lbprobe/lbprobe/probe"
)

// LB-IPAM: which IPs a Service asked for, and what Cilium said of the request.
// A router forwards a domain to one fixed address (the seed's k8s_gateway at
// 10.11.80.82): when LB-IPAM assigns another, every probe of the Service
// passes while split DNS is broken. (Cilium: operator/pkg/lbipam,
// getSVCRequestedIPs and setSVCSatisfiedCondition.)

// The annotations LB-IPAM reads the requested IPs from (comma-separated),
// the newer first.
const (
	annotationLBIPAMIPs    = "lbipam.cilium.io/ips"
	annotationLBIPAMIPsOld = "io.cilium/lb-ipam-ips"
)

// lbipamRequestConditions are the types of the Service condition LB-IPAM
// writes about the request: current Cilium, then the name before its
// cilium.io/ rename (≈1.13).
var lbipamRequestConditions = []string{"cilium.io/IPAMRequestSatisfied", "io.cilium/lb-ipam-request-satisfied"}

var (
	descRequestedIPAssigned = desc("loadbalancer_requested_ip_assigned",
		"1 when an IP the Service requests (annotations lbipam.cilium.io/ips, io.cilium/lb-ipam-ips, or spec.loadBalancerIP) is among its ingress IPs, else 0.",
		"namespace", "service", "ip")
	descIPAMRequest = desc("loadbalancer_ipam_request_info",
		"1, with the status and reason of the condition LB-IPAM wrote on the Service about its request (cilium.io/IPAMRequestSatisfied, formerly io.cilium/lb-ipam-request-satisfied; reasons satisfied, no_pool, pool_selector_mismatch, already_allocated, already_allocated_incompatible_service, out_of_ips).",
		"namespace", "service", "status", "reason")
)

var ipamDescs = []*prometheus.Desc{descRequestedIPAssigned, descIPAMRequest}

// requestedIPs returns the IPs a Service asks LB-IPAM for, as LB-IPAM reads
// them: spec.loadBalancerIP together with the lbipam.cilium.io/ips
// annotation, or io.cilium/lb-ipam-ips when the former is absent (a present
// but empty lbipam.cilium.io/ips hides the older one), comma-separated with
// spaces trimmed; sorted, without duplicates. Values that are not IPs are
// skipped, as LB-IPAM skips them.
func requestedIPs(s *corev1.Service) []netip.Addr {
	var out []netip.Addr
	add := func(v string) {
		if ip, err := netip.ParseAddr(strings.TrimSpace(v)); err == nil {
			out = append(out, ip.Unmap())
		}
	}
	if s.Spec.LoadBalancerIP != "" {
		add(s.Spec.LoadBalancerIP)
	}
	raw, ok := s.Annotations[annotationLBIPAMIPs]
	if !ok {
		raw = s.Annotations[annotationLBIPAMIPsOld]
	}
	for v := range strings.SplitSeq(raw, ",") {
		add(v)
	}
	return probe.SortAddrs(out)
}

// ipamRequest returns LB-IPAM's condition on the Service, or nil.
func ipamRequest(s *corev1.Service) *metav1.Condition {
	for _, typ := range lbipamRequestConditions {
		if c := findCondition(s.Status.Conditions, typ); c != nil {
			return c
		}
	}
	return nil
}

// collectIPAM emits the request series of a LoadBalancer Service.
func collectIPAM(ch chan<- prometheus.Metric, s *corev1.Service, assigned []netip.Addr) {
	for _, ip := range requestedIPs(s) {
		collector.Gauge(ch, descRequestedIPAssigned, collector.BoolValue(slices.Contains(assigned, ip)), s.Namespace, s.Name, ip.String())
	}
	if c := ipamRequest(s); c != nil {
		collector.Gauge(ch, descIPAMRequest, 1, s.Namespace, s.Name, string(c.Status), reasonLabel(c.Reason))
	}
}

// IP sharing (lbipam.cilium.io/sharing-key): several Services on one IP.
// Cilium's L2 announcer elects a holder per Service, not per IP (one lease
// cilium-l2announce-<namespace>-<service> each), and a node answers ARP for
// an IP while it holds the lease of any Service on it: two Services sharing
// an IP whose leases have different holders are two nodes answering for it
// (cilium/cilium#48419).

var (
	descSharedIPServices = desc("loadbalancer_shared_ip_services",
		"How many LoadBalancer Services have the IP among their ingress IPs; only for IPs shared by two or more (lbipam.cilium.io/sharing-key).",
		"ip")
	descSharedIPHolders = desc("loadbalancer_shared_ip_holders",
		"How many distinct nodes hold a live L2 lease of a Service on the shared IP. Cilium elects a holder per Service, and every holder answers ARP for the IP: more than 1 is a split brain.",
		"ip")
)

var sharingDescs = []*prometheus.Desc{descSharedIPServices, descSharedIPHolders}

// sharedIP is one IP that two or more LoadBalancer Services hold.
type sharedIP struct {
	ip       netip.Addr
	services []string // "namespace/name", sorted
	holders  []string // distinct holders of live leases, sorted
}

// sharedIPs returns the IPs held by two or more LoadBalancer Services,
// sorted.
func (v *view) sharedIPs() []sharedIP {
	byIP := map[netip.Addr]*sharedIP{}
	for _, s := range v.services {
		if !isLoadBalancer(s) {
			continue
		}
		li, hasLease := v.leaseOf(s)
		for _, ip := range ingressIPs(s) {
			e := byIP[ip]
			if e == nil {
				e = &sharedIP{ip: ip}
				byIP[ip] = e
			}
			e.services = append(e.services, s.Namespace+"/"+s.Name)
			if hasLease && li.live() && !slices.Contains(e.holders, li.holder) {
				e.holders = append(e.holders, li.holder)
			}
		}
	}
	var out []sharedIP
	for _, e := range byIP {
		if len(e.services) > 1 {
			slices.Sort(e.holders)
			out = append(out, *e)
		}
	}
	slices.SortFunc(out, func(a, b sharedIP) int { return a.ip.Compare(b.ip) })
	return out
}

// collectSharing emits the shared-IP series of the view's Services.
func (v *view) collectSharing(ch chan<- prometheus.Metric) {
	for _, e := range v.sharedIPs() {
		collector.Gauge(ch, descSharedIPServices, float64(len(e.services)), e.ip.String())
		collector.Gauge(ch, descSharedIPHolders, float64(len(e.holders)), e.ip.String())
	}
}
