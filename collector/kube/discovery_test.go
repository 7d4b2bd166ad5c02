package kube

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/lbprobe/lbprobe/collector"
)

const seedExposition = `
# HELP gateway_accepted 1 when the Gateway's Accepted condition is True, else 0.
# TYPE gateway_accepted gauge
gateway_accepted{gateway="external",namespace="infra"} 0
gateway_accepted{gateway="internal",namespace="infra"} 0
# HELP gateway_address_mismatch Only for Gateways with spec.addresses: 1 when the status addresses differ from the requested ones, else 0.
# TYPE gateway_address_mismatch gauge
gateway_address_mismatch{gateway="internal",namespace="infra"} 1
# HELP gateway_dns_conflict 1 when HTTPRoutes attached to different Gateways claim the hostname (k8s_gateway answers the union of their addresses), else 0.
# TYPE gateway_dns_conflict gauge
gateway_dns_conflict{hostname="app.sbbh.cloud"} 0
gateway_dns_conflict{hostname="internal.sbbh.cloud"} 0
# HELP gateway_dns_hostname_claim_info 1 for each HTTPRoute hostname claim on a parent Gateway.
# TYPE gateway_dns_hostname_claim_info gauge
gateway_dns_hostname_claim_info{gateway="external",gateway_namespace="infra",hostname="app.sbbh.cloud",namespace="apps",route="public-app"} 1
gateway_dns_hostname_claim_info{gateway="internal",gateway_namespace="infra",hostname="internal.sbbh.cloud",namespace="apps",route="internal-app"} 1
# HELP gateway_info 1 for each status address of a Gateway (address="" when it has none).
# TYPE gateway_info gauge
gateway_info{address="10.11.80.80",gateway="external",gateway_class="cilium",namespace="infra"} 1
gateway_info{address="10.11.80.81",gateway="internal",gateway_class="cilium",namespace="infra"} 1
# HELP gateway_programmed 1 when the Gateway's Programmed condition is True, else 0.
# TYPE gateway_programmed gauge
gateway_programmed{gateway="external",namespace="infra"} 1
gateway_programmed{gateway="internal",namespace="infra"} 0
# HELP gateway_status_condition_info 1 for each Accepted and Programmed condition of the Gateway, with its status and reason.
# TYPE gateway_status_condition_info gauge
gateway_status_condition_info{condition="Programmed",gateway="external",namespace="infra",reason="Programmed",status="True"} 1
# HELP lbprobe_kubernetes_resource_enabled 1 when the cluster serves the resource and it is watched, else 0 (its series are absent).
# TYPE lbprobe_kubernetes_resource_enabled gauge
lbprobe_kubernetes_resource_enabled{resource="ciliuml2announcementpolicies"} 1
lbprobe_kubernetes_resource_enabled{resource="ciliumloadbalancerippools"} 1
lbprobe_kubernetes_resource_enabled{resource="endpointslices"} 1
lbprobe_kubernetes_resource_enabled{resource="gatewayclasses"} 1
lbprobe_kubernetes_resource_enabled{resource="gateways"} 1
lbprobe_kubernetes_resource_enabled{resource="ipaddresspools"} 0
lbprobe_kubernetes_resource_enabled{resource="l2advertisements"} 0
lbprobe_kubernetes_resource_enabled{resource="servicel2statuses"} 0
lbprobe_kubernetes_resource_enabled{resource="httproutes"} 1
lbprobe_kubernetes_resource_enabled{resource="leases"} 1
lbprobe_kubernetes_resource_enabled{resource="nodes"} 1
lbprobe_kubernetes_resource_enabled{resource="services"} 1
# HELP lbprobe_kubernetes_synced 1 when the resource's informer has synced, the API server answered the last health check, and no recent watch error; else 0 (the last known state is served).
# TYPE lbprobe_kubernetes_synced gauge
lbprobe_kubernetes_synced{resource="ciliuml2announcementpolicies"} 1
lbprobe_kubernetes_synced{resource="ciliumloadbalancerippools"} 1
lbprobe_kubernetes_synced{resource="endpointslices"} 1
lbprobe_kubernetes_synced{resource="gatewayclasses"} 1
lbprobe_kubernetes_synced{resource="gateways"} 1
lbprobe_kubernetes_synced{resource="httproutes"} 1
lbprobe_kubernetes_synced{resource="leases"} 1
lbprobe_kubernetes_synced{resource="nodes"} 1
lbprobe_kubernetes_synced{resource="services"} 1
# HELP lbprobe_kubernetes_watch_errors_total List/watch errors of the resource's informer.
# TYPE lbprobe_kubernetes_watch_errors_total counter
lbprobe_kubernetes_watch_errors_total{resource="ciliuml2announcementpolicies"} 0
lbprobe_kubernetes_watch_errors_total{resource="ciliumloadbalancerippools"} 0
lbprobe_kubernetes_watch_errors_total{resource="endpointslices"} 0
lbprobe_kubernetes_watch_errors_total{resource="gatewayclasses"} 0
lbprobe_kubernetes_watch_errors_total{resource="gateways"} 0
lbprobe_kubernetes_watch_errors_total{resource="httproutes"} 0
lbprobe_kubernetes_watch_errors_total{resource="leases"} 0
lbprobe_kubernetes_watch_errors_total{resource="nodes"} 0
lbprobe_kubernetes_watch_errors_total{resource="services"} 0
# HELP loadbalancer_backends_ready Ready endpoints behind the LoadBalancer Service (EndpointSlices; an endpoint without a ready condition counts as ready). For a Service owned by a Gateway, the ready endpoints of the Services that the backendRefs of the routes attached to the Gateway name (Cilium's Gateway Services carry a placeholder endpoint, 192.192.192.192:9999). 0: the IP may be announced while every connect fails.
# TYPE loadbalancer_backends_ready gauge
loadbalancer_backends_ready{namespace="apps",service="pending"} 0
loadbalancer_backends_ready{namespace="apps",service="web"} 2
loadbalancer_backends_ready{namespace="infra",service="k8s-gateway"} 0
# HELP loadbalancer_ip_assigned 1 when the LoadBalancer Service has at least one ingress IP, else 0 (pending).
# TYPE loadbalancer_ip_assigned gauge
loadbalancer_ip_assigned{namespace="apps",service="pending"} 0
loadbalancer_ip_assigned{namespace="apps",service="web"} 1
loadbalancer_ip_assigned{namespace="infra",service="k8s-gateway"} 1
# HELP loadbalancer_l2_announced 1 when the Service's cilium-l2announce lease has a holder and is not expired; 0 when the IP is assigned and selected by a policy but no live lease exists; absent otherwise.
# TYPE loadbalancer_l2_announced gauge
loadbalancer_l2_announced{ip="10.11.80.10",namespace="apps",service="web"} 1
loadbalancer_l2_announced{ip="10.11.80.53",namespace="infra",service="k8s-gateway"} 0
# HELP loadbalancer_l2_lease_age_seconds Seconds since the L2 announcement lease was acquired (spec.acquireTime).
# TYPE loadbalancer_l2_lease_age_seconds gauge
loadbalancer_l2_lease_age_seconds{holder="node-a",lease="cilium-l2announce-apps-web",namespace="apps",service="web"} 3600
loadbalancer_l2_lease_age_seconds{holder="node-b",lease="cilium-l2announce-infra-k8s-gateway",namespace="infra",service="k8s-gateway"} 7200
# HELP loadbalancer_l2_lease_duration_seconds The lease's spec.leaseDurationSeconds.
# TYPE loadbalancer_l2_lease_duration_seconds gauge
loadbalancer_l2_lease_duration_seconds{holder="node-a",lease="cilium-l2announce-apps-web",namespace="apps",service="web"} 15
loadbalancer_l2_lease_duration_seconds{holder="node-b",lease="cilium-l2announce-infra-k8s-gateway",namespace="infra",service="k8s-gateway"} 15
# HELP loadbalancer_l2_lease_expired 1 when the lease's renew age exceeds its leaseDurationSeconds, else 0.
# TYPE loadbalancer_l2_lease_expired gauge
loadbalancer_l2_lease_expired{holder="node-a",lease="cilium-l2announce-apps-web",namespace="apps",service="web"} 0
loadbalancer_l2_lease_expired{holder="node-b",lease="cilium-l2announce-infra-k8s-gateway",namespace="infra",service="k8s-gateway"} 1
# HELP loadbalancer_l2_lease_holder_ready 1 when the lease holder is a Node whose Ready condition is True, else 0; absent when no Node has the holder's name.
# TYPE loadbalancer_l2_lease_holder_ready gauge
loadbalancer_l2_lease_holder_ready{holder="node-a",lease="cilium-l2announce-apps-web",namespace="apps",service="web"} 1
# HELP loadbalancer_l2_lease_orphaned 1 for a cilium-l2announce-* lease that belongs to no existing Service.
# TYPE loadbalancer_l2_lease_orphaned gauge
loadbalancer_l2_lease_orphaned{lease="cilium-l2announce-old-gone"} 1
# HELP loadbalancer_l2_lease_renew_age_seconds Seconds since the L2 announcement lease was last renewed (spec.renewTime).
# TYPE loadbalancer_l2_lease_renew_age_seconds gauge
loadbalancer_l2_lease_renew_age_seconds{holder="node-a",lease="cilium-l2announce-apps-web",namespace="apps",service="web"} 2
loadbalancer_l2_lease_renew_age_seconds{holder="node-b",lease="cilium-l2announce-infra-k8s-gateway",namespace="infra",service="k8s-gateway"} 60
# HELP loadbalancer_l2_lease_transitions The lease's spec.leaseTransitions, as the lease says (a gauge: it can go back when the lease is recreated).
# TYPE loadbalancer_l2_lease_transitions gauge
loadbalancer_l2_lease_transitions{holder="node-a",lease="cilium-l2announce-apps-web",namespace="apps",service="web"} 3
loadbalancer_l2_lease_transitions{holder="node-b",lease="cilium-l2announce-infra-k8s-gateway",namespace="infra",service="k8s-gateway"} 1
# HELP loadbalancer_l2_policies How many CiliumL2AnnouncementPolicies announce the Service's LoadBalancer IPs (selector incl. io.kubernetes.service.namespace/name, loadBalancerIPs: true, loadBalancerClass unset or io.cilium/l2-announcer). Absent when the policy CRD is not served, and for a Service that MetalLB or kube-vip announces.
# TYPE loadbalancer_l2_policies gauge
loadbalancer_l2_policies{namespace="apps",service="pending"} 1
loadbalancer_l2_policies{namespace="apps",service="web"} 2
loadbalancer_l2_policies{namespace="infra",service="k8s-gateway"} 1
# HELP loadbalancer_l2_policy_info 1 per CiliumL2AnnouncementPolicy, with its interface patterns (comma-separated, unanchored regular expressions; empty: every device).
# TYPE loadbalancer_l2_policy_info gauge
loadbalancer_l2_policy_info{interfaces="",policy="all-lb"} 1
loadbalancer_l2_policy_info{interfaces="",policy="external-only"} 1
loadbalancer_l2_policy_info{interfaces="",policy="web-only"} 1
# HELP loadbalancer_l2_policy_nodes How many Nodes the CiliumL2AnnouncementPolicy's nodeSelector matches (0: nothing announces the IPs it selects).
# TYPE loadbalancer_l2_policy_nodes gauge
loadbalancer_l2_policy_nodes{policy="all-lb"} 1
loadbalancer_l2_policy_nodes{policy="external-only"} 1
loadbalancer_l2_policy_nodes{policy="web-only"} 1
# HELP loadbalancer_l2_policy_services How many LoadBalancer Services the policy's serviceSelector matches.
# TYPE loadbalancer_l2_policy_services gauge
loadbalancer_l2_policy_services{policy="all-lb"} 3
loadbalancer_l2_policy_services{policy="external-only"} 3
loadbalancer_l2_policy_services{policy="web-only"} 1
# HELP loadbalancer_pool_conflict 1 when the pool's cilium.io/PoolConflict condition is True (it overlaps another pool and allocates nothing), else 0.
# TYPE loadbalancer_pool_conflict gauge
loadbalancer_pool_conflict{pool="main"} 0
# HELP loadbalancer_pool_disabled 1 when the pool's spec.disabled is true (no new allocations), else 0.
# TYPE loadbalancer_pool_disabled gauge
loadbalancer_pool_disabled{pool="main"} 0
# HELP loadbalancer_pool_ips IP counts of a CiliumLoadBalancerIPPool from its status conditions, by state (total, available, used).
# TYPE loadbalancer_pool_ips gauge
loadbalancer_pool_ips{pool="main",state="available"} 254
loadbalancer_pool_ips{pool="main",state="total"} 256
loadbalancer_pool_ips{pool="main",state="used"} 2
# HELP loadbalancer_announcer_info 1 per LoadBalancer Service whose L2 implementation is known (cilium, metallb, kube-vip), with the node that should answer ARP for its IPs: Cilium's live lease holder, MetalLB's ServiceL2Status node, kube-vip's live lease holder or kube-vip.io/vipHost; node="" when none does.
# TYPE loadbalancer_announcer_info gauge
loadbalancer_announcer_info{implementation="cilium",namespace="apps",node="",service="pending"} 1
loadbalancer_announcer_info{implementation="cilium",namespace="apps",node="node-a",service="web"} 1
loadbalancer_announcer_info{implementation="cilium",namespace="infra",node="",service="k8s-gateway"} 1
`

