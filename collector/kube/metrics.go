package kube

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/lbprobe/lbprobe/collector"
)

var (
	svcLabels   = []string{"namespace", "service"}
	leaseLabels = []string{"namespace", "service", "lease", "holder"}
)

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

// Descriptors of the state series. Names and label names are a contract
// with the mixin and users' dashboards.
var (
	descIPAssigned = desc("loadbalancer_ip_assigned",
		"1 when the LoadBalancer Service has at least one ingress IP, else 0 (pending).", svcLabels...)
	descIngressHostname = desc("loadbalancer_ingress_hostname_info",
		"1 for each hostname-only ingress entry of a LoadBalancer Service (not probed).", "namespace", "service", "hostname")
	descL2Policies = desc("loadbalancer_l2_policies",
		"How many CiliumL2AnnouncementPolicies announce the Service's LoadBalancer IPs (selector incl. io.kubernetes.service.namespace/name, loadBalancerIPs: true, loadBalancerClass unset or io.cilium/l2-announcer). Absent when the policy CRD is not served, and for a Service that MetalLB or kube-vip announces.", svcLabels...)
	descL2Announced = desc("loadbalancer_l2_announced",
		"1 when the Service's cilium-l2announce lease has a holder and is not expired; 0 when the IP is assigned and selected by a policy but no live lease exists; absent otherwise.", "namespace", "service", "ip")
	descLeaseAge = desc("loadbalancer_l2_lease_age_seconds",
		"Seconds since the L2 announcement lease was acquired (spec.acquireTime).", leaseLabels...)
	descLeaseRenewAge = desc("loadbalancer_l2_lease_renew_age_seconds",
		"Seconds since the L2 announcement lease was last renewed (spec.renewTime).", leaseLabels...)
	descLeaseExpired = desc("loadbalancer_l2_lease_expired",
		"1 when the lease's renew age exceeds its leaseDurationSeconds, else 0.", leaseLabels...)
	descLeaseDuration = desc("loadbalancer_l2_lease_duration_seconds",
		"The lease's spec.leaseDurationSeconds.", leaseLabels...)
	descLeaseTransitions = desc("loadbalancer_l2_lease_transitions",
		"The lease's spec.leaseTransitions, as the lease says (a gauge: it can go back when the lease is recreated).", leaseLabels...)
	descLeaseHolderReady = desc("loadbalancer_l2_lease_holder_ready",
		"1 when the lease holder is a Node whose Ready condition is True, else 0; absent when no Node has the holder's name.", leaseLabels...)
	descLeaseOrphaned = desc("loadbalancer_l2_lease_orphaned",
		"1 for a cilium-l2announce-* lease that belongs to no existing Service.", "lease")

	descPoolIPs = desc("loadbalancer_pool_ips",
		"IP counts of a CiliumLoadBalancerIPPool from its status conditions, by state (total, available, used).", "pool", "state")
	descPoolConflict = desc("loadbalancer_pool_conflict",
		"1 when the pool's cilium.io/PoolConflict condition is True (it overlaps another pool and allocates nothing), else 0.", "pool")
	descPoolDisabled = desc("loadbalancer_pool_disabled",
		"1 when the pool's spec.disabled is true (no new allocations), else 0.", "pool")

	descGatewayInfo = desc("gateway_info",
		"1 for each status address of a Gateway (address=\"\" when it has none).", "namespace", "gateway", "gateway_class", "address")
	descGatewayProgrammed = desc("gateway_programmed",
		"1 when the Gateway's Programmed condition is True, else 0.", "namespace", "gateway")
	descGatewayMismatch = desc("gateway_address_mismatch",
		"Only for Gateways with spec.addresses: 1 when the status addresses differ from the requested ones, else 0.", "namespace", "gateway")
	descDNSConflict = desc("gateway_dns_conflict",
		"1 when HTTPRoutes attached to different Gateways claim the hostname (k8s_gateway answers the union of their addresses), else 0.", "hostname")
	descDNSClaim = desc("gateway_dns_hostname_claim_info",
		"1 for each HTTPRoute hostname claim on a parent Gateway.", "hostname", "namespace", "route", "gateway_namespace", "gateway")

	descAnnouncer = desc("loadbalancer_announcer_info",
		"1 per LoadBalancer Service whose L2 implementation is known (cilium, metallb, kube-vip), with the node that should answer ARP for its IPs: Cilium's live lease holder, MetalLB's ServiceL2Status node, kube-vip's live lease holder or kube-vip.io/vipHost; node=\"\" when none does.", "namespace", "service", "implementation", "node")
	descMetalLBAdverts = desc("loadbalancer_metallb_l2_advertisements",
		"How many MetalLB L2Advertisements announce the IPAddressPool the Service's IP came from (metallb.io/ip-allocated-from-pool); 0: MetalLB never announces it.", "namespace", "service", "pool")
	descMetalLBPoolIPs = desc("loadbalancer_metallb_pool_ips",
		"IP counts of a MetalLB IPAddressPool from its status (IPv4 and IPv6 together), by state (used, available).", "namespace", "pool", "state")

	descSynced = desc("lbprobe_kubernetes_synced",
		"1 when the resource's informer has synced, the API server answered the last health check, and no recent watch error; else 0 (the last known state is served).", "resource")
	descWatchErrors = prometheus.NewDesc("lbprobe_kubernetes_watch_errors_total",
		"List/watch errors of the resource's informer.", []string{"resource"}, nil)
	descEnabled = desc("lbprobe_kubernetes_resource_enabled",
		"1 when the cluster serves the resource and it is watched, else 0 (its series are absent).", "resource")
)

