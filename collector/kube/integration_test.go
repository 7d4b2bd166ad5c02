package kube

// Integration tests against a real kube-apiserver (test/kubecluster). The
// addresses written into API objects (10.11.80.x) are never contacted:
// Discovery only reads the API. Skipped with -short.

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/lbprobe/lbprobe/collector"
	"github.com/lbprobe/lbprobe/test/kubecluster"
	"github.com/lbprobe/lbprobe/test/poll"
)

func TestMain(m *testing.M) {
	dirs, err := kubecluster.CRDDirs()
	if err == nil {
		var metallb string
		metallb, err = kubecluster.MetalLBCRDDir()
		dirs = append(dirs, metallb)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(kubecluster.Shared(m, kubecluster.Options{CRDDirs: dirs}))
}

// cluster returns the shared cluster, or skips with -short.
func cluster(t *testing.T) *kubecluster.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs a kube-apiserver (skipped with -short)")
	}
	return kubecluster.Get(t)
}

type testClients struct {
	kube kubernetes.Interface
	gw   gatewayclient.Interface
	dyn  dynamic.Interface
}

func newTestClients(t *testing.T, cfg *rest.Config) testClients {
	t.Helper()
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gatewayclient.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return testClients{kube, gw, dyn}
}

// startReal starts a Discovery against cfg and waits for its caches; it
// stops with the test.
func startReal(t *testing.T, cfg *rest.Config, opts Options) (*Discovery, *prometheus.Registry) {
	t.Helper()
	d, err := New(cfg, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := d.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := d.WaitForSync(ctx); err != nil {
		t.Fatalf("WaitForSync: %v", err)
	}
	if !d.Ready() {
		t.Fatal("not ready after WaitForSync")
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(d)
	return d, reg
}

// eventually polls f every 50 ms until it returns nil, failing the test
// with what and f's last error once timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	if err := poll.Until(t.Context(), timeout, 50*time.Millisecond, f); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// value returns the value of the series name{labels} (labels given as
// name, value pairs), or ok false when it is absent.
func value(t *testing.T, reg *prometheus.Registry, name string, labels ...string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue metrics
				}
			}
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue(), true
			}
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}

func wantValue(t *testing.T, reg *prometheus.Registry, want float64, name string, labels ...string) func() error {
	return func() error {
		v, ok := value(t, reg, name, labels...)
		if !ok {
			return fmt.Errorf("%s%v absent", name, labels)
		}
		if v != want {
			return fmt.Errorf("%s%v = %v, want %v", name, labels, v, want)
		}
		return nil
	}
}

func wantAbsent(t *testing.T, reg *prometheus.Registry, name string, labels ...string) func() error {
	return func() error {
		if v, ok := value(t, reg, name, labels...); ok {
			return fmt.Errorf("%s%v = %v, want absent", name, labels, v)
		}
		return nil
	}
}

func createLB(t *testing.T, kube kubernetes.Interface, ns, name string, lbLabels map[string]string) *corev1.Service {
	t.Helper()
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: lbLabels},
		Spec: corev1.ServiceSpec{
			Type:  corev1.ServiceTypeLoadBalancer,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
		},
	}
	s, err := kube.CoreV1().Services(ns).Create(t.Context(), s, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating Service: %v", err)
	}
	return s
}