func TestCollectSeed(t *testing.T) {
	d := startFake(t, fakeClients(realisticSeed()), Options{})
	if err := testutil.CollectAndCompare(d, strings.NewReader(seedExposition)); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.CollectAndLint(d); err != nil || len(n) > 0 {
		t.Fatalf("lint: %v %v", n, err)
	}
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(d); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Gather(); err != nil {
		t.Fatalf("pedantic gather: %v", err)
	}
}

func TestTargetsSeed(t *testing.T) {
	d := startFake(t, fakeClients(realisticSeed()), Options{})
	servers := []string{"10.11.80.53:53"}
	want := collector.Targets{
		LoadBalancers: []collector.LoadBalancer{
			{Namespace: "apps", Service: "web", IPs: addrs("10.11.80.10"), ICMP: true, Source: "kubernetes", Holder: "node-a", Ports: []collector.Port{
				{Port: 80, Protocol: "TCP", Probe: collector.ProbeTCP}, {Port: 443, Protocol: "TCP", Probe: collector.ProbeTCP}}},
			{Namespace: "infra", Service: "k8s-gateway", IPs: addrs("10.11.80.53"), Source: "kubernetes", Holder: "node-b", Ports: []collector.Port{
				{Port: 53, Protocol: "UDP", Probe: collector.ProbeDNS}}},
		},
		Hostnames: []collector.Hostname{
			{Hostname: "app.sbbh.cloud", Expect: addrs("10.11.80.80"), Servers: servers, Source: "httproute", Namespace: "apps", Name: "public-app",
				TLS: []collector.TLSCheck{{Port: 443, IPs: addrs("10.11.80.80")}}},
			{Hostname: "internal.sbbh.cloud", Expect: addrs("10.11.80.81"), Servers: servers, Source: "httproute", Namespace: "apps", Name: "internal-app"},
			{Hostname: "web.apps.sbbh.cloud", Expect: addrs("10.11.80.10"), Servers: servers, Source: "service", Namespace: "apps", Name: "web"},
			{Hostname: "k8s-gateway.infra.sbbh.cloud", Expect: addrs("10.11.80.53"), Servers: servers, Source: "service", Namespace: "infra", Name: "k8s-gateway"},
		},
		GatewayListeners: []collector.GatewayListener{
			{Namespace: "infra", Gateway: "external", Listener: "http", Address: netip.MustParseAddr("10.11.80.80"), Port: 80, Protocol: "HTTP"},
			{Namespace: "infra", Gateway: "external", Listener: "https", Address: netip.MustParseAddr("10.11.80.80"), Port: 443, Protocol: "HTTPS"},
			{Namespace: "infra", Gateway: "internal", Listener: "http", Address: netip.MustParseAddr("10.11.80.81"), Port: 80, Protocol: "HTTP"},
		},
	}
	got := d.Targets()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("targets:\n got %+v\nwant %+v", got, want)
	}

	// Explicit servers win over discovery.
	d2 := startFake(t, fakeClients(realisticSeed()), Options{DNSServers: []string{"192.0.2.1:5353"}})
	for _, h := range d2.Targets().Hostnames {
		if !reflect.DeepEqual(h.Servers, []string{"192.0.2.1:5353"}) {
			t.Fatalf("%s: servers %v", h.Hostname, h.Servers)
		}
	}
}