var allDescs = slices.Concat([]*prometheus.Desc{
	descIPAssigned, descIngressHostname, descL2Policies, descL2Announced,
	descLeaseAge, descLeaseRenewAge, descLeaseExpired, descLeaseDuration, descLeaseTransitions, descLeaseHolderReady, descLeaseOrphaned,
	descPoolIPs, descPoolConflict, descPoolDisabled,
	descGatewayInfo, descGatewayProgrammed, descGatewayMismatch, descDNSConflict, descDNSClaim,
	descSynced, descWatchErrors, descEnabled,
	descAnnouncer, descMetalLBAdverts, descMetalLBPoolIPs,
}, gatewayStatusDescs, []*prometheus.Desc{descBackendsReady, descRouteBackendsReady}, ipamDescs, sharingDescs, l2PolicyDescs)

var _ prometheus.Collector = (*Discovery)(nil)

// Describe implements prometheus.Collector.
func (d *Discovery) Describe(ch chan<- *prometheus.Desc) {
	for _, desc := range allDescs {
		ch <- desc
	}
}

// Collect implements prometheus.Collector from the caches. Before Start it
// emits nothing.
func (d *Discovery) Collect(ch chan<- prometheus.Metric) {
	if !d.started.Load() {
		return
	}
	now := d.opts.Now()
	for _, r := range allResources {
		collector.Gauge(ch, descEnabled, collector.BoolValue(d.enabled[r]), r)
	}
	for _, s := range d.informers {
		collector.Gauge(ch, descSynced, collector.BoolValue(d.synced(s, now)), s.resource)
		ch <- prometheus.MustNewConstMetric(descWatchErrors, prometheus.CounterValue, float64(s.errors.Load()), s.resource)
	}
	d.snapshot(true).collect(ch)
}

// collect emits the state series of a view.
func (v *view) collect(ch chan<- prometheus.Metric) {
	v.collectServices(ch)
	v.collectSharing(ch)
	v.collectBackends(ch)
	v.collectPolicies(ch)
	for _, p := range v.pools {
		for _, c := range p.counts {
			collector.Gauge(ch, descPoolIPs, c.value, p.name, c.state)
		}
		collector.Gauge(ch, descPoolConflict, collector.BoolValue(p.conflict), p.name)
		collector.Gauge(ch, descPoolDisabled, collector.BoolValue(p.disabled), p.name)
	}
	for _, p := range v.metallb.pools {
		if p.hasStatus {
			collector.Gauge(ch, descMetalLBPoolIPs, float64(p.assigned), p.namespace, p.name, "used")
			collector.Gauge(ch, descMetalLBPoolIPs, float64(p.available), p.namespace, p.name, "available")
		}
	}
	if v.gwKnown {
		v.collectGateways(ch)
		v.collectGatewayStatus(ch)
	}
}