func setIngress(t *testing.T, kube kubernetes.Interface, s *corev1.Service, ips ...string) *corev1.Service {
	t.Helper()
	s = s.DeepCopy()
	s.Status.LoadBalancer.Ingress = nil
	for _, ip := range ips {
		s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
	s, err := kube.CoreV1().Services(s.Namespace).UpdateStatus(t.Context(), s, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("updating Service status: %v", err)
	}
	return s
}

func findLB(tg collector.Targets, ns, name string) *collector.LoadBalancer {
	for i, lb := range tg.LoadBalancers {
		if lb.Namespace == ns && lb.Service == name {
			return &tg.LoadBalancers[i]
		}
	}
	return nil
}

// A Service gets its IP later: ip_assigned flips and a target appears.
func TestIntegrationServiceIP(t *testing.T) {
	c := cluster(t)
	cl := newTestClients(t, c.RESTConfig())
	ns := c.Namespace(t)
	svc := createLB(t, cl.kube, ns, "web", nil)
	d, reg := startReal(t, c.RESTConfig(), Options{CiliumNamespace: ns, DNSDomain: "sbbh.cloud", DNSServers: []string{"127.0.0.1:1053"}})

	eventually(t, 10*time.Second, "pending", wantValue(t, reg, 0, "loadbalancer_ip_assigned", "namespace", ns, "service", "web"))
	if findLB(d.Targets(), ns, "web") != nil {
		t.Fatal("a pending Service is a target")
	}
	setIngress(t, cl.kube, svc, "10.11.80.80")
	eventually(t, 10*time.Second, "assigned", wantValue(t, reg, 1, "loadbalancer_ip_assigned", "namespace", ns, "service", "web"))
	lb := findLB(d.Targets(), ns, "web")
	if lb == nil || !slices.Equal(lb.IPs, addrs("10.11.80.80")) || len(lb.Ports) != 1 || lb.Ports[0].Probe != collector.ProbeTCP {
		t.Fatalf("target: %+v", lb)
	}
	var dnsName *collector.Hostname
	for _, h := range d.Targets().Hostnames {
		if h.Source == "service" && h.Namespace == ns && h.Name == "web" {
			dnsName = &h
		}
	}
	if dnsName == nil || dnsName.Hostname != "web."+ns+".sbbh.cloud" || !slices.Equal(dnsName.Expect, addrs("10.11.80.80")) {
		t.Fatalf("service hostname: %+v", dnsName)
	}
}

// L2 announcement follows the lease: absent lease with a selecting
// policy → 0; a fresh lease → 1; a stale one → expired, 0.
func TestIntegrationLease(t *testing.T) {
	c := cluster(t)
	cl := newTestClients(t, c.RESTConfig())
	ns := c.Namespace(t)
	svc := createLB(t, cl.kube, ns, "web", nil)
	setIngress(t, cl.kube, svc, "10.11.80.80")
	policy := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cilium.io/v2alpha1",
		"kind":       "CiliumL2AnnouncementPolicy",
		"metadata":   map[string]any{"name": ns}, // cluster-scoped: the fresh namespace name is a fresh name
		"spec": map[string]any{
			"serviceSelector": map[string]any{"matchLabels": map[string]any{labelServiceNamespace: ns}},
			"loadBalancerIPs": true,
		},
	}}
	if _, err := cl.dyn.Resource(policyGVRv2a1).Create(t.Context(), policy, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating policy: %v", err)
	}
	t.Cleanup(func() {
		_ = cl.dyn.Resource(policyGVRv2a1).Delete(context.Background(), ns, metav1.DeleteOptions{})
	})
	d, reg := startReal(t, c.RESTConfig(), Options{CiliumNamespace: ns})
	svcLabels := []string{"namespace", ns, "service", "web"}
	ipLabels := append(slices.Clone(svcLabels), "ip", "10.11.80.80")

	eventually(t, 10*time.Second, "selected", wantValue(t, reg, 1, "loadbalancer_l2_policies", svcLabels...))
	eventually(t, 10*time.Second, "no lease", wantValue(t, reg, 0, "loadbalancer_l2_announced", ipLabels...))

	now := metav1.NewMicroTime(time.Now())
	l := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cilium-l2announce-" + ns + "-web"},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity:       ptr.To("node-a"),
			LeaseDurationSeconds: ptr.To[int32](15),
			AcquireTime:          &now,
			RenewTime:            &now,
			LeaseTransitions:     ptr.To[int32](2),
		},
	}
	l, err := cl.kube.CoordinationV1().Leases(ns).Create(t.Context(), l, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating lease: %v", err)
	}
	leaseLabels := append(slices.Clone(svcLabels), "lease", l.Name, "holder", "node-a")
	eventually(t, 10*time.Second, "fresh lease", wantValue(t, reg, 1, "loadbalancer_l2_announced", ipLabels...))
	eventually(t, 10*time.Second, "not expired", wantValue(t, reg, 0, "loadbalancer_l2_lease_expired", leaseLabels...))
	eventually(t, 10*time.Second, "transitions", wantValue(t, reg, 2, "loadbalancer_l2_lease_transitions", leaseLabels...))

	stale := metav1.NewMicroTime(time.Now().Add(-time.Minute))
	l.Spec.RenewTime = &stale
	if _, err := cl.kube.CoordinationV1().Leases(ns).Update(t.Context(), l, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("updating lease: %v", err)
	}
	eventually(t, 10*time.Second, "stale lease", wantValue(t, reg, 1, "loadbalancer_l2_lease_expired", leaseLabels...))
	eventually(t, 10*time.Second, "not announced", wantValue(t, reg, 0, "loadbalancer_l2_announced", ipLabels...))
	if v, ok := value(t, reg, "loadbalancer_l2_lease_renew_age_seconds", leaseLabels...); !ok || v < 59 {
		t.Fatalf("renew age %v (%v)", v, ok)
	}
	// Deselected (no policy selects it): announced is absent.
	if err := cl.dyn.Resource(policyGVRv2a1).Delete(t.Context(), ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "deselected", wantValue(t, reg, 0, "loadbalancer_l2_policies", svcLabels...))
	eventually(t, 10*time.Second, "announced absent", wantAbsent(t, reg, "loadbalancer_l2_announced", ipLabels...))

	// The state lease remediation judges: the lease's resourceVersion, and
	// no orphan while the Service exists; once it is gone, its lease is one.
	for _, st := range d.ServiceStates() {
		if st.Namespace == ns && st.Name == "web" && (st.Lease == nil || st.Lease.ResourceVersion == "") {
			t.Errorf("web's lease state %+v has no resourceVersion", st.Lease)
		}
	}
	if o := d.OrphanedLeases(); len(o) != 0 {
		t.Errorf("orphans %v while the Service exists", o)
	}
	found := false
	for _, st := range d.ServiceStates() {
		found = found || (st.Namespace == ns && st.Name == "web")
	}
	if !found {
		t.Errorf("no state of %s/web", ns)
	}
	if err := cl.kube.CoreV1().Services(ns).Delete(t.Context(), "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "orphaned", func() error {
		if o := d.OrphanedLeases(); len(o) != 1 || o[0].Name != l.Name || o[0].ResourceVersion == "" {
			return fmt.Errorf("orphans %v, want %s", o, l.Name)
		}
		return nil
	})
}