func TestServiceStatesSeed(t *testing.T) {
	d := startFake(t, fakeClients(realisticSeed()), Options{})
	states := d.ServiceStates()
	if len(states) != 3 {
		t.Fatalf("want 3 LoadBalancer Services, got %d: %+v", len(states), states)
	}
	web := states[1]
	if web.Name != "web" || !web.Assigned || web.Policies != 2 || web.Lease == nil || !web.Lease.Live || !web.Lease.HolderReady {
		t.Fatalf("web: %+v lease %+v", web, web.Lease)
	}
	if len(web.PerIP) != 1 || !web.PerIP[0].Announced || web.PerIP[0].Holder != "node-a" || web.PerIP[0].RenewAge != 2*time.Second {
		t.Fatalf("web per IP: %+v", web.PerIP)
	}
	gw := states[2]
	if gw.Lease == nil || gw.Lease.Live || !gw.Lease.Expired || gw.PerIP[0].Announced || !gw.PerIP[0].Expected {
		t.Fatalf("k8s-gateway: %+v lease %+v", gw, gw.Lease)
	}
	if p := states[0]; p.Name != "pending" || p.Assigned || p.Lease != nil || len(p.PerIP) != 0 {
		t.Fatalf("pending: %+v", p)
	}
}

// Without the optional APIs their informers are off, their series absent,
// and the rest works.
func TestAbsentAPIs(t *testing.T) {
	s := realisticSeed()
	s.gwAPI, s.pools, s.policies = false, "", ""
	d := startFake(t, fakeClients(s), Options{})
	for _, r := range []string{ResourceGatewayClass, ResourceGateways, ResourceHTTPRoutes, ResourcePools, ResourceL2Policies} {
		if d.Enabled(r) {
			t.Errorf("%s enabled", r)
		}
	}
	for _, r := range []string{ResourceServices, ResourceEndpoints, ResourceLeases, ResourceNodes} {
		if !d.Enabled(r) {
			t.Errorf("%s not enabled", r)
		}
	}
	if len(d.informers) != 4 {
		t.Fatalf("informers: %d", len(d.informers))
	}
	for _, name := range []string{"loadbalancer_l2_policies", "loadbalancer_pool_ips", "gateway_info", "gateway_dns_conflict"} {
		if n := testutil.CollectAndCount(d, name); n != 0 {
			t.Errorf("%s: %d series, want none", name, n)
		}
	}
	// Without policies, a stale lease says nothing about announcement (no
	// 0), a live one still says 1.
	want := `
# HELP loadbalancer_l2_announced 1 when the Service's cilium-l2announce lease has a holder and is not expired; 0 when the IP is assigned and selected by a policy but no live lease exists; absent otherwise.
# TYPE loadbalancer_l2_announced gauge
loadbalancer_l2_announced{ip="10.11.80.10",namespace="apps",service="web"} 1
# HELP lbprobe_kubernetes_synced 1 when the resource's informer has synced, the API server answered the last health check, and no recent watch error; else 0 (the last known state is served).
# TYPE lbprobe_kubernetes_synced gauge
lbprobe_kubernetes_synced{resource="endpointslices"} 1
lbprobe_kubernetes_synced{resource="leases"} 1
lbprobe_kubernetes_synced{resource="nodes"} 1
lbprobe_kubernetes_synced{resource="services"} 1
`
	if err := testutil.CollectAndCompare(d, strings.NewReader(want), "loadbalancer_l2_announced", "lbprobe_kubernetes_synced"); err != nil {
		t.Fatal(err)
	}
	tg := d.Targets()
	if len(tg.LoadBalancers) != 2 || len(tg.GatewayListeners) != 0 || len(tg.Hostnames) != 2 {
		t.Fatalf("targets: %+v", tg)
	}
}