func (v *view) collectServices(ch chan<- prometheus.Metric) {
	for _, s := range v.services {
		li, hasLease := v.leaseOf(s)
		if hasLease {
			l := []string{s.Namespace, s.Name, li.name, li.holder}
			if li.hasAge {
				collector.Gauge(ch, descLeaseAge, li.age.Seconds(), l...)
			}
			if li.hasRenewAge {
				collector.Gauge(ch, descLeaseRenewAge, li.renewAge.Seconds(), l...)
			}
			if li.hasDuration {
				collector.Gauge(ch, descLeaseDuration, li.duration.Seconds(), l...)
			}
			if li.hasExpired {
				collector.Gauge(ch, descLeaseExpired, collector.BoolValue(li.expired), l...)
			}
			if li.hasTransitions {
				collector.Gauge(ch, descLeaseTransitions, float64(li.transitions), l...)
			}
			if ready, known := v.holderReady(li.holder); known {
				collector.Gauge(ch, descLeaseHolderReady, collector.BoolValue(ready), l...)
			}
		}
		if !isLoadBalancer(s) {
			continue
		}
		ips := ingressIPs(s)
		collector.Gauge(ch, descIPAssigned, collector.BoolValue(len(ips) > 0), s.Namespace, s.Name)
		collectIPAM(ch, s, ips)
		for _, h := range ingressHostnames(s) {
			collector.Gauge(ch, descIngressHostname, 1, s.Namespace, s.Name, h)
		}
		a := v.announcer(s)
		// Cilium's policy and lease series describe a Service that
		// MetalLB or kube-vip announces as unannounced: skip them there.
		cilium := a == nil || a.Implementation == ImplCilium
		policies := 0
		if v.polKnown && cilium {
			policies = countL2Policies(s, v.policies)
			collector.Gauge(ch, descL2Policies, float64(policies), s.Namespace, s.Name)
		}
		if a != nil {
			collector.Gauge(ch, descAnnouncer, 1, s.Namespace, s.Name, a.Implementation, a.Node)
			if a.Implementation == ImplMetalLB {
				if m := v.metallbState(s); m.Pool != "" {
					collector.Gauge(ch, descMetalLBAdverts, float64(len(m.Advertisements)), s.Namespace, s.Name, m.Pool)
				}
			}
		}
		if !cilium {
			continue
		}
		live := hasLease && li.live()
		for _, ip := range ips {
			switch {
			case live:
				collector.Gauge(ch, descL2Announced, 1, s.Namespace, s.Name, ip.String())
			case policies > 0:
				collector.Gauge(ch, descL2Announced, 0, s.Namespace, s.Name, ip.String())
			}
		}
	}
	for _, l := range v.orphanedLeases() {
		collector.Gauge(ch, descLeaseOrphaned, 1, l.Name)
	}
}

func (v *view) collectGateways(ch chan<- prometheus.Metric) {
	for _, gw := range v.gateways.list {
		class := string(gw.Spec.GatewayClassName)
		var seen []string
		for _, a := range gw.Status.Addresses {
			if slices.Contains(seen, a.Value) {
				continue
			}
			seen = append(seen, a.Value)
			collector.Gauge(ch, descGatewayInfo, 1, gw.Namespace, gw.Name, class, a.Value)
		}
		if len(seen) == 0 {
			collector.Gauge(ch, descGatewayInfo, 1, gw.Namespace, gw.Name, class, "")
		}
		collector.Gauge(ch, descGatewayProgrammed, collector.BoolValue(programmed(gw)), gw.Namespace, gw.Name)
		if mismatch, ok := addressMismatch(gw); ok {
			collector.Gauge(ch, descGatewayMismatch, collector.BoolValue(mismatch), gw.Namespace, gw.Name)
		}
	}
	for _, hc := range v.routes.hosts {
		collector.Gauge(ch, descDNSConflict, collector.BoolValue(hc.conflict()), hc.hostname)
		type claimKey struct{ ns, route, gwNS, gw string }
		var seen []claimKey
		for _, c := range hc.claims {
			for _, k := range c.gateways {
				ck := claimKey{c.route.Namespace, c.route.Name, k.Namespace, k.Name}
				if slices.Contains(seen, ck) {
					continue
				}
				seen = append(seen, ck)
				collector.Gauge(ch, descDNSClaim, 1, hc.hostname, ck.ns, ck.route, ck.gwNS, ck.gw)
			}
		}
	}
}

func programmed(gw *gwv1.Gateway) bool {
	for _, c := range gw.Status.Conditions {
		if c.Type == string(gwv1.GatewayConditionProgrammed) {
			return c.Status == metav1.ConditionTrue
		}
	}
	return false
}

// normalizeAddress makes IP values comparable (10.0.0.1 == 10.0.0.01 is
// not a concern, but :: forms are); other values compare as lower case.
func normalizeAddress(v string) string {
	v = strings.TrimSpace(v)
	if ip, err := netip.ParseAddr(v); err == nil {
		return ip.Unmap().String()
	}
	return strings.ToLower(v)
}

// addressMismatch compares spec.addresses with status.addresses. ok is
// false when the Gateway requests no specific address value. When every
// requested address has a value the sets must be equal; when some request
// only a type (any address), every requested value must be in the status.
func addressMismatch(gw *gwv1.Gateway) (mismatch, ok bool) {
	var want []string
	anyValue := false
	for _, a := range gw.Spec.Addresses {
		if a.Value == "" {
			anyValue = true
			continue
		}
		want = append(want, normalizeAddress(a.Value))
	}
	if len(want) == 0 {
		return false, false
	}
	var got []string
	for _, a := range gw.Status.Addresses {
		got = append(got, normalizeAddress(a.Value))
	}
	slices.Sort(want)
	want = slices.Compact(want)
	slices.Sort(got)
	got = slices.Compact(got)
	if anyValue {
		for _, w := range want {
			if !slices.Contains(got, w) {
				return true, true
			}
		}
		return false, true
	}
	return !slices.Equal(want, got), true
}