// A Gateway's address changes: the expected DNS answer of its routes
// follows.
func TestIntegrationGatewayAddress(t *testing.T) {
	c := cluster(t)
	cl := newTestClients(t, c.RESTConfig())
	ns := c.Namespace(t)
	gw := &gwv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "external"},
		Spec: gwv1.GatewaySpec{GatewayClassName: "cilium", Listeners: []gwv1.Listener{
			{Name: "https", Port: 443, Protocol: gwv1.HTTPSProtocolType, Hostname: ptr.To(gwv1.Hostname("*.sbbh.cloud")),
				TLS: &gwv1.ListenerTLSConfig{CertificateRefs: []gwv1.SecretObjectReference{{Name: "cert"}}}},
		}},
	}
	gw, err := cl.gw.GatewayV1().Gateways(ns).Create(t.Context(), gw, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating Gateway: %v", err)
	}
	setAddr := func(ip string) {
		t.Helper()
		cur, err := cl.gw.GatewayV1().Gateways(ns).Get(t.Context(), gw.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cur.Status.Addresses = []gwv1.GatewayStatusAddress{{Type: ptr.To(gwv1.IPAddressType), Value: ip}}
		if _, err := cl.gw.GatewayV1().Gateways(ns).UpdateStatus(t.Context(), cur, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("updating Gateway status: %v", err)
		}
	}
	setAddr("10.11.80.80")
	route := &gwv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "public-app"},
		Spec: gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{Name: "external"}}},
			Hostnames:       []gwv1.Hostname{gwv1.Hostname(ns + ".sbbh.cloud")},
		},
	}
	if _, err := cl.gw.GatewayV1().HTTPRoutes(ns).Create(t.Context(), route, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating HTTPRoute: %v", err)
	}
	d, reg := startReal(t, c.RESTConfig(), Options{CiliumNamespace: ns, DNSDomain: "sbbh.cloud", DNSServers: []string{"127.0.0.1:1053"}})

	expectOf := func(want string) func() error {
		return func() error {
			for _, h := range d.Targets().Hostnames {
				if h.Source != "httproute" || h.Namespace != ns || h.Name != "public-app" {
					continue
				}
				if h.Hostname != ns+".sbbh.cloud" || !slices.Equal(h.Expect, addrs(want)) {
					return fmt.Errorf("hostname %s expect %v, want %s", h.Hostname, h.Expect, want)
				}
				if len(h.TLS) != 1 || h.TLS[0].Port != 443 || !slices.Equal(h.TLS[0].IPs, addrs(want)) {
					return fmt.Errorf("TLS checks %+v", h.TLS)
				}
				return nil
			}
			return fmt.Errorf("no hostname target for the route")
		}
	}
	eventually(t, 10*time.Second, "first address", expectOf("10.11.80.80"))
	eventually(t, 10*time.Second, "gateway_info", wantValue(t, reg, 1, "gateway_info", "namespace", ns, "gateway", "external", "address", "10.11.80.80"))
	setAddr("10.11.80.81")
	eventually(t, 10*time.Second, "changed address", expectOf("10.11.80.81"))
	eventually(t, 10*time.Second, "gateway_info follows", wantAbsent(t, reg, "gateway_info", "namespace", ns, "gateway", "external", "address", "10.11.80.80"))
}