func TestDetectPoolFallback(t *testing.T) {
	s := realisticSeed()
	s.pools = "v2alpha1"
	s.dynamic = []runtime.Object{poolObj("old", true, cond("cilium.io/IPsTotal", "Unknown", "16"))}
	s.dynamic[0].(interface{ SetAPIVersion(string) }).SetAPIVersion("cilium.io/v2alpha1")
	d := startFake(t, fakeClients(s), Options{})
	if d.poolGVR.Version != "v2alpha1" {
		t.Fatalf("pool version %q", d.poolGVR.Version)
	}
	want := `
# HELP loadbalancer_pool_disabled 1 when the pool's spec.disabled is true (no new allocations), else 0.
# TYPE loadbalancer_pool_disabled gauge
loadbalancer_pool_disabled{pool="old"} 1
# HELP loadbalancer_pool_ips IP counts of a CiliumLoadBalancerIPPool from its status conditions, by state (total, available, used).
# TYPE loadbalancer_pool_ips gauge
loadbalancer_pool_ips{pool="old",state="total"} 16
`
	if err := testutil.CollectAndCompare(d, strings.NewReader(want), "loadbalancer_pool_ips", "loadbalancer_pool_disabled"); err != nil {
		t.Fatal(err)
	}
}

func TestDetectError(t *testing.T) {
	c := fakeClients(realisticSeed())
	c.discovery = errDiscovery{c.discovery, errors.New("connection refused")}
	d := newDiscovery(c, Options{}, nil)
	err := d.Start(t.Context())
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Start: %v", err)
	}
	if d.Ready() || len(d.Targets().LoadBalancers) != 0 || d.ServiceStates() != nil {
		t.Fatal("a Discovery that did not start serves nothing")
	}
}