// Without the Gateway API and Cilium CRDs, their informers are off and
// the rest works. A second, CRD-less cluster (a few seconds to start).
func TestIntegrationCRDsAbsent(t *testing.T) {
	cluster(t) // skip with -short; the shared cluster's binaries are built by now
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	bare, err := kubecluster.Start(ctx, kubecluster.Options{})
	if err != nil {
		t.Fatalf("second cluster: %v", err)
	}
	t.Cleanup(bare.Stop)
	cl := newTestClients(t, bare.RESTConfig())
	ns := bare.Namespace(t)
	setIngress(t, cl.kube, createLB(t, cl.kube, ns, "web", nil), "10.11.80.80")

	d, reg := startReal(t, bare.RESTConfig(), Options{CiliumNamespace: ns})
	for _, r := range allResources {
		want := r == ResourceServices || r == ResourceEndpoints || r == ResourceLeases || r == ResourceNodes
		if d.Enabled(r) != want {
			t.Errorf("%s enabled %v, want %v", r, d.Enabled(r), want)
		}
		if v, _ := value(t, reg, "lbprobe_kubernetes_resource_enabled", "resource", r); v != collector.BoolValue(want) {
			t.Errorf("lbprobe_kubernetes_resource_enabled{%s} = %v", r, v)
		}
	}
	eventually(t, 10*time.Second, "target", func() error {
		if findLB(d.Targets(), ns, "web") == nil {
			return fmt.Errorf("no target")
		}
		return nil
	})
	eventually(t, 10*time.Second, "synced", wantValue(t, reg, 1, "lbprobe_kubernetes_synced", "resource", ResourceServices))
	for _, name := range []string{"loadbalancer_l2_policies", "gateway_info", "loadbalancer_pool_ips"} {
		if _, ok := value(t, reg, name); ok {
			t.Errorf("%s emitted without its CRD", name)
		}
	}
}

// The API server stops: synced goes to 0 within ~15 s while the caches
// keep serving; it starts again: synced 1 within ~15 s and changes flow
// again. Not parallel: it stops the shared API server.
func TestIntegrationAPIServerRestart(t *testing.T) {
	c := cluster(t)
	cl := newTestClients(t, c.RESTConfig())
	ns := c.Namespace(t)
	setIngress(t, cl.kube, createLB(t, cl.kube, ns, "kept", nil), "10.11.80.80")
	d, reg := startReal(t, c.RESTConfig(), Options{CiliumNamespace: ns}) // default 5 s health interval
	eventually(t, 10*time.Second, "target", func() error {
		if findLB(d.Targets(), ns, "kept") == nil {
			return fmt.Errorf("no target")
		}
		return nil
	})
	allSynced := func(want float64) func() error {
		return func() error {
			for _, s := range d.informers {
				if err := wantValue(t, reg, want, "lbprobe_kubernetes_synced", "resource", s.resource)(); err != nil {
					return err
				}
			}
			return nil
		}
	}
	eventually(t, 10*time.Second, "synced before", allSynced(1))

	// Stopping takes a while (SIGTERM, graceful shutdown): the clock runs
	// from the moment the stop begins.
	stopping := time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- c.StopAPIServer() }()
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			<-stopped
			_ = c.StartAPIServer(context.Background())
		}
	})
	eventually(t, 15*time.Second, "unsynced while down", allSynced(0))
	t.Logf("synced 0 %s after the stop began", time.Since(stopping).Round(100*time.Millisecond))
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	t.Logf("kube-apiserver stopped in %s", time.Since(stopping).Round(100*time.Millisecond))
	if findLB(d.Targets(), ns, "kept") == nil {
		t.Fatal("last known state not served while the API server is down")
	}
	if err := wantValue(t, reg, 1, "loadbalancer_ip_assigned", "namespace", ns, "service", "kept")(); err != nil {
		t.Fatal(err)
	}

	if err := c.StartAPIServer(t.Context()); err != nil {
		t.Fatal(err)
	}
	restarted = true
	up := time.Now()
	eventually(t, 15*time.Second, "synced again", allSynced(1))
	t.Logf("synced 1 after %s", time.Since(up).Round(100*time.Millisecond))
	// The watches are back: a new Service shows up.
	setIngress(t, cl.kube, createLB(t, cl.kube, ns, "new", nil), "10.11.80.81")
	eventually(t, 30*time.Second, "new Service after restart", func() error {
		if findLB(d.Targets(), ns, "new") == nil {
			return fmt.Errorf("no target")
		}
		return nil
	})
	t.Logf("changes flow %s after the restart", time.Since(up).Round(100*time.Millisecond))
}