func TestWaitForSyncTimeout(t *testing.T) {
	c := fakeClients(realisticSeed())
	d := newDiscovery(c, Options{SyncTimeout: 50 * time.Millisecond}, nil)
	// Never started informers: WaitForSync must time out naming the first.
	if err := d.WaitForSync(t.Context()); err == nil {
		t.Fatal("WaitForSync before Start succeeded")
	}
	// Services cannot be listed: that informer never syncs.
	c.kube.(*kubefake.Clientset).PrependReactor("list", "services", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("forbidden")
	})
	if err := d.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	err := d.WaitForSync(t.Context())
	if err == nil || !strings.Contains(err.Error(), "services") || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitForSync: %v", err)
	}
	if d.Ready() {
		t.Fatal("ready without sync")
	}
}

// The synced series follows API health and watch errors.
func TestSyncedHealth(t *testing.T) {
	var (
		mu     sync.Mutex
		now    = testNow
		health atomic.Pointer[error]
	)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	setHealth := func(err error) { health.Store(&err) }
	setHealth(nil)
	c := fakeClients(realisticSeed())
	c.health = func(context.Context) error { return *health.Load() }
	d := startFake(t, c, Options{Now: clock, HealthInterval: time.Hour})
	svcs := d.informers[0]
	synced := func() bool { return d.synced(svcs, clock()) }
	if !synced() || !d.Ready() {
		t.Fatal("not synced after start")
	}

	// API down: unsynced; the caches still serve.
	setHealth(errors.New("connection refused"))
	advance(5 * time.Second)
	d.checkHealth(t.Context())
	if synced() {
		t.Fatal("synced while the API server is down")
	}
	if len(d.Targets().LoadBalancers) != 2 {
		t.Fatal("last known state not served")
	}
	d.watchError(svcs, d.logger, errors.New("list failed"))
	// Back: errors from the outage are forgiven.
	advance(5 * time.Second)
	setHealth(nil)
	d.checkHealth(t.Context())
	if !synced() {
		t.Fatal("not synced after the API server came back")
	}
	// A watch error while healthy: unsynced for 3 intervals.
	advance(time.Second)
	d.watchError(svcs, d.logger, errors.New("forbidden"))
	if synced() {
		t.Fatal("synced right after a watch error")
	}
	advance(3*time.Hour + time.Second)
	if !synced() {
		t.Fatal("still unsynced long after the last error")
	}
	// Transient errors are counted, nothing more.
	d.watchError(svcs, d.logger, fmt.Errorf("stream: %w", errEOF))
	if !synced() || svcs.errors.Load() != 3 {
		t.Fatalf("synced %v errors %d", synced(), svcs.errors.Load())
	}
	if d.Ready() != true {
		t.Fatal("Ready must stay true")
	}
}
